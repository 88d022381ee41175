"""Where everything of a run lives: the one module that spells run-directory paths.

The loop, the views, the batch runner, the notebooks and the benchmarks ask a
:class:`RunLayout` for paths; no other file names a run's folders or artifacts.

    OUT/config.json                     the resolved RunSettings
    OUT/run.lock                        the PID of the process running in OUT
    OUT/experts/<split>.jsonl           expert trajectories (order.json: task order; replay_report.json)
    OUT/mc_cache/<scorer>.jsonl         Monte Carlo estimates, shared by methods and iterations
    OUT/seed<S>/sft/                    model/, sft_config.json, sft_metrics.json, source.json, eval/ (adapter/: LoRA)
    OUT/seed<S>/<method>/iter<k>/       explore.jsonl, step_rewards.jsonl, mc_counts.json, comparisons.jsonl,
                                        pair_stats.json, pairs.jsonl, train_metrics.json, model/, eval/,
                                        prm/ (the step reward model, mc.estimator prm or hybrid)
    .../eval/<split>_metrics.json       evaluation metrics (and <split>_tasks.jsonl, one row per task)
    OUT/results.json, OUT/results.md    the table: success and reward per method and iteration
    OUT/timings.json                    wall seconds of every stage that ran (summed over resumes)
    OUT/metrics.json                    everything above in one file

A batch (``iprkit batch``) holds one run directory per grid point (:class:`BatchLayout`).
Stage names (``seed0/ipr/iter1/score``, used by ``--stop-after`` and ``timings.json``)
are spelled here too (:meth:`RunLayout.stage`).
"""

import re
from dataclasses import dataclass
from pathlib import Path

_SEED, _ITER = re.compile(r"seed(\d+)$"), re.compile(r"iter(\d+)$")


PRM_METRICS = "prm_metrics.json"
"""What a step reward model folder holds beside its weights (:func:`iprkit.prm.train_prm`)."""
EXPLORED = "explored"
"""The eval "split" of the train tasks a run's iterations explore (``eval_explored``): reported apart from held-out splits."""


@dataclass(frozen=True)
class EvalPaths:
    """An ``eval/`` folder: per split, its metrics and one row per task."""

    dir: Path

    def metrics(self, split: str) -> Path:
        return self.dir / f"{split}_metrics.json"

    def tasks(self, split: str) -> Path:
        return self.dir / f"{split}_tasks.jsonl"

    config = property(lambda self: self.dir / "eval_config.json")
    """The generation settings of a standalone ``iprkit eval``."""
    summary = property(lambda self: self.dir / "metrics.json")
    """Every split's metrics of a standalone ``iprkit eval``, in one file."""

    def splits(self, explored: bool = False) -> list[str]:
        """Held-out splits evaluated so far, in name order (``explored``: with the explored train tasks, last)."""
        found = sorted(p.name[: -len("_metrics.json")] for p in self.dir.glob("*_metrics.json"))
        return [s for s in found if s != EXPLORED] + ([EXPLORED] if explored and EXPLORED in found else [])


@dataclass(frozen=True)
class SFTPaths:
    """What SFT writes into its folder (``iprkit sft --out DIR`` or a run's ``seed<S>/sft``)."""

    dir: Path

    model = property(lambda self: self.dir / "model")
    """The SFT model (with ``model.lora``: the base with the trained adapter merged in, so the scorer, the reference
    and the first policy are the SFT model itself)."""
    adapter = property(lambda self: self.dir / "adapter")
    """The trained LoRA adapter alone (``model.lora`` only)."""
    config = property(lambda self: self.dir / "sft_config.json")
    metrics = property(lambda self: self.dir / "sft_metrics.json")
    source = property(lambda self: self.dir / "source.json")
    """Where a reused SFT model (``sft_model=``) came from."""
    init = property(lambda self: self.dir / "init")
    """The freshly built tiny model, before training."""
    trainer = property(lambda self: self.dir / "trainer")
    """TRL's output folder (logs only; no checkpoints are saved)."""
    warmup = property(lambda self: self.dir / "warmup")
    eval = property(lambda self: EvalPaths(self.dir / "eval"))


@dataclass(frozen=True)
class IterationPaths:
    """One iteration of one method and seed, one file per stage."""

    dir: Path

    explore = property(lambda self: self.dir / "explore.jsonl")
    """Exploration branches (agent trajectories, ``meta.branch`` = the step they branch at)."""
    step_rewards = property(lambda self: self.dir / "step_rewards.jsonl")
    """One Monte Carlo estimate per (task, step, side)."""
    mc_counts = property(lambda self: self.dir / "mc_counts.json")
    comparisons = property(lambda self: self.dir / "comparisons.jsonl")
    """One row per compared step: both rewards, both actions, which pair it gave."""
    pair_stats = property(lambda self: self.dir / "pair_stats.json")
    pairs = property(lambda self: self.dir / "pairs.jsonl")
    train_metrics = property(lambda self: self.dir / "train_metrics.json")
    prm = property(lambda self: self.dir / "prm")
    """The step reward model of this iteration (``mc.estimator``: prm or hybrid), an HF folder."""
    prm_metrics = property(lambda self: self.prm / PRM_METRICS)
    """Its training metrics (labels, held-out error and correlation)."""
    model = property(lambda self: self.dir / "model")
    eval = property(lambda self: EvalPaths(self.dir / "eval"))


