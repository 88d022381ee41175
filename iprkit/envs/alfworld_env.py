"""ALFWorld (text) adapter.

Games come from ``$ALFWORLD_DATA/json_2.1.1/{train,valid_seen,valid_unseen}``, one
``game.tw-pddl`` file each, loaded directly with TextWorld and ALFWorld's own
wrappers (``AlfredDemangler``, ``AlfredInfos``), so no ``traj_data.json`` is needed.
The gold path is the file's ``walkthrough``; the reward is 1 on success, else 0; an
episode has at most 20 steps, as in the paper. ``valid_seen`` and ``valid_unseen``
are the paper's seen and unseen test splits and are reported apart.
"""

import json
import os
import re
import sys
from pathlib import Path

from iprkit.envs.base import Env
from iprkit.errors import IprkitError

INSTRUCTION = ("Interact with a household to solve a task. Each turn, think about what to do, "
               "then take one action.\n")


def alfworld_root(data_dir: str | Path | None = None) -> Path:
    """The ``json_2.1.1`` folder, from ``data_dir`` or ``$ALFWORLD_DATA``."""
    base = data_dir or os.environ.get("ALFWORLD_DATA")
    if not base:
        raise IprkitError("alfworld: ALFWORLD_DATA is not set. Download the games with `alfworld-download` "
                          "and `export ALFWORLD_DATA=<that folder>`, or pass data_dir=.")
    root = Path(base).expanduser() / "json_2.1.1"
    if not root.is_dir():
        raise IprkitError(f"alfworld: {root} does not exist. ALFWORLD_DATA (or data_dir) must be the folder that "
                          "holds json_2.1.1/ (as `alfworld-download` lays it out).")
    return root


class ALFWorldEnv(Env):
    """ALFWorld text games, one task per ``game.tw-pddl``."""

    name = "alfworld"
    splits = ("train", "valid_seen", "valid_unseen")
    test_splits = ("valid_seen", "valid_unseen")
    max_steps = 20
    option_docs = {"data_dir": "folder holding json_2.1.1/ (default: $ALFWORLD_DATA)",
                   "max_steps": "step limit of an episode (the paper: 20)",
                   "preamble": "text in place of the instruction's preamble (e.g. the paper's prompt from its release)"}
    preamble = INSTRUCTION

    def __init__(self, data_dir: str | Path | None = None, max_steps: int = 20, preamble: str | None = None):
        super().__init__(preamble)
        self.root = alfworld_root(data_dir)
        self.max_steps = max_steps
        self._env, self._loaded, self._games = None, None, {}

    def task_ids(self, split: str) -> list[str]:
        self.check_split(split)
        if split not in self._games:
            d = self.root / split
            self._games[split] = sorted(str(p.parent.relative_to(self.root)) for p in d.glob("*/*/game.tw-pddl"))
        return list(self._games[split])

    def _game(self, task_id: str) -> dict:
        path = self.root / task_id / "game.tw-pddl"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise IprkitError(f"alfworld: cannot read {path} ({e}); re-download the game files.") from None

    def expert(self, task_id: str) -> list[str]:
        self.check_task(task_id)
        return list(self._game(task_id)["walkthrough"])

    def release_task_id(self, item: dict) -> str | None:
        """The release's ``game_file`` (``.../json_2.1.1/<split>/<task>/<trial>/game.tw-pddl``, any prefix) as a
        task id; else the kit's own ``task_id``."""
        game = str(item.get("game_file") or "")
        if game:
            rel = game.replace("\\", "/").split("json_2.1.1/")[-1].removesuffix("/game.tw-pddl").strip("/")
            return rel if self.has_task(rel) else None
        return super().release_task_id(item)

    @classmethod
    def release_fields(cls, task_id: str) -> dict:
        return {"game_file": f"json_2.1.1/{task_id}/game.tw-pddl"}

    def _reset(self, task_id: str) -> tuple[str, str]:
        import textworld
        import textworld.gym
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

        path = str(self.root / task_id / "game.tw-pddl")
        if self._loaded != path:
            if self._env is not None:
                self._env.close()
            infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
            env_id = textworld.gym.register_game(path, infos, max_episode_steps=10_000,
                                                 wrappers=[AlfredDemangler(), AlfredInfos])
            self._env, self._loaded = textworld.gym.make(env_id), path
        argv = list(sys.argv)  # ALFWorld's PDDL translator overwrites sys.argv during reset
        try:
            obs, info = self._env.reset()
        finally:
            sys.argv[:] = argv
        self.admissible_commands = list(info.get("admissible_commands") or [])
        obs = obs.replace("-= Welcome to TextWorld, ALFRED! =-", "").strip()
        room, _, task = obs.partition("Your task is to:")
        return INSTRUCTION + f"Your task is to: {task.strip()}", room.strip()

    def _step(self, action: str):
        obs, _, done, info = self._env.step(action)
        self.admissible_commands = list(info.get("admissible_commands") or [])
        won = bool(info.get("won"))
        return obs.strip(), float(won), bool(done or won), won, {"admissible_commands": self.admissible_commands}

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._loaded = None, None

    def expert_thought(self, action: str, seen: str) -> str:
        m = re.match(r"go to (.+)", action)
        if m:
            where = m[1]
            return f"To find what the task needs, I should check the {where}." if where in seen else f"Next I go to the {where}."
        m = re.match(r"take (.+?) from (.+)", action)
        if m:
            return f"I see a {m[1]} at the {m[2]}. The task needs it, so I take it."
        m = re.match(r"(?:put|move) (.+?) (?:in/on|to) (.+)", action)
        if m:
            return f"I have the {m[1]}; the task asks for it at the {m[2]}, so I put it there."
        m = re.match(r"(heat|cool|clean) (.+?) with (.+)", action)
        if m:
            return f"The task needs the {m[2]} {dict(heat='hot', cool='cool', clean='clean')[m[1]]}, so I {m[1]} it with the {m[3]}."
        m = re.match(r"(open|close) (.+)", action)
        if m:
            return f"The {m[2]} may hold what I need; I {m[1]} it."
        m = re.match(r"use (.+)", action)
        if m:
            return f"I have what I need here; I use the {m[1]} to finish the task."
        return f"Next I {action}."
