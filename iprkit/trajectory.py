"""Steps and trajectories: the one record that flows from envs to rewards, pairs,
training and evaluation.

A trajectory is the instruction, the first observation, then steps; step ``i`` holds
the agent's thought and action and the observation the env answered with. JSONL is
the on-disk form (one trajectory a line); :mod:`iprkit.release` converts to and from the
IPR/ETO release format ``[{id, conversations: [{from: human|gpt, value}]}]``.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from iprkit.errors import IprkitError
from iprkit.io import read_jsonl, write_jsonl
from iprkit.prompts import format_agent_turn


@dataclass
class Step:
    """One agent turn and the env's answer."""

    action: str
    """The action sent to the env (the text after ``Action:``)."""
    observation: str
    """What the env answered."""
    thought: str = ""
    """The reasoning before the action (the text after ``Thought:``)."""
    reward: float = 0.0
    """The env's immediate reward for this step."""
    done: bool = False
    """Whether the episode ended with this step."""
    valid: bool = True
    """False when the model's turn had no ``Action:`` line (the env still answered it)."""

    def turn(self) -> str:
        """The assistant turn as the model sees and writes it."""
        return format_agent_turn(self.thought, self.action)


@dataclass
class Trajectory:
    """One episode of one task."""

    env: str
    """Environment name (``textworld``, ``alfworld``, ``sql``)."""
    task_id: str
    """The env's id for the task."""
    instruction: str
    """The task as given to the agent."""
    observation: str
    """The first observation, before any action."""
    steps: list[Step] = field(default_factory=list)
    """The turns, in order."""
    final_reward: float | None = None
    """The env's final reward in [0, 1] (None when unknown, as in imported SFT data)."""
    success: bool | None = None
    """Whether the task was solved (None when unknown)."""
    source: str = "expert"
    """Who acted: ``expert`` or ``agent`` (or a free label such as ``eto-import``)."""
    meta: dict = field(default_factory=dict)
    """Anything else worth keeping (split, seed, branching step, ...)."""

    @property
    def actions(self) -> list[str]:
        return [s.action for s in self.steps]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "trajectory") -> "Trajectory":
        missing = [k for k in ("env", "task_id", "instruction", "observation") if k not in d]
        if missing:
            raise IprkitError(f"{where}: missing field(s) {missing}; a trajectory needs env, task_id, instruction, observation, steps.")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "steps"}
        try:
            steps = [Step(**s) for s in d.get("steps", [])]
        except TypeError as e:
            raise IprkitError(f"{where}: a step has a bad field ({e}); steps take {list(Step.__dataclass_fields__)}.") from None
        return cls(steps=steps, **known)

    def messages(self) -> list[dict]:
        """Chat messages (role/content): instruction and observations as user turns,
        ``Thought/Action`` as assistant turns. The first user turn joins the instruction
        and first observation."""
        msgs = [{"role": "user", "content": f"{self.instruction}\n\n{self.observation}".strip()}]
        for i, s in enumerate(self.steps):
            msgs.append({"role": "assistant", "content": s.turn()})
            if i < len(self.steps) - 1:  # the last observation is never a model input
                msgs.append({"role": "user", "content": s.observation})
        return msgs


def save_trajectories(path: str | Path, trajs: Iterable[Trajectory]) -> Path:
    """Write trajectories as JSONL, atomically."""
    return write_jsonl(path, (t.to_dict() for t in trajs))


def load_trajectories(path: str | Path) -> list[Trajectory]:
    """Read a JSONL file of trajectories; errors name the file and line."""
    return [Trajectory.from_dict(d, where=f"{path}:{n}") for n, d in read_jsonl(path)]


def to_dataset(trajs: Iterable[Trajectory]):
    """A ``datasets.Dataset`` with a conversational ``messages`` column (what TRL's
    SFTTrainer takes) beside the trajectory's fields."""
    from datasets import Dataset

    rows = []
    for t in trajs:
        rows.append({"env": t.env, "task_id": t.task_id, "source": t.source, "final_reward": t.final_reward,
                     "success": t.success, "n_steps": len(t.steps), "messages": t.messages()})
    return Dataset.from_list(rows)