class RunLayout:
    """Every path of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    # -- run-wide files --------------------------------------------------------------
    config = property(lambda self: self.root / "config.json")
    lock = property(lambda self: self.root / "run.lock")
    results_json = property(lambda self: self.root / "results.json")
    results_md = property(lambda self: self.root / "results.md")
    timings = property(lambda self: self.root / "timings.json")
    metrics = property(lambda self: self.root / "metrics.json")
    experts_order = property(lambda self: self.root / "experts" / "order.json")
    replay_report = property(lambda self: self.root / "experts" / "replay_report.json")

    def experts(self, split: str) -> Path:
        return self.root / "experts" / f"{split}.jsonl"

    def mc_cache(self, scorer_id: str) -> Path:
        return self.root / "mc_cache" / f"{scorer_id}.jsonl"

    def shard(self, stage: str, rank: int, world: int) -> Path:
        """One worker's results of a sharded stage (merged into the stage's artifact, then removed)."""
        return self.shards(stage) / f"{rank}-of-{world}.pkl"

    def shards(self, stage: str) -> Path:
        return self.root / "shards" / stage.replace("/", "__")

    @property
    def accelerate_config(self) -> Path:
        """A copy of the accelerate config the run's training used (``train.accelerate_config``)."""
        return self.root / "accelerate.yaml"

    @property
    def servers(self) -> Path:
        """Logs of the LLM servers the run launched (one folder per launch)."""
        return self.root / "servers"

    # -- per seed, method and iteration ------------------------------------------------
    def seed_dir(self, seed: int) -> Path:
        return self.root / f"seed{seed}"

    def sft(self, seed: int) -> SFTPaths:
        return SFTPaths(self.seed_dir(seed) / "sft")

    def sft_staging(self, seed: int) -> Path:
        """Where SFT writes before the folder is renamed into place (a killed SFT leaves no half model)."""
        return self.seed_dir(seed) / "sft.tmp"

    def iteration(self, seed: int, method: str, k: int) -> IterationPaths:
        return IterationPaths(self.seed_dir(seed) / method / f"iter{k}")

    def model(self, seed: int, method: str, k: int) -> Path:
        """The policy after iteration ``k`` of ``method`` (k = 0: the SFT model)."""
        return self.sft(seed).model if k == 0 else self.iteration(seed, method, k).model

    def eval(self, seed: int, method: str, k: int) -> EvalPaths:
        """The evaluation of that policy."""
        return self.sft(seed).eval if k == 0 else self.iteration(seed, method, k).eval

    # -- what is on disk -------------------------------------------------------------
    def seeds(self) -> list[int]:
        return sorted(int(m[1]) for p in self.root.glob("seed*") if p.is_dir() and (m := _SEED.match(p.name)))

    def methods(self, seed: int) -> list[str]:
        """Methods with at least one iteration folder for this seed (SFT itself is not listed)."""
        d = self.seed_dir(seed)
        return sorted(p.name for p in d.iterdir() if p.is_dir() and any(p.glob("iter*"))) if d.is_dir() else []

    def iterations(self, seed: int, method: str) -> list[int]:
        d = self.seed_dir(seed) / method
        return sorted(int(m[1]) for p in d.glob("iter*") if p.is_dir() and (m := _ITER.match(p.name)))

    def iteration_dirs(self) -> list[tuple[int, str, int, IterationPaths]]:
        """(seed, method, k, paths) of every iteration on disk."""
        return [(s, m, k, self.iteration(s, m, k)) for s in self.seeds() for m in self.methods(s)
                for k in self.iterations(s, m)]

    # -- stage names -------------------------------------------------------------------
    @staticmethod
    def stage(seed: int | None = None, method: str | None = None, k: int | None = None, *parts: str) -> str:
        """A stage's name: ``experts``, ``seed0/sft``, ``seed0/sft/eval/test``, ``seed0/ipr/iter1/score``."""
        head = [] if seed is None else [f"seed{seed}"]
        if method is not None:
            head += ["sft"] if k == 0 else [method, f"iter{k}"]
        return "/".join(head + list(parts))


class BatchLayout:
    """A batch directory: one run directory per grid point, the executed notebooks inside it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    summary_json = property(lambda self: self.root / "summary.json")
    summary_md = property(lambda self: self.root / "summary.md")
    report = property(lambda self: self.root / "report.html")

    def point(self, name: str) -> RunLayout:
        return RunLayout(self.root / name)

    @staticmethod
    def notebook(run: RunLayout, stem: str) -> Path:
        """The executed copy of notebook ``stem`` in a point's run directory."""
        return run.root / "notebooks" / f"{stem}.ipynb"

    @staticmethod
    def notebook_out(run: RunLayout, stem: str) -> Path:
        """That notebook's own output folder (its ``out_dir`` parameter)."""
        return run.root / "notebooks" / stem


def notebook_metrics(out_dir: str | Path) -> Path:
    """The metrics a notebook writes into its ``out_dir`` (collected by the batch runner)."""
    return Path(out_dir) / "metrics.json"


DEMO_BATCH = "runs/demo"
"""Where ``make demo`` (``iprkit batch --preset demo --out runs/demo``) writes its batch."""


def finished_demo_run(starts: tuple[str, ...] = (".", "..")) -> RunLayout | None:
    """The finished ``make demo`` run a notebook opened by hand reads: its ``default`` point, found from the repo root
    or from ``notebooks/`` (JupyterLab's working folder there); None when there is none yet."""
    for start in starts:
        run = BatchLayout(Path(start) / DEMO_BATCH).point("default")
        if run.results_json.exists():
            return run
    return None
