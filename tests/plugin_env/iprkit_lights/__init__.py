"""Lamps to switch on in the order the task names: an environment that lives outside iprkit.

Each task draws a few coloured lamps and an order from its seed. ``switch on <colour>``
lights a lamp; the right lamp next earns its share of the reward, a wrong one ends the
episode (lost). ``look`` lists the lamps. The gold path switches them on in order.
"""

import random

from iprkit.envs import Env
from iprkit.errors import UnknownTaskError

COLOURS = ("red", "green", "blue", "amber", "violet", "white", "teal", "pink")


class LightsEnv(Env):
    """Lamps to switch on in a given order (a plug-in from outside the kit)."""

    name = "lights"
    splits = ("train", "test")
    test_splits = ("test",)
    option_docs = {"n_lamps": "lamps per task", "n_train": "train tasks", "n_test": "test tasks",
                   "max_steps": "step limit of an episode"}

    def __init__(self, n_lamps: int = 3, n_train: int = 20, n_test: int = 10, max_steps: int = 6):
        super().__init__()
        self.n_lamps, self.n_train, self.n_test, self.max_steps = n_lamps, n_train, n_test, max_steps

    def task_ids(self, split: str) -> list[str]:
        self.check_split(split)
        start, n = (0, self.n_train) if split == "train" else (1000, self.n_test)
        return [f"lights-{s}" for s in range(start, start + n)]

    def _order(self, task_id: str) -> list[str]:
        seed = task_id.rpartition("-")[2]
        if not seed.isdigit():
            raise UnknownTaskError(f"lights: bad task id {task_id!r}")
        return random.Random(int(seed)).sample(COLOURS, self.n_lamps)

    def expert(self, task_id: str) -> list[str]:
        self.check_task(task_id)
        return [f"switch on {c}" for c in self._order(task_id)]

    def _reset(self, task_id: str) -> tuple[str, str]:
        self._want, self._on = self._order(task_id), []
        self.admissible_commands = ["look"] + [f"switch on {c}" for c in sorted(self._want)]
        return (f"Switch on the lamps in this order: {', '.join(self._want)}.",
                f"You see {len(self._want)} lamps, all off: {', '.join(sorted(self._want))}.")

    def _step(self, action: str):
        action = action.strip().lower()
        if action == "look":
            return f"Lamps on: {', '.join(self._on) or 'none'}.", self._reward_now(), False, False, {}
        colour = action.removeprefix("switch on ").strip()
        if not action.startswith("switch on ") or colour not in self._want or colour in self._on:
            return "Nothing happens.", self._reward_now(), False, False, {}
        if colour != self._want[len(self._on)]:
            return f"The {colour} lamp flickers and every lamp goes dark. You lost.", self._reward_now(), True, False, {}
        self._on.append(colour)
        won = len(self._on) == len(self._want)
        return f"The {colour} lamp is on." + (" All lamps are on. You won!" if won else ""), self._reward_now(), won, won, {}

    def _reward_now(self) -> float:
        return len(self._on) / len(self._want)
