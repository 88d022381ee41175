"""Monte Carlo step rewards: how good is an action, judged by where it leads.

The step reward of (prefix, action) is the mean final reward of N rollouts by the
scorer (by default the fixed SFT agent, temperature 1, N = 5) from the state after that
action; a terminal action takes the env's reward. The same estimator scores the
expert's actions and the agent's (the paper ships the expert's precomputed; we compute
them). Each estimate keeps its spread (standard deviation, a 95% interval) and the
rollouts behind it, for the notebooks.

Estimates are cached on disk (one JSONL per scorer), keyed by scorer, env, task, action
prefix, N and temperature: a rerun or a later iteration never recomputes what exists.

Rollout reuse (``mc.reuse``). A state is a task and an action prefix (the cache's key). A rollout from one
scored state that goes on through another scored state of the same task (it took the expert's next action,
or the agent's at that step, or any action prefix being scored) is also a rollout from that state: its final
reward is the final reward of its continuation from there, by the same scorer at the same temperature.
States are scored shortest prefix first; each takes the samples that rollouts from shorter states left
there (in the order those ran, at most N), and runs only the rest of its N. Which samples count: a rollout
counts for every scored state whose whole action prefix it reproduced and after which it took at least one
more action. Bias: whether a rollout reaches a state depends only on its actions before the state, so,
given that it got there, its continuation is a fresh draw from the scorer at that state, and the mean of N
such draws keeps its expectation in a deterministic env (TextWorld, ALFWorld, SQL: the actions fix the env
state). The one difference is the history the scorer reads: a passing rollout carries its own sampled
thoughts for the steps it took, where a rollout started at the state carries the expert's (or the agent's).
A scorer whose next actions depend on those earlier thoughts thus mixes histories that reach the state,
a small bias the estimate takes in exchange for fewer rollouts; ``mc.reuse=false`` (the paper's estimator)
conditions every sample on the request's own history.
"""

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from iprkit.rollout import EpisodeSpec, RolloutEngine
from iprkit.settings import MCSettings
from iprkit.trajectory import Step


@dataclass
class MCEstimate:
    """One step reward and how sure it is."""

    mean: float
    std: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 0.0
    n: int = 0
    terminal: bool = False
    """The action ended the episode: the value is the env's reward, no rollouts."""
    rollouts: list[dict] = field(default_factory=list)
    """Each rollout's final reward and actions after the scored action (``reused``: the key of the state a
    passing rollout started from)."""
    reused: int = 0
    """How many of the N samples came from rollouts of other states that passed through this one."""
    estimator: str = "mc"
    """What made it: ``mc`` (rollouts), ``prm`` (the learned step reward model alone) or ``terminal``."""
    prm: float | None = None
    """The step reward model's score of this state, where one scored it (``mc.estimator``: prm, hybrid)."""

    @classmethod
    def from_rewards(cls, rewards: list[float], rollouts: list[dict]) -> "MCEstimate":
        n = len(rewards)
        mean = sum(rewards) / n
        std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1)) if n > 1 else 0.0
        half = 1.96 * std / math.sqrt(n)
        return cls(mean, std, max(0.0, mean - half), min(1.0, mean + half), n, False, rollouts,
                   sum(1 for r in rollouts if r.get("reused")))


def estimator_of(row: dict) -> str:
    """Which estimator made a ``step_rewards.jsonl`` row (rows written before the field: terminal or mc)."""
    return row.get("estimator") or ("terminal" if row["terminal"] else "mc")


