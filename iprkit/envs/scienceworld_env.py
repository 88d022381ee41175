"""ScienceWorld adapter (ETO's environment; PyPI ``scienceworld``, a Java 17 simulator driven over py4j).

Tasks are ``<task name>:<variation>`` with ScienceWorld's own variation splits: ``train``,
``dev`` and ``test`` variations of its 30 task types (``tasks`` picks a subset,
``variations`` caps how many of each type). The gold path is ScienceWorld's own gold action
sequence; the reward is the simulator's score / 100 (partial credit per sub-goal, clipped
to [0, 1]), and success is the task completed (score 100).

Each simulator is a JVM (about 110 MB, 0.6 s to start). They are pooled per process: an env
copy takes an idle simulator on first use and gives it back on ``close``, so a stage's
episodes reuse a few JVMs instead of starting one per episode; ``max_instances`` caps how many
episodes the rollout engine keeps live at once for this env.
"""

import atexit
import json
import threading

from iprkit.envs.base import Env
from iprkit.envs.cache import cache_dir
from iprkit.errors import IprkitError, UnknownTaskError

_POOL: list = []  # idle simulators, reused by the next env copy of this process
_LOCK = threading.Lock()


def _simulator(step_limit: int):
    with _LOCK:
        sim = _POOL.pop() if _POOL else None
    if sim is None:
        try:
            from scienceworld import ScienceWorldEnv
        except ImportError:
            raise IprkitError("scienceworld: the package is missing; `pip install scienceworld` (it needs Java 17: "
                              "`apt-get install openjdk-17-jre-headless`).") from None
        try:
            sim = ScienceWorldEnv("", envStepLimit=step_limit)
        except Exception as e:  # no java, or a JVM that does not start
            raise IprkitError(f"scienceworld: the simulator (a JVM) did not start ({type(e).__name__}: {e}); it needs "
                              "Java 17 on PATH (`apt-get install openjdk-17-jre-headless`).") from None
    sim.envStepLimit = step_limit
    return sim


def _close_pool() -> None:
    with _LOCK:
        while _POOL:
            _POOL.pop().close()


atexit.register(_close_pool)


class ScienceWorldEnv(Env):
    """ScienceWorld tasks, one per (task type, variation), with the simulator's variation splits."""

    name = "scienceworld"
    splits = ("train", "dev", "test")
    test_splits = ("test",)
    max_instances = 8
    option_docs = {
        "tasks": "task types to use (default: all 30; `iprkit envs` cannot list them without a JVM: see "
                 "ScienceWorldEnv.get_task_names())",
        "variations": "at most this many variations of each task type per split (None: all)",
        "simplification": "ScienceWorld's simplifications, e.g. easy (ETO's setting) or '' (none)",
        "max_steps": "step limit of an episode",
        "preamble": "text in place of the instruction's opening (e.g. the paper's prompt from its release)",
    }
    preamble = ("You are an agent in a simulated science lab and home. Each turn, think, then give one action "
                "(look around, go to ROOM, pick up OBJ, focus on OBJ, use OBJ on OBJ, ...). ")

    def __init__(self, tasks: list[str] | None = None, variations: int | None = 10, simplification: str = "easy",
                 max_steps: int = 100, preamble: str | None = None):
        super().__init__(preamble)
        self.tasks_wanted, self.variations, self.simplification = tasks, variations, simplification
        self.max_steps = max_steps
        self._sim = None
        self._loaded: tuple | None = None
        self._score = 0.0

    # -- tasks -------------------------------------------------------------------------------------
    def _catalogue(self) -> dict:
        """{task type: {split: [variation, ...]}}, read from the simulator once and cached on disk."""
        if "_cat" not in self.__dict__:
            import scienceworld

            path = cache_dir("scienceworld") / f"variations-{scienceworld.__version__}.json"
            if path.exists():
                cat = json.loads(path.read_text())
            else:
                sim, cat = self._simulator(), {}
                for task in sim.get_task_names():
                    sim.load(task, 0, "")
                    cat[task] = {"train": sim.get_variations_train(), "dev": sim.get_variations_dev(),
                                 "test": sim.get_variations_test()}
                self._loaded = None
                from iprkit.io import write_json

                write_json(path, cat)
            unknown = sorted(set(self.tasks_wanted or []) - set(cat))
            if unknown:
                raise IprkitError(f"scienceworld: unknown task type(s) {unknown}; choose from {sorted(cat)}.")
            self._cat = {t: cat[t] for t in (self.tasks_wanted or cat)}  # in the order the user named them
        return self._cat

    def task_ids(self, split: str) -> list[str]:
        self.check_split(split)
        return [f"{task}:{v}" for task, splits in self._catalogue().items() for v in splits[split][: self.variations]]

    def _parse(self, task_id: str) -> tuple[str, int]:
        task, _, var = task_id.rpartition(":")
        if not task or not var.isdigit():
            raise UnknownTaskError(f"scienceworld: task id {task_id!r} is not of the form '<task type>:<variation>'.")
        return task, int(var)

    def expert(self, task_id: str) -> list[str]:
        self.check_task(task_id)
        sim = self._load(task_id, gold=True)
        return list(sim.get_gold_action_sequence())

    # -- episodes ----------------------------------------------------------------------------------
    def _simulator(self):
        if self._sim is None:
            self._sim = _simulator(self.max_steps + 1)  # the kit enforces max_steps itself
        return self._sim

    def _load(self, task_id: str, gold: bool = False):
        sim, key = self._simulator(), (task_id, gold)
        if self._loaded != key:
            task, var = self._parse(task_id)
            sim.load(task, var, self.simplification, generateGoldPath=gold)
            self._loaded = key
        return sim

    def _reset(self, task_id: str) -> tuple[str, str]:
        sim = self._load(task_id, gold=self._loaded == (task_id, True))
        obs, _ = sim.reset()
        self._score = 0.0
        return self.preamble + sim.get_task_description(), obs.strip()

    def _step(self, action: str):
        obs, _, done, info = self._sim.step(action)
        score = float(info.get("score") or 0.0)
        self._score = max(0.0, min(1.0, score / 100.0))
        won = score >= 100
        return str(obs).strip(), self._score, bool(done or won), won, {"score": score}

    def close(self) -> None:
        if self._sim is not None:
            with _LOCK:
                _POOL.append(self._sim)  # back to the pool for the next env copy
            self._sim, self._loaded = None, None
