"""The paper's conversation and ReAct turn format, and the context budget.

- Conversation: the instruction and first observation as the first user turn, then
  ``Thought: ...\\nAction: ...`` assistant turns and observation user turns; an optional
  one-shot example (a whole expert trajectory) goes before it, as the paper's rollouts do.
- Parsing never raises: a turn with no ``Action:`` line gives ``action=None``, which the
  rollout engine sends to the env as is and counts as an invalid step.
- Context budget: when the history outgrows the window, keep the instruction (first
  turn) and as many of the most recent turns as fit; drop the turns between, and say so
  with a marker turn. Never a silent overflow.
"""

import re

_ACTION = re.compile(r"^[ \t]*Action:[ \t]*(.*)$", re.MULTILINE)  # never across a line break
_THOUGHT = re.compile(r"^\s*Thought:\s*(.*?)(?=^\s*Action:|\Z)", re.MULTILINE | re.DOTALL)
DROPPED = "[{n} earlier turns omitted to fit the context window]"


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


def with_one_shot(messages: list[dict], example: list[dict] | None) -> list[dict]:
    """Prefix a one-shot example conversation (already in messages form)."""
    return list(example or []) + list(messages)


def fit_context(messages: list[dict], count_tokens, budget: int) -> tuple[list[dict], int]:
    """Keep the first message and the most recent turns that fit in ``budget`` tokens.
    Returns (messages, number of turns dropped). Turns are dropped in (assistant, user)
    pairs so roles keep alternating; a marker turn says how many were dropped."""
    if count_tokens(messages) <= budget or len(messages) <= 2:
        return messages, 0
    head, rest = messages[0], messages[1:]
    dropped = 0
    while len(rest) > 1:
        rest, dropped = rest[2:], dropped + 2
        marker = {"role": "user", "content": f"{head['content']}\n\n{DROPPED.format(n=dropped)}"}
        trial = [marker] + rest
        if count_tokens(trial) <= budget:
            return trial, dropped
    return [{"role": "user", "content": f"{head['content']}\n\n{DROPPED.format(n=dropped)}"}] + rest, dropped