def fingerprint_model(path: str | Path) -> str:
    """A short id of a model folder's contents (its weights and JSON files, hashed): the same weights share one
    Monte Carlo cache wherever they lie, and retrained weights get a cache of their own. (Hashing reads the
    weights once per process and folder state: milliseconds for the tiny model, seconds for 7B.)"""
    files = [f for f in sorted(Path(path).glob("*")) if f.is_file() and f.suffix in (".safetensors", ".bin", ".json")]
    return _content_hash(tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@lru_cache(maxsize=64)
def _content_hash(files: tuple[tuple[str, int, int], ...]) -> str:
    """The hash of these files' names, sizes and bytes; memoised on (path, size, mtime), so a later stage that
    scores with an unchanged folder does not read its weights again."""
    h = hashlib.sha1()
    for path, size, _ in files:
        h.update(f"{Path(path).name}:{size}|".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()[:12]


class MCCache:
    """Append-only JSONL of estimates; a torn last line (a killed run) is ignored."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    self.data[row["key"]] = row["estimate"]
                except (json.JSONDecodeError, KeyError):
                    continue

    @staticmethod
    def key(scorer: str, env: str, task_id: str, actions: list[str], n: int, temperature: float) -> str:
        raw = json.dumps([scorer, env, task_id, actions, n, temperature])
        return hashlib.sha256(raw.encode()).hexdigest()

    def get(self, key: str) -> MCEstimate | None:
        return MCEstimate(**self.data[key]) if key in self.data else None

    def put_many(self, items: dict[str, MCEstimate]) -> None:
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({"key": k, "estimate": asdict(v)}) + "\n" for k, v in items.items())
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn last line (killed mid-write): start on a line of our own
                    text = "\n" + text
        with self.path.open("a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.data.update({k: asdict(v) for k, v in items.items()})


@dataclass
class ScoreRequest:
    """Score the last step of ``steps`` (the prefix plus the action)."""

    task_id: str
    steps: list[Step]
    terminal_reward: float | None = None
    """Set when the action ended the episode: that reward is the estimate."""


def score(engine: RolloutEngine, cache: MCCache, scorer_id: str, env_id: str, requests: list[ScoreRequest],
          cfg: MCSettings, progress: bool = True) -> tuple[list[MCEstimate], dict]:
    """MC estimates for every request, batched through the engine; returns (estimates, counts: terminal, cached,
    computed, rollouts run, rollouts without reuse, reused samples, estimates that took some)."""
    out: list[MCEstimate | None] = [None] * len(requests)
    todo: dict[str, list[int]] = {}
    counts = {"terminal": 0, "cached": 0, "computed": 0, "rollouts": 0}
    for i, r in enumerate(requests):
        if r.terminal_reward is not None:
            out[i] = MCEstimate(float(r.terminal_reward), terminal=True, ci_low=float(r.terminal_reward),
                                ci_high=float(r.terminal_reward), estimator="terminal")
            counts["terminal"] += 1
            continue
        k = cache.key(scorer_id, env_id, r.task_id, [s.action for s in r.steps], cfg.n, cfg.temperature)
        if (hit := cache.get(k)) is not None:
            out[i] = hit
            counts["cached"] += 1
        else:
            todo.setdefault(k, []).append(i)
    first = {k: requests[ix[0]] for k, ix in todo.items()}
    state = {k: (r.task_id, tuple(s.action for s in r.steps)) for k, r in first.items()}
    at = {v: k for k, v in state.items()}  # (task, action prefix) -> the key scored there
    samples: dict[str, list[dict]] = {k: [] for k in todo}
    # with reuse: shortest prefixes first, so each state finds what rollouts from shorter ones left there
    rounds = sorted({len(v[1]) for v in state.values()}) if cfg.reuse else [None]
    for length in rounds:
        keys = [k for k in todo if length is None or len(state[k][1]) == length]
        specs = [EpisodeSpec(first[k].task_id, prefix=first[k].steps, temperature=cfg.temperature, meta={"mc_key": k},
                             sample=j) for k in keys for j in range(cfg.n - len(samples[k]))]
        trajs = engine.run(specs, desc=f"MC rollouts{'' if length is None else f' (prefix {length})'}",
                           progress=progress) if specs else []
        counts["rollouts"] += len(specs)
        for spec, t in zip(specs, trajs):
            k = spec.meta["mc_key"]
            task, prefix = state[k]
            samples[k].append(_sample(t, len(prefix)))
            for m in range(len(prefix) + 1, len(t.actions)) if cfg.reuse else ():
                other = at.get((task, tuple(t.actions[:m])))
                if other is not None and len(samples[other]) < cfg.n:
                    samples[other].append({**_sample(t, m), "reused": k})
    new = {k: MCEstimate.from_rewards([float(r["final_reward"] or 0.0) for r in samples[k]], samples[k]) for k in todo}
    for k, e in new.items():
        for i in todo[k]:
            out[i] = e
    cache.put_many(new)
    counts["computed"] = len(new)
    counts["rollouts_without_reuse"] = len(new) * cfg.n
    counts["reused_samples"] = sum(e.reused for e in new.values())
    counts["estimates_with_reused_samples"] = sum(1 for e in new.values() if e.reused)
    return out, counts


def _sample(traj, n_prefix: int) -> dict:
    """One rollout as a sample of the state after its first ``n_prefix`` actions."""
    return {"final_reward": traj.final_reward, "success": traj.success, "actions": traj.actions[n_prefix:]}
