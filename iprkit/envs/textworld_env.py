"""TextWorld adapter: the embedded default environment.

Games are generated offline by TextWorld's own generator (``textworld.generator``)
from integer seeds and compiled with its bundled Inform 7, then cached on disk
(``$IPRKIT_CACHE/textworld/<preset>/``). The train and test splits use disjoint seed
ranges, so test games are never seen in training. Each seed also draws the game's
size inside the preset's ranges. The gold path is the game's walkthrough; the final
reward is score / max_score and success is TextWorld's ``won``.
"""

import random
import re
from concurrent.futures import ProcessPoolExecutor
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from iprkit.envs.base import Env
from iprkit.envs.cache import cache_dir
from iprkit.errors import IprkitError, UnknownTaskError


@dataclass(frozen=True)
class TextWorldPreset:
    """A difficulty family: each game draws its sizes uniformly inside these ranges."""

    rooms: tuple[int, int]
    """Number of rooms (min, max)."""
    objects: tuple[int, int]
    """Number of objects (min, max)."""
    quest_length: tuple[int, int]
    """Length of the winning quest in actions (min, max)."""
    max_steps: int
    """Step limit of an episode."""


PRESETS = {
    # A tiny model trained from scratch on 2 CPU cores learns this one in minutes.
    "easy": TextWorldPreset(rooms=(2, 3), objects=(4, 6), quest_length=(2, 3), max_steps=15),
    "medium": TextWorldPreset(rooms=(4, 6), objects=(6, 10), quest_length=(4, 6), max_steps=25),
    "hard": TextWorldPreset(rooms=(6, 10), objects=(10, 20), quest_length=(6, 10), max_steps=40),
}
TEST_SEED_OFFSET = 1_000_000
"""Test seeds start here; train seeds start at 0. The ranges never meet."""

_STATUS = re.compile(r"\n?>\s*(-= .*? =-\s*\d+/\d+)?\s*$")
_END = re.compile(r"\s*\*\*\* The End \*\*\*.*", re.DOTALL)


