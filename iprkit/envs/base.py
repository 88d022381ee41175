"""The environment protocol the whole pipeline uses.

An adapter wraps a real environment package (TextWorld, ALFWorld, InterCode) behind
this small interface. Everything above it (expert trajectories, exploration, Monte
Carlo rollouts, evaluation) is written once against :class:`Env`.

Contract (every method and attribute the kit calls is declared on :class:`Env`, with a
default where one makes sense; callers never probe with ``hasattr``):
- ``splits`` name the task lists, ``test_splits`` the ones evaluated (each reported apart);
  ``task_ids(split)`` lists the tasks of a split; ``prepare(split, limit)`` readies them
  ahead of time (generate games, load data; optional); ``reset(task_id)`` starts an
  episode and returns ``(instruction, first observation)``.
- ``step(action)`` returns a :class:`StepResult`; an action the env cannot parse gets
  the env's own feedback as the observation, never an exception. The episode ends
  when the task is solved or failed, or after ``max_steps`` steps (``info['truncated']``).
- ``final_reward()`` and ``success()`` give the episode's outcome so far (final reward
  in [0, 1]).
- ``expert(task_id)`` gives the gold action sequence.
- Replaying the same action prefix always gives the same observations.
- Envs with ``can_snapshot`` offer ``snapshot()``/``restore()``; Monte Carlo rollouts
  can use them instead of replaying a prefix (``mc.env_snapshots``; worth it only where a
  copy costs less than the replayed steps).
- ``admissible_commands`` lists the actions the env accepts now, where it knows them
  (the random baseline draws from it); ``shared_kwargs()`` names resources that copies
  of the env must share (a database server's URL); ``close()`` releases what it holds.

An env written outside the kit registers under the entry-point group ``iprkit.envs``
(see :mod:`iprkit.envs`); ``iprkit envs`` lists what is installed, with each env's
constructor options (documented in its ``option_docs``).
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from iprkit.errors import EpisodeOverError, IprkitError, UnknownTaskError


def ranged_tasks(prefix: str, start: int, n: int) -> list[str]:
    """Task ids ``<prefix>-<i>`` for ``i`` in ``start .. start + n - 1`` (envs whose tasks are seeds or data indices)."""
    return [f"{prefix}-{i}" for i in range(start, start + n)]


def ranged_index(env: str, prefix: str, task_id: str) -> int:
    """The number of a ``<prefix>-<i>`` task id; another form is an unknown task."""
    pre, _, i = task_id.rpartition("-")
    if pre != prefix or not i.isdigit():
        raise UnknownTaskError(f"{env}: task id {task_id!r} is not of the form '{prefix}-<number>'.")
    return int(i)


def check_disjoint(env: str, what: str, train: tuple[int, int], test: tuple[int, int]) -> None:
    """Refuse train and test ranges ((start, count) each) that share a number: train would see test tasks."""
    (a, n), (b, m) = train, test
    if a < b + m and b < a + n:
        raise IprkitError(f"{env}: train {what} {a}..{a + n - 1} and test {what} {b}..{b + m - 1} overlap: train would "
                          f"see test tasks. Use fewer tasks, or move one range (train_start / test_start).")


@dataclass
class StepResult:
    """What one env step returns."""

    observation: str
    reward: float
    """Immediate reward of this step (the change in the episode's final reward)."""
    done: bool
    info: dict = field(default_factory=dict)


class Env(ABC):
    """Base class of the env adapters; subclasses implement the ``_``-prefixed hooks."""

    name: ClassVar[str] = "env"
    """The env's canonical name (also its name in trajectories and the MC cache key)."""
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    """Every split, in a fixed order."""
    test_splits: ClassVar[tuple[str, ...]] = ("test",)
    """The splits a run evaluates on by default, each reported apart."""
    can_snapshot: ClassVar[bool] = False
    """Whether :meth:`snapshot`/:meth:`restore` work."""
    option_docs: ClassVar[dict[str, str]] = {}
    """One line per constructor option, for ``iprkit envs`` (defaults come from the signature)."""
    preamble: ClassVar[str] = ""
    """The fixed text every instruction of this env starts with (the task's own part follows). An env built with
    ``preamble=TEXT`` puts TEXT there instead: the paper's prompt, kept verbatim from an imported release."""
    max_steps: int = 30
    """Step limit of an episode (``info['truncated']`` when reached)."""
    max_instances: ClassVar[int | None] = None
    """Most copies of this env alive at once (each may hold a process, such as a JVM): the rollout engine keeps
    no more live episodes than this (None: no limit of the env's own)."""
    thread_safe: ClassVar[bool] = False
    """Whether copies of this env may reset and step at the same time in threads of one process (the engine's
    independent schedule). False: the engine runs their env work one at a time (model requests stay concurrent).
    TextWorld is not: loading games in two threads at once breaks its grammar parser."""

    def __init__(self, preamble: str | None = None) -> None:
        self.preamble_override = preamble
        """Replaces :attr:`preamble` at the start of every instruction (None: the env's own)."""
        self.admissible_commands: list[str] = []
        """The actions the env accepts in the current state, where it knows them (else empty)."""
        self.track_admissible = True
        """Keep :attr:`admissible_commands` up to date (the random baseline draws from them). The rollout engine
        turns it off, as a model picks its own actions: an env may spend much of a step on them (TextWorld tracks
        its game logic for them, a third of a step; it then leaves the list empty)."""
        self._task: str | None = None
        self._t = 0
        self._done = True
        self._reward = 0.0
        self._won = False

    # -- to implement -----------------------------------------------------------
    @abstractmethod
    def task_ids(self, split: str) -> list[str]:
        """The task ids of a split, in a fixed order."""

    @abstractmethod
    def expert(self, task_id: str) -> list[str]:
        """The gold action sequence of a task."""

    @abstractmethod
    def _reset(self, task_id: str) -> tuple[str, str]:
        """Start the task; return (instruction, first observation)."""

    @abstractmethod
    def _step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        """Apply an action; return (observation, final reward so far, done, won, info)."""

    def prepare(self, split: str, limit: int | None = None) -> None:
        """Ready the first ``limit`` tasks of ``split`` ahead of time (generate games, load data); envs whose tasks
        need nothing beforehand keep this no-op. Tasks not prepared are readied on first use."""

    def shared_kwargs(self) -> dict:
        """Constructor settings that copies of this env (one per live episode) must share: a server URL, say.
        The kit builds copies as ``make_env(name, **kwargs, **env.shared_kwargs())``."""
        return {}

    def release_task_id(self, item: dict) -> str | None:
        """The task an item of the IPR/ETO release format belongs to (None: no task of this env). The default
        reads the kit's own ``task_id`` field (what :func:`iprkit.release.to_conversations` writes); adapters
        map the paper's own keys (ALFWorld's ``game_file``, a SQL question)."""
        task = item.get("task_id")
        return str(task) if task is not None and self.has_task(str(task)) else None

    @classmethod
    def release_fields(cls, task_id: str) -> dict:
        """Keys the paper's release format carries for a task beyond ``id`` and ``conversations`` (ALFWorld:
        ``game_file``), written on export."""
        return {}

    def has_task(self, task_id: str) -> bool:
        return any(task_id in self._task_set(s) for s in self.splits)

    def entities(self, task_id: str) -> dict[str, str] | None:
        """The task's named entities, ``{name: kind}``, where the env knows them (used to
        rename entities in training copies, see ``iprkit.augment``); None otherwise."""
        return None

    # -- the protocol ------------------------------------------------------------
    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise UnknownTaskError(f"{self.name}: unknown split {split!r}; choose one of {list(self.splits)}.")

    def check_task(self, task_id: str) -> None:
        """Raise a clear error for a task id no split holds."""
        if self.has_task(task_id):
            return
        raise UnknownTaskError(
            f"{self.name}: unknown task id {task_id!r}. List valid ids with env.task_ids(split) "
            f"for split in {list(self.splits)}.")

    def _task_set(self, split: str) -> set:
        cache = self.__dict__.setdefault("_task_sets", {})
        if split not in cache:
            cache[split] = set(self.task_ids(split))
        return cache[split]

    def reset(self, task_id: str) -> tuple[str, str]:
        """Start an episode of ``task_id``; return (instruction, first observation)."""
        task_id = str(task_id)
        self.check_task(task_id)
        instruction, obs = self._reset(task_id)
        if self.preamble_override is not None:
            if not instruction.startswith(self.preamble):
                raise IprkitError(f"{self.name}: cannot replace the instruction's preamble: the env's instruction does "
                                  f"not start with its declared preamble {self.preamble[:40]!r}.")
            instruction = self.preamble_override + instruction[len(self.preamble):]
        self._task, self._t, self._done, self._reward, self._won = task_id, 0, False, 0.0, False
        return instruction, obs

    def step(self, action: str) -> StepResult:
        """Apply one action. Raises only when no episode is running."""
        if self._task is None:
            raise EpisodeOverError(f"{self.name}: call reset(task_id) before step().")
        if self._done:
            raise EpisodeOverError(f"{self.name}: episode of task {self._task!r} is over; call reset(task_id).")
        obs, reward, done, won, info = self._step(action)
        self._t += 1
        info = dict(info, step=self._t, won=won)
        if not done and self._t >= self.max_steps:
            done, info["truncated"] = True, True
        delta, self._reward, self._won, self._done = reward - self._reward, reward, won, done
        return StepResult(obs, delta, done, info)

    def replay(self, task_id: str, actions: Sequence[str]) -> tuple[str, str, list[StepResult]]:
        """Reset and apply ``actions`` (stopping early if the episode ends)."""
        instruction, obs = self.reset(task_id)
        results = []
        for a in actions:
            if self._done:
                break
            results.append(self.step(a))
        return instruction, obs, results

    @property
    def done(self) -> bool:
        return self._done

    @property
    def steps_taken(self) -> int:
        return self._t

    def final_reward(self) -> float:
        """The episode's final reward so far, in [0, 1]."""
        return float(self._reward)

    def success(self) -> bool:
        """Whether the episode's task is solved."""
        return bool(self._won)

    def expert_thought(self, action: str, seen: str) -> str:
        """A short template thought for an expert action; ``seen`` is every observation
        so far (adapters override this with env-specific templates)."""
        return f"Next I will {action}."

    def snapshot(self) -> Any:
        """A copy of the current state (only where ``can_snapshot``)."""
        raise NotImplementedError(f"{self.name} cannot snapshot its state; replay the prefix instead.")

    def restore(self, snap: Any) -> None:
        """Return to a state from :meth:`snapshot`."""
        raise NotImplementedError(f"{self.name} cannot snapshot its state; replay the prefix instead.")

    def _episode_state(self) -> tuple:
        return (self._task, self._t, self._done, self._reward, self._won)

    def _set_episode_state(self, state: tuple) -> None:
        self._task, self._t, self._done, self._reward, self._won = state

    def close(self) -> None:
        """Release the env's resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
