"""The rollout engine: many episodes at once, through one backend.

Exploration, Monte Carlo scoring and evaluation all run through :meth:`RolloutEngine.run`:
each :class:`EpisodeSpec` names a task, an optional forced prefix of steps (the expert
prefix, maybe plus the action being scored) and how the model samples. Two schedules:

- lockstep (the in-process backend): every step, one batched model call for all live
  episodes, then their env steps; episodes waiting for a slot are admitted as others finish;
- independent (a server backend, ``backend.independent``): each episode runs in a thread of
  its own and sends its next turn as soon as its env has stepped; the server batches the
  requests continuously, and a slow env step holds up only its own episode.

Every sampled turn's seed comes from the episode (engine seed, task, prefix, sample number)
and the turn number, never from the batch: the same specs give the same trajectories
under either schedule's batch shapes, any ``max_live``, and any split of the specs.
"""

import threading
from contextlib import nullcontext
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable

from iprkit.progress import tqdm

from iprkit.envs.base import Env
from iprkit.prompts import parse_agent_turn
from iprkit.trajectory import Step, Trajectory


@dataclass
class EpisodeSpec:
    """One episode to run."""

    task_id: str
    """The env's task id."""
    prefix: list[Step] = field(default_factory=list)
    """Steps replayed before the model acts (their thoughts kept in the history)."""
    temperature: float | None = None
    """Sampling temperature for this episode (None: the engine's default)."""
    max_model_steps: int | None = None
    """Stop after this many model steps (None: until done or the env's step limit)."""
    meta: dict = field(default_factory=dict)
    """Carried into the trajectory's meta (for example the branching step)."""
    sample: int = 0
    """Which of several samples from the same start this is (the N Monte Carlo rollouts of one action are
    samples 0..N-1): part of the episode's seed."""


def episode_seed(seed: int, spec: EpisodeSpec) -> int:
    """The seed of one episode: a function of the engine's seed and the episode alone."""
    from iprkit.backends import seed_of

    return seed_of(seed, spec.task_id, [s.action for s in spec.prefix], spec.sample)


def turn_seed(episode: int, turn: int) -> int:
    from iprkit.backends import seed_of

    return seed_of(episode, turn)


