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

from iprkit.progress import tqdm

from iprkit.envs.base import Env, check_disjoint, ranged_index, ranged_tasks
from iprkit.envs.cache import cache_dir
from iprkit.errors import IprkitError


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
CHALLENGES = {
    # TextWorld's own challenge games (``tw-make <name>``): name -> (default settings, step limit)
    "tw-simple": ({"rewards": "dense", "goal": "detailed", "test": False}, 50),
    "tw-coin_collector": ({"level": 1}, 50),
    "tw-treasure_hunter": ({"level": 1}, 50),
    "tw-cooking": ({"recipe": 1, "take": 1, "go": 1, "open": True, "cook": False, "cut": False, "drop": False,
                    "recipe_seed": 0, "split": "train"}, 50),
}
"""TextWorld's challenge games and the settings each takes (``challenge_settings`` overrides them)."""
TEST_SEED_OFFSET = 1_000_000
"""Test seeds start here by default; train seeds start at 0. The ranges never meet."""


@dataclass(frozen=True)
class Family:
    """How the games of an env are made: sizes drawn per seed, or one of TextWorld's challenges."""

    name: str
    """Names the family in task ids (``easy-5``, ``r4-o8-q4-5``, ``tw-cooking-r1-t1-g1-open-5``) and the cache."""
    sizes: TextWorldPreset | None = None
    challenge: str | None = None
    settings: tuple = ()
    """The challenge's settings, as sorted (key, value) pairs."""

    def make(self, seed: int):
        """The game (not compiled) of one seed."""
        import textworld
        from textworld.generator import make_game

        opt = textworld.GameOptions()
        opt.seeds = seed
        if self.challenge:
            import textworld.challenges

            return textworld.challenges.CHALLENGES[self.challenge][1](dict(self.settings), opt), opt
        rng = random.Random(seed)
        opt.nb_rooms = rng.randint(*self.sizes.rooms)
        opt.nb_objects = rng.randint(*self.sizes.objects)
        opt.quest_length = rng.randint(*self.sizes.quest_length)
        return make_game(opt), opt


def family(preset: str = "easy", rooms=None, objects=None, quest_length=None, challenge_settings=None) -> Family:
    """The family of games an env's settings describe; bad settings get an error naming them."""
    def span(name, v, default):
        if v is None:
            return default
        lo, hi = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (list, tuple)) and len(v) == 2 else (None, None)
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise IprkitError(f"textworld: {name}={v!r}; give a count (e.g. {name}=4) or a range [min, max] of counts >= 1.")
        return lo, hi

    if preset in CHALLENGES:
        if rooms or objects or quest_length:
            raise IprkitError(f"textworld: {preset} makes its own worlds; rooms/objects/quest_length apply to the "
                              f"sized presets {list(PRESETS)} only (use challenge_settings, e.g. level).")
        defaults = CHALLENGES[preset][0]
        unknown = sorted(set(challenge_settings or {}) - set(defaults))
        if unknown:
            hint = " (YAML reads {a:1} as the key 'a:1': write a space after each colon, {a: 1})" \
                if any(":" in str(k) for k in unknown) else ""
            raise IprkitError(f"textworld: {preset} has no setting(s) {unknown}{hint}; its settings: {defaults}.")
        settings = {**defaults, **(challenge_settings or {})}
        changed = "-".join(f"{k}{int(v) if isinstance(v, bool) else v}" for k, v in sorted(settings.items())
                           if v != defaults[k] or k in ("level", "recipe", "go"))  # what sets the family apart
        return Family(f"{preset}-{changed}" if changed else preset, challenge=preset, settings=tuple(sorted(settings.items())))
    if preset not in PRESETS:
        raise IprkitError(f"textworld: unknown preset {preset!r}; choose one of {list(PRESETS) + list(CHALLENGES)}.")
    if challenge_settings:
        raise IprkitError(f"textworld: challenge_settings apply to {list(CHALLENGES)}, not to preset {preset!r}.")
    base = PRESETS[preset]
    if rooms is None and objects is None and quest_length is None:
        return Family(preset, sizes=base)
    sizes = TextWorldPreset(span("rooms", rooms, base.rooms), span("objects", objects, base.objects),
                            span("quest_length", quest_length, base.quest_length), base.max_steps)
    tag = lambda a, r: f"{a}{r[0]}" if r[0] == r[1] else f"{a}{r[0]}_{r[1]}"
    return Family("-".join([tag("r", sizes.rooms), tag("o", sizes.objects), tag("q", sizes.quest_length)]), sizes=sizes)