def _clean(text: str) -> str:
    """Drop the prompt/status line, the banner and the 'RESTART/QUIT' epilogue."""
    ended = "*** The End ***" in text
    text = _END.sub("", text)
    text = _STATUS.sub("", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return f"{text}\n*** The End ***".strip() if ended else text


def generate_game(preset: str, seed: int, out_dir: Path) -> Path:
    """Generate and compile one game with TextWorld's generator; return the .z8 path.
    Written to a temp folder and moved into place, so a killed run leaves no half game."""
    import textworld
    from textworld.generator import compile_game, make_game

    p = PRESETS[preset]
    rng = random.Random(seed)
    opt = textworld.GameOptions()
    opt.seeds = seed
    opt.nb_rooms = rng.randint(*p.rooms)
    opt.nb_objects = rng.randint(*p.objects)
    opt.quest_length = rng.randint(*p.quest_length)
    target = out_dir / f"{seed}.z8"
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        opt.path = str(Path(tmp) / f"{seed}.z8")
        opt.force_recompile = True
        game = make_game(opt)
        compile_game(game, opt)
        shutil.move(str(Path(tmp) / f"{seed}.json"), out_dir / f"{seed}.json")
        shutil.move(opt.path, target)
    return target


class TextWorldEnv(Env):
    """TextWorld games of one difficulty preset, generated from seeds."""

    name = "textworld"
    splits = ("train", "test")
    test_splits = ("test",)
    can_snapshot = True
    option_docs = {
        "preset": f"difficulty family: {', '.join(PRESETS)}",
        "n_train": "train games (seeds 0 .. n_train-1)",
        "n_test": f"test games (seeds {TEST_SEED_OFFSET:,} ..)",
        "max_steps": "step limit of an episode (default: the preset's)",
        "game_dir": "folder of compiled games (default: $IPRKIT_CACHE/textworld/<preset>)",
        "thoughts": "expert thoughts: template, or quote (the task sentence each action carries out)",
    }

    def __init__(self, preset: str = "easy", n_train: int = 800, n_test: int = 100,
                 max_steps: int | None = None, game_dir: str | Path | None = None, thoughts: str = "template"):
        super().__init__()
        if thoughts not in ("template", "quote"):
            raise IprkitError(f"textworld: thoughts={thoughts!r}; choose 'template' or 'quote'.")
        self.thoughts = thoughts
        if preset not in PRESETS:
            raise IprkitError(f"textworld: unknown preset {preset!r}; choose one of {list(PRESETS)}.")
        self.preset, self.n_train, self.n_test = preset, n_train, n_test
        self.max_steps = max_steps or PRESETS[preset].max_steps
        self.game_dir = Path(game_dir) if game_dir else cache_dir("textworld", preset)
        self.game_dir.mkdir(parents=True, exist_ok=True)
        self._env = None
        self._loaded: str | None = None

    # -- tasks -----------------------------------------------------------------
    def task_ids(self, split: str) -> list[str]:
        self.check_split(split)
        start, n = (0, self.n_train) if split == "train" else (TEST_SEED_OFFSET, self.n_test)
        return [f"{self.preset}-{s}" for s in range(start, start + n)]

    def _seed(self, task_id: str) -> int:
        pre, _, seed = task_id.rpartition("-")
        if pre != self.preset or not seed.isdigit():
            raise UnknownTaskError(f"textworld: task id {task_id!r} is not of the form '{self.preset}-<seed>'.")
        return int(seed)

    def game_path(self, task_id: str) -> Path:
        """The compiled game of a task, generated (and cached) on first use."""
        seed = self._seed(task_id)
        path = self.game_dir / f"{seed}.z8"
        if not (path.exists() and path.with_suffix(".json").exists()):
            generate_game(self.preset, seed, self.game_dir)
        return path

    def prepare(self, split: str, limit: int | None = None, workers: int = 2) -> None:
        """Generate (or find cached) every game of a split, ``workers`` at a time, with a
        progress bar."""
        seeds = [self._seed(t) for t in self.task_ids(split)[:limit]]
        missing = [s for s in seeds if not (self.game_dir / f"{s}.json").exists()]
        if not missing:
            return
        bar = tqdm(total=len(missing), desc=f"textworld {self.preset} {split}: generating games")
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            for _ in pool.map(generate_game, [self.preset] * len(missing), missing, [self.game_dir] * len(missing)):
                bar.update()
        bar.close()

    def expert(self, task_id: str) -> list[str]:
        import textworld

        self.check_task(task_id)
        return list(textworld.Game.load(str(self.game_path(task_id).with_suffix(".json"))).walkthrough)

    def entities(self, task_id: str) -> dict[str, str]:
        """Objects, containers, supporters, keys, doors, food and rooms by name, from the game file
        (kinds are TextWorld's type letters: o, c, s, k, d, f, r, ...)."""
        import json

        self.check_task(task_id)
        infos = json.loads(self.game_path(task_id).with_suffix(".json").read_text())["infos"]
        return {i["name"]: i["type"] for _, i in infos if i.get("name") and i.get("type") not in ("P", "I")}

    # -- episodes ---------------------------------------------------------------
    def _reset(self, task_id: str) -> tuple[str, str]:
        import textworld

        path = str(self.game_path(task_id))
        with warnings.catch_warnings():  # jericho: TextWorld's own z8 games are "not fully supported"
            warnings.simplefilter("ignore")
            if self._loaded != path:
                if self._env is not None:
                    self._env.close()
                infos = textworld.EnvInfos(score=True, max_score=True, won=True, lost=True,
                                           admissible_commands=True, objective=True)
                self._env, self._loaded = textworld.start(path, request_infos=infos), path
            gs = self._env.reset()
        self._max_score = max(1, gs.max_score or 1)
        self._done_actions: list[str] = []
        self.admissible_commands = list(gs.admissible_commands or [])
        objective = gs.objective.strip()
        # the first feedback is banner + objective + room; the room starts at its "-= Name =-" header
        room = re.search(r"^-= .+? =-$", gs.feedback, re.MULTILINE)
        first = gs.feedback[room.start():] if room else gs.feedback.split(objective, 1)[-1]
        instruction = f"You are playing a text adventure game. Your task: {objective}"
        return instruction, _clean(first)

    def _step(self, action: str):
        self._done_actions.append(action)
        gs, score, done = self._env.step(action)
        self.admissible_commands = list(gs.admissible_commands or [])
        reward = max(0.0, min(1.0, (score or 0) / self._max_score))
        return _clean(gs.feedback), reward, bool(done or gs.won or gs.lost), bool(gs.won), {
            "admissible_commands": self.admissible_commands, "lost": bool(gs.lost)}

    def snapshot(self):
        return (self._env.copy(), self._episode_state(), self._loaded, self._max_score, list(self.admissible_commands),
                list(self._done_actions))

    def restore(self, snap) -> None:
        env, state, loaded, max_score, adm, done_actions = snap
        self._env, self._loaded, self._max_score, self.admissible_commands = env.copy(), loaded, max_score, list(adm)
        self._done_actions = list(done_actions)
        self._set_episode_state(state)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._loaded = None, None

    # -- expert thoughts ----------------------------------------------------------
    def expert_thought(self, action: str, seen: str) -> str:
        """A template thought, or with ``thoughts="quote"`` the sentence of the task that this action
        carries out (sentences matched in order by the action's first entity or direction), so the
        thought copies names from the task and the action copies them from the thought."""
        if self.thoughts == "quote":
            clause = _task_clause(seen.split("\n", 1)[0], self._done_actions + [action])
            if clause:
                return f'Next in my task: "{clause}"'
        words = action.split()
        verb, rest = (words[0], " ".join(words[1:])) if words else ("", "")
        if verb == "go":
            return f"The task leads {rest} from here, and there is an exit that way, so I go {rest}."
        m = re.match(r"take (.+?) from (.+)", action)
        if m:
            return f"I can see the {m[1]} in the {m[2]}. The task needs it, so I take it."
        if verb == "take":
            return f"The {rest} is here and the task needs it, so I pick it up."
        m = re.match(r"(put|insert) (.+?) (on|into) (.+)", action)
        if m:
            return f"I have the {m[2]}. The task asks me to place it {m[3]} the {m[4]}, so I do that now."
        if verb in ("open", "unlock"):
            return f"The {rest.split(' with ')[0]} is in my way and must be opened to go on, so I {verb} it."
        if verb in ("eat", "drop", "close", "lock", "examine"):
            return f"The task asks me to {verb} the {rest.split(' with ')[0]}, so I do it."
        return f"To make progress on the task I {action}."


def _task_clause(instruction: str, actions: list[str]) -> str | None:
    """The task sentence the last of ``actions`` carries out (its last clause), aligning each earlier
    action to the first later sentence that names its focus; None where no sentence does."""
    objective = instruction.split("Your task: ", 1)[-1]
    sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+", objective) if x.strip()]
    start = 0
    for i, a in enumerate(actions):
        key = _focus(a)
        hit = next((j for j in range(start, len(sentences))
                    if key and re.search(rf"\b{re.escape(key)}\b", sentences[j], re.IGNORECASE)), None)
        if hit is None:
            if i == len(actions) - 1:
                return None
            continue
        start = hit + 1
    sentence = sentences[start - 1]
    return sentence.rsplit(", ", 1)[-1]


def _focus(action: str) -> str | None:
    """The direction or first entity of an action: what a task sentence about it must name."""
    m = re.match(r"(?:go (\w+)|(?:take|drop|eat|examine|open|close|lock|unlock|put|insert) (.+?)"
                 r"(?: (?:from|on|into|with) .+)?)$", action)
    return (m[1] or m[2]) if m else None
