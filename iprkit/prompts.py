"""The paper's ReAct turn format: ``Thought: ...\\nAction: ...``.

Parsing never raises: a turn with no ``Action:`` line gives ``action=None``, which the
caller counts as an invalid step.
"""

import re

_ACTION = re.compile(r"^\s*Action:\s*(.*)$", re.MULTILINE)
_THOUGHT = re.compile(r"^\s*Thought:\s*(.*?)(?=^\s*Action:|\Z)", re.MULTILINE | re.DOTALL)


def format_agent_turn(thought: str, action: str) -> str:
    """One assistant turn as the paper writes it."""
    return f"Thought: {thought.strip()}\nAction: {action.strip()}"


def parse_agent_turn(text: str) -> tuple[str, str | None]:
    """Split an assistant turn into (thought, action). The action is the first
    ``Action:`` line (the paper's regex ``Action: (.*)``), or None when there is none."""
    m = _ACTION.search(text)
    action = m.group(1).strip() if m else None
    t = _THOUGHT.search(text)
    thought = t.group(1).strip() if t else (text[: m.start()].strip() if m else text.strip())
    return thought, (action or None)