class RolloutEngine:
    """Runs episodes through a :class:`~iprkit.backends.Backend`, in lockstep or independently."""

    def __init__(self, backend, env_factory: Callable[[], Env], temperature: float = 0.0, seed: int = 0,
                 max_live: int = 64, one_shot: list[dict] | None = None, snapshots: bool = False):
        self.backend, self.env_factory = backend, env_factory
        self.temperature, self.seed, self.max_live, self.one_shot = temperature, seed, max_live, one_shot
        self.snapshots = snapshots
        """Where the env can copy its state, replay a prefix once and restore it for every later
        episode that starts from the same prefix (the N Monte Carlo rollouts of one action). Off by
        default: a replay is cheaper where env steps are fast (TextWorld: 4 ms a step, 50-300 ms a copy)."""
        self._envs: list[Env] = []
        self._snaps: dict[tuple, tuple] = {}
        self._lock = threading.Lock()  # the snapshot store and the counters, under the independent schedule
        self._env_lock = threading.Lock()  # env work one at a time, for envs that are not thread-safe
        self.stats = {"prefix_replays": 0, "snapshot_restores": 0}
        self._runs = 0
        self._keyed = hasattr(backend, "forget")

    def _env(self, slot: int) -> Env:
        while len(self._envs) <= slot:
            env = self.env_factory()
            env.track_admissible = False  # the model picks the actions
            self._envs.append(env)
        return self._envs[slot]

    def _start(self, spec: EpisodeSpec, env: Env) -> dict:
        key = (spec.task_id, tuple((s.action, s.thought, s.valid) for s in spec.prefix))
        use_snap = self.snapshots and env.can_snapshot and spec.prefix
        seed = episode_seed(self.seed, spec)
        with self._lock:
            kept = self._snaps.get(key) if use_snap else None
        if kept is not None:
            snap, ep = kept
            env.restore(snap)
            with self._lock:
                self.stats["snapshot_restores"] += 1
            return {**ep, "spec": spec, "env": env, "seed": seed, "steps": [Step(**vars(s)) for s in ep["steps"]],
                    "messages": list(ep["messages"])}
        instruction, obs = env.reset(spec.task_id)
        ep = {"spec": spec, "env": env, "seed": seed, "instruction": instruction, "obs": obs, "steps": [],
              "model_steps": 0, "messages": [{"role": "user", "content": f"{instruction}\n\n{obs}".strip()}]}
        for s in spec.prefix:
            if env.done:
                break
            self._apply(ep, Step(action=s.action, observation="", thought=s.thought, valid=s.valid), forced=True)
        with self._lock:
            self.stats["prefix_replays"] += bool(spec.prefix)
            if use_snap:
                if len(self._snaps) >= 512:  # keep memory bounded: drop the oldest prefix
                    self._snaps.pop(next(iter(self._snaps)))
                self._snaps[key] = (env.snapshot(), {k: ep[k] for k in ("instruction", "obs", "model_steps")}
                                    | {"steps": [Step(**vars(s)) for s in ep["steps"]], "messages": list(ep["messages"])})
        return ep

    def _act(self, ep: dict, text: str) -> None:
        """Parse the model's turn and step the env with it (text that is not valid UTF-8, such as a lone surrogate
        from a server's JSON, is mended first: every artifact is UTF-8)."""
        text = text.encode("utf-8", "replace").decode("utf-8")
        thought, action = parse_agent_turn(text)
        valid = action is not None
        step = Step(action=action if valid else text.strip()[:200], observation="",
                    thought=thought if valid else text.strip(), valid=valid)
        self._apply(ep, step, forced=False)

    def _seed(self, ep: dict) -> int:
        return turn_seed(ep["seed"], ep["model_steps"])

    def _apply(self, ep: dict, step: Step, forced: bool) -> None:
        r = ep["env"].step(step.action)
        step.observation, step.reward, step.done = r.observation, r.reward, r.done
        ep["steps"].append(step)
        ep["messages"] += [{"role": "assistant", "content": step.turn() if step.valid else step.thought},
                           {"role": "user", "content": r.observation}]
        if not forced:
            ep["model_steps"] += 1

    def _finished(self, ep: dict) -> bool:
        cap = ep["spec"].max_model_steps
        return ep["env"].done or (cap is not None and ep["model_steps"] >= cap)

    def _trajectory(self, ep: dict) -> Trajectory:
        env, spec = ep["env"], ep["spec"]
        return Trajectory(env=env.name, task_id=spec.task_id, instruction=ep["instruction"], observation=ep["obs"],
                          steps=ep["steps"], final_reward=env.final_reward(), success=env.success(), source="agent",
                          meta={**spec.meta, "n_prefix": len(spec.prefix), "done": env.done,
                                "invalid_steps": sum(not s.valid for s in ep["steps"])})

    def run(self, specs: list[EpisodeSpec], desc: str = "rollouts", progress: bool = True) -> list[Trajectory]:
        """Run every spec; returns trajectories in the order of ``specs``."""
        if getattr(self.backend, "independent", False):
            return self._run_independent(specs, desc, progress)
        return self._run_lockstep(specs, desc, progress)

    def _run_independent(self, specs: list[EpisodeSpec], desc: str, progress: bool) -> list[Trajectory]:
        """Each episode in a thread of its own: ask for a turn, step the env, repeat (see the module's doc)."""
        cap = min(self.max_live, getattr(self.backend, "concurrency", self.max_live))
        cap = max(1, min(cap, self._env(0).max_instances or cap))
        pool: list[Env] = []  # idle envs; an episode takes one and gives it back
        made = 0

        def episode(spec: EpisodeSpec) -> Trajectory:
            nonlocal made
            with self._lock:
                if pool:
                    env = pool.pop()
                else:
                    env, made = self._env(made), made + 1
            guard = nullcontext() if env.thread_safe else self._env_lock
            try:
                with guard:
                    ep = self._start(spec, env)
                while not self._finished(ep):
                    text = self.backend.complete(self._conversation(ep), self._temperature(ep), self._seed(ep))
                    with guard:
                        self._act(ep, text)
                return self._trajectory(ep)
            finally:
                with self._lock:
                    pool.append(env)

        results: list[Trajectory | None] = [None] * len(specs)
        with tqdm(total=len(specs), desc=desc, disable=not progress, leave=False) as bar, \
                ThreadPoolExecutor(max_workers=cap, thread_name_prefix="episode") as ex:
            futures = {ex.submit(episode, spec): i for i, spec in enumerate(specs)}
            try:
                for f in as_completed(futures):
                    results[futures[f]] = f.result()
                    bar.update()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return results

    def _run_lockstep(self, specs: list[EpisodeSpec], desc: str, progress: bool) -> list[Trajectory]:
        results: list[Trajectory | None] = [None] * len(specs)
        queue = list(range(len(specs)))[::-1]
        live: dict[int, dict] = {}  # slot -> episode
        cap = min(self.max_live, self._env(0).max_instances or self.max_live)  # an env may hold a process per copy
        free = list(range(cap))[::-1]
        bar = tqdm(total=len(specs), desc=desc, disable=not progress, leave=False)
        self._runs += 1
        run_id = (id(self), self._runs)  # names this run's episodes to a backend that keeps per-episode caches

        def admit():
            while queue and free:
                i, slot = queue.pop(), free.pop()
                ep = self._start(specs[i], self._env(slot))
                ep["index"] = i
                if self._finished(ep):
                    finish(slot, ep)
                else:
                    live[slot] = ep

        def finish(slot, ep):
            if self._keyed:
                self.backend.forget([(run_id, ep["index"])])
            results[ep["index"]] = self._trajectory(ep)
            free.append(slot)
            bar.update()

        admit()
        while live:
            slots = sorted(live)
            convs = [self._conversation(live[s]) for s in slots]
            temps = {self._temperature(live[s]) for s in slots}
            texts: dict[int, str] = {}
            for temp in sorted(temps):  # one batched call per temperature in use
                group = [s for s in slots if self._temperature(live[s]) == temp]
                outs = self.backend.generate([convs[slots.index(s)] for s in group], temperature=temp,
                                             seed=[self._seed(live[s]) for s in group],
                                             **({"keys": [(run_id, live[s]["index"]) for s in group]}
                                                if self._keyed else {}))
                texts.update(zip(group, outs))
            for s in slots:
                ep = live[s]
                self._act(ep, texts[s])
                if self._finished(ep):
                    del live[s]
                    finish(s, ep)
            admit()
        bar.close()
        return results

    def _temperature(self, ep: dict) -> float:
        t = ep["spec"].temperature
        return self.temperature if t is None else t

    def _conversation(self, ep: dict) -> list[dict]:
        return (self.one_shot or []) + ep["messages"]

    def close(self) -> None:
        """Close the envs, and the backend where it holds something (a launched server)."""
        for e in self._envs:
            e.close()
        self._envs = []
        if hasattr(self.backend, "close"):
            self.backend.close()
