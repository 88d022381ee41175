"""Monte Carlo step rewards: how good is an action, judged by where it leads.

The step reward of (prefix, action) is the mean final reward of N rollouts by the
scorer (by default the fixed SFT agent, temperature 1, N = 5) from the state after that
action; a terminal action takes the env's reward. The same estimator scores the
expert's actions and the agent's (the paper ships the expert's precomputed; we compute
them). Each estimate keeps its spread (standard deviation, a 95% interval) and the
rollouts behind it, for the notebooks.

Estimates are cached on disk (one JSONL per scorer), keyed by scorer, env, task, action
prefix, N and temperature: a rerun or a later iteration never recomputes what exists.
"""

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
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
    """Each rollout's final reward and actions after the scored action."""

    @classmethod
    def from_rewards(cls, rewards: list[float], rollouts: list[dict]) -> "MCEstimate":
        n = len(rewards)
        mean = sum(rewards) / n
        std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1)) if n > 1 else 0.0
        half = 1.96 * std / math.sqrt(n)
        return cls(mean, std, max(0.0, mean - half), min(1.0, mean + half), n, False, rollouts)


def fingerprint_model(path: str | Path) -> str:
    """A short id of a model folder's weights (file names, sizes and mtimes)."""
    p = Path(path)
    parts = [str(p.resolve())]
    for f in sorted(p.glob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"):
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


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
    """MC estimates for every request, batched through the engine; returns (estimates,
    counts of cached / computed / terminal)."""
    out: list[MCEstimate | None] = [None] * len(requests)
    todo: dict[str, list[int]] = {}
    counts = {"terminal": 0, "cached": 0, "computed": 0, "rollouts": 0}
    for i, r in enumerate(requests):
        if r.terminal_reward is not None:
            out[i] = MCEstimate(float(r.terminal_reward), terminal=True, ci_low=float(r.terminal_reward),
                                ci_high=float(r.terminal_reward))
            counts["terminal"] += 1
            continue
        k = cache.key(scorer_id, env_id, r.task_id, [s.action for s in r.steps], cfg.n, cfg.temperature)
        if (hit := cache.get(k)) is not None:
            out[i] = hit
            counts["cached"] += 1
        else:
            todo.setdefault(k, []).append(i)
    keys = list(todo)
    specs = [EpisodeSpec(requests[todo[k][0]].task_id, prefix=requests[todo[k][0]].steps, temperature=cfg.temperature,
                         meta={"mc_key": k}, sample=j) for k in keys for j in range(cfg.n)]
    trajs = engine.run(specs, desc="MC rollouts", progress=progress) if specs else []
    new: dict[str, MCEstimate] = {}
    for j, k in enumerate(keys):
        group = trajs[j * cfg.n:(j + 1) * cfg.n]
        n_prefix = len(requests[todo[k][0]].steps)
        rollouts = [{"final_reward": t.final_reward, "success": t.success, "actions": t.actions[n_prefix:]} for t in group]
        new[k] = MCEstimate.from_rewards([float(t.final_reward or 0.0) for t in group], rollouts)
        for i in todo[k]:
            out[i] = new[k]
    cache.put_many(new)
    counts["computed"], counts["rollouts"] = len(new), len(specs)
    return out, counts