_STATUS = re.compile(r"\n?>\s*(-= .*? =-\s*\d+/\d+)?\s*$")
_END = re.compile(r"\s*\*\*\* The End \*\*\*.*", re.DOTALL)


INFORM_INPUT = 100
"""Characters of a command given to TextWorld's games: their Inform 7 parser's buffer has 123 entries, and from
about 115 characters on it printed pages of "Programming error" lines (cut by TextWorld, differently with and
without its state tracking) instead of an answer. Well under Frotz's own buffer (198 bytes)."""


def zmachine_command(action: str) -> str:
    """What the game can take: one line of printable ASCII, at most :data:`INFORM_INPUT` characters. Jericho hands
    the UTF-8 bytes to Frotz as they are; sampled turns with non-ASCII bytes or line breaks corrupted its memory here
    and crashed the process (a segfault) some steps later, in another game. A line that starts with a backslash is a
    command to dumb-frotz itself (``\\help``, ``\\s``...), not to the game; some of them corrupted its heap too
    (found by the fuzz test): backslashes are dropped."""
    text = " ".join(action.replace("\\", " ").split()).encode("ascii", "ignore").decode()
    return "".join(c for c in text if c.isprintable())[:INFORM_INPUT]


def _clean(text: str) -> str:
    """Drop the prompt/status line, the banner and the 'RESTART/QUIT' epilogue."""
    ended = "*** The End ***" in text
    text = _END.sub("", text)
    text = _STATUS.sub("", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return f"{text}\n*** The End ***".strip() if ended else text


def generate_game(fam: Family | str, seed: int, out_dir: Path) -> Path:
    """Generate and compile one game with TextWorld's generator; return the .z8 path.
    Written to a temp folder and moved into place, so a killed run leaves no half game."""
    from textworld.generator import compile_game

    fam = family(fam) if isinstance(fam, str) else fam
    target = out_dir / f"{seed}.z8"
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        game, opt = fam.make(seed)
        opt.path = str(Path(tmp) / f"{seed}.z8")
        opt.force_recompile = True
        compile_game(game, opt)
        shutil.move(str(Path(tmp) / f"{seed}.json"), out_dir / f"{seed}.json")
        shutil.move(opt.path, target)
    return target


class TextWorldEnv(Env):
    """TextWorld games of one family (a difficulty preset, custom sizes or a challenge), generated from seeds."""

    name = "textworld"
    splits = ("train", "test")
    test_splits = ("test",)
    can_snapshot = True
    option_docs = {
        "preset": f"family: a sized preset ({', '.join(PRESETS)}) or a TextWorld challenge ({', '.join(CHALLENGES)})",
        "n_train": "train games (seeds train_start ..)",
        "n_test": "test games (seeds test_start ..)",
        "max_steps": "step limit of an episode (default: the family's)",
        "game_dir": "folder of compiled games (default: $IPRKIT_CACHE/textworld/<family>)",
        "thoughts": "expert thoughts: template, or quote (the task sentence each action carries out)",
        "rooms": "rooms per game: a count or [min, max] (sized presets; overrides the preset's range)",
        "objects": "objects per game: a count or [min, max]",
        "quest_length": "actions in the winning quest: a count or [min, max]",
        "challenge_settings": "a challenge's settings, e.g. {level: 5} or {recipe: 2, cook: true} (see CHALLENGES)",
        "train_start": "first train seed",
        "test_start": f"first test seed (default {TEST_SEED_OFFSET:,}); the two seed ranges may not overlap",
        "workers": "processes generating games in parallel",
        "preamble": "text in place of the instruction's opening sentence (e.g. an imported release's prompt)",
    }
    preamble = "You are playing a text adventure game. "

    def __init__(self, preset: str = "easy", n_train: int = 800, n_test: int = 100,
                 max_steps: int | None = None, game_dir: str | Path | None = None, thoughts: str = "template",
                 rooms: int | list | None = None, objects: int | list | None = None, quest_length: int | list | None = None,
                 challenge_settings: dict | None = None, train_start: int = 0, test_start: int = TEST_SEED_OFFSET,
                 workers: int = 2, preamble: str | None = None):
        super().__init__(preamble)
        if thoughts not in ("template", "quote"):
            raise IprkitError(f"textworld: thoughts={thoughts!r}; choose 'template' or 'quote'.")
        self.thoughts = thoughts
        self.family = family(preset, rooms, objects, quest_length, challenge_settings)
        for name, v in (("n_train", n_train), ("n_test", n_test), ("train_start", train_start), ("test_start", test_start)):
            if not isinstance(v, int) or v < 0:
                raise IprkitError(f"textworld: {name}={v!r}; give a whole number >= 0.")
        check_disjoint("textworld", "seeds", (train_start, n_train), (test_start, n_test))
        self.preset, self.n_train, self.n_test = preset, n_train, n_test
        self.train_start, self.test_start, self.workers = train_start, test_start, workers
        self.max_steps = max_steps or (self.family.sizes.max_steps if self.family.sizes else CHALLENGES[preset][1])
        self.game_dir = Path(game_dir) if game_dir else cache_dir("textworld", self.family.name)
        self.game_dir.mkdir(parents=True, exist_ok=True)
        self._env = None
        self._loaded: str | None = None

    # -- tasks -----------------------------------------------------------------
    def task_ids(self, split: str) -> list[str]:
        self.check_split(split)
        start, n = (self.train_start, self.n_train) if split == "train" else (self.test_start, self.n_test)
        return ranged_tasks(self.family.name, start, n)

    def _seed(self, task_id: str) -> int:
        return ranged_index("textworld", self.family.name, task_id)

    def game_path(self, task_id: str) -> Path:
        """The compiled game of a task, generated (and cached) on first use."""
        seed = self._seed(task_id)
        path = self.game_dir / f"{seed}.z8"
        if not (path.exists() and path.with_suffix(".json").exists()):
            generate_game(self.family, seed, self.game_dir)
        return path

    def prepare(self, split: str, limit: int | None = None) -> None:
        """Generate (or find cached) every game of a split, ``workers`` processes at a time, with a
        progress bar."""
        seeds = [self._seed(t) for t in self.task_ids(split)[:limit]]
        missing = [s for s in seeds if not (self.game_dir / f"{s}.z8").exists()]
        if not missing:
            return
        bar = tqdm(total=len(missing), desc=f"textworld {self.family.name} {split}: generating games")
        with ProcessPoolExecutor(max_workers=max(1, self.workers)) as pool:
            for _ in pool.map(generate_game, [self.family] * len(missing), missing, [self.game_dir] * len(missing)):
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
        loaded = f"{path}:{self.track_admissible}"
        with warnings.catch_warnings():  # jericho: TextWorld's own z8 games are "not fully supported"
            warnings.simplefilter("ignore")
            if self._loaded != loaded:
                if self._env is not None:
                    self._env.close()
                infos = textworld.EnvInfos(score=True, max_score=True, won=True, lost=True,
                                           admissible_commands=self.track_admissible, objective=True)
                self._env, self._loaded = textworld.start(path, request_infos=infos), loaded
            gs = self._env.reset()
        self._max_score = max(1, gs.max_score or 1)
        self._done_actions: list[str] = []
        self.admissible_commands = list(gs.admissible_commands or [])
        objective = gs.objective.strip()
        # the first feedback is banner + objective + room; the room starts at its "-= Name =-" header
        room = re.search(r"^-= .+? =-$", gs.feedback, re.MULTILINE)
        first = gs.feedback[room.start():] if room else gs.feedback.split(objective, 1)[-1]
        instruction = f"{TextWorldEnv.preamble}Your task: {objective}"
        return instruction, _clean(first)

    def _step(self, action: str):
        self._done_actions.append(action)
        gs, score, done = self._env.step(zmachine_command(action))
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
