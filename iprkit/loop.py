"""The IPR loop and the main job: SFT, then K iterations of explore, score, pair,
train, evaluate, for every method and seed, in one run directory.

    iprkit run --preset demo --out runs/demo

Layout (every file written atomically; a rerun resumes at the first unfinished stage):

    OUT/config.json                     the resolved RunConfig
    OUT/experts/train.jsonl             expert trajectories the agents learn from (order.json: their task order)
    OUT/mc_cache/<scorer>.jsonl         Monte Carlo estimates, shared by methods and iterations
    OUT/seed<S>/sft/                    SFT model, its config and metrics, eval/
    OUT/seed<S>/<method>/iter<k>/       explore.jsonl, step_rewards.jsonl, pairs.jsonl,
                                        pair_stats.json, train_metrics.json, model/, eval/
    OUT/results.json, OUT/results.md    the table: success and reward per method and iteration
    OUT/timings.json                    wall seconds of every stage that ran (summed over resumes)
    OUT/metrics.json                    everything above in one file
"""

import shutil
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from iprkit.backends import GenerationConfig, HFBackend
from iprkit.config import save_run_config
from iprkit.envs import make_env
from iprkit.errors import IprkitError
from iprkit.evaluate import evaluate_model, save_eval
from iprkit.experts import expert_trajectories, verify_experts
from iprkit.explore import branches_by_task, explore, score_requests
from iprkit.io import atomic_write_text, read_json, read_jsonl, write_json, write_jsonl
from iprkit.mc import MCCache, MCSettings, fingerprint_model, score
from iprkit.pairs import PairSettings, build_pairs, pair_stats
from iprkit.rollout import RolloutEngine
from iprkit.sft import SFTSettings, train_sft
from iprkit.train import DPOSettings, train_dpo
from iprkit.trajectory import Trajectory, load_trajectories, save_trajectories

METHODS = {
    "sft": {"iterations": 0},
    "eto": {"pairs": {"step_pairs": False, "outcome_pairs": True}, "dpo": {"nll_weight": 0.0, "reference": "previous"},
            "every_step": False},
    "ipr": {},
    "ipr-no-step": {"pairs": {"step_pairs": False}, "every_step": False},
    "ipr-no-outcome": {"pairs": {"outcome_pairs": False}},
    "ipr-no-nll": {"dpo": {"nll_weight": 0.0}},
}
"""Each method's changes to the IPR defaults (ETO: outcome pairs only, plain DPO, reference = current model)."""


@dataclass
class RunConfig:
    """The main job: environments, data sizes, methods, seeds and every stage's settings."""

    env: str = "textworld"
    """Environment name (textworld, alfworld, sql)."""
    env_kwargs: dict = field(default_factory=dict)
    """Settings passed to the env adapter (e.g. preset, n_train, data_dir, url)."""
    train_split: str = "train"
    """Split the expert trajectories come from."""
    n_experts: int | None = None
    """Use the first N tasks of the train split for SFT (None: all)."""
    n_explore: int | None = None
    """Explore along the first N expert trajectories each iteration (None: all)."""
    explore_held_out: bool = False
    """Explore along the ``n_explore`` train tasks after the first ``n_experts`` (expert trajectories SFT never saw)
    instead of the first ``n_explore`` SFT tasks (the paper). For a small model that memorises its SFT tasks: there it
    already takes the expert's every action, so exploring them finds nothing to contrast."""
    eval_splits: list[str] | None = None
    """Splits to evaluate on (None: the env's test splits, each reported apart)."""
    n_eval: int | None = None
    """Evaluate on the first N tasks of each eval split (None: all)."""
    methods: list[str] = field(default_factory=lambda: ["sft", "eto", "ipr"])
    """Methods to run: sft, eto, ipr, ipr-no-step, ipr-no-outcome, ipr-no-nll."""
    iterations: int = 3
    """IPR iterations (the paper's pipeline: up to 6)."""
    eto_iterations: int = 3
    """ETO iterations (ETO: 3)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds; each runs SFT and every method from scratch."""
    explore_temperature: float = 0.0
    """Temperature of the current agent's exploration (the paper: greedy)."""
    sft: SFTSettings = field(default_factory=SFTSettings)
    """Supervised fine-tuning of the base agent."""
    mc: MCSettings = field(default_factory=MCSettings)
    """Monte Carlo step rewards."""
    pairs: PairSettings = field(default_factory=PairSettings)
    """Pair construction."""
    dpo: DPOSettings = field(default_factory=DPOSettings)
    """Preference training."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """How models write turns in every rollout."""
    threads: int = 2
    """torch CPU threads."""
    sft_model: str | None = None
    """Start every method from this SFT model folder instead of training one (``{seed}`` in the path becomes the
    seed), e.g. a model from ``iprkit sft`` or an earlier run's ``seed0/sft/model``: tune IPR without redoing SFT.
    It is copied into the run directory, with its origin in ``sft/source.json``."""
    experts_file: str | None = None
    """Bring your own expert trajectories (JSONL; e.g. converted from the paper's release) instead of the env's gold
    paths; each is replayed in the env first and those that do not reproduce are reported and skipped."""


class StopRun(Exception):
    """Raised at ``stop_after``: the run stops cleanly, as if interrupted there."""


def _merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for k, v in change.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


class Runner:
    """Runs one RunConfig in one directory, stage by stage, skipping finished stages."""

    def __init__(self, cfg: RunConfig, out: str | Path, progress: bool = True, stop_after: str | None = None):
        """``stop_after``: stop cleanly after the stage whose path ends with it (e.g.
        ``ipr/iter1/score``), as an interruption would; a rerun resumes from there."""
        import torch

        unknown = [m for m in cfg.methods if m not in METHODS]
        if unknown:
            raise IprkitError(f"unknown method(s) {unknown}; choose from {list(METHODS)}.")
        if cfg.explore_held_out and (cfg.n_experts is None or cfg.n_explore is None):
            raise IprkitError("explore_held_out=true needs n_experts (the SFT tasks) and n_explore (the held-out tasks "
                              "after them); set both, and give the train split n_experts + n_explore tasks.")
        self.cfg, self.out, self.progress, self.stop_after = cfg, Path(out), progress, stop_after
        if cfg.mc.scorer not in ("sft", "current"):
            from iprkit.models import load_model

            load_model(cfg.mc.scorer)  # a scorer that cannot be loaded fails now, not after SFT
        save_run_config(self.out, cfg)
        torch.set_num_threads(cfg.threads)
        self.env = make_env(cfg.env, **cfg.env_kwargs)
        kw = dict(cfg.env_kwargs)
        if getattr(self.env, "url", None):  # share one SQL server between env copies
            kw["url"] = self.env.url
        self.env_factory = lambda: make_env(cfg.env, **kw)
        self.env_id = f"{cfg.env}:{sorted(cfg.env_kwargs.items())}"
        self.counters: dict[str, dict] = {}

    # -- helpers -----------------------------------------------------------------------
    def _checkpoint(self, stage: str) -> None:
        if self.stop_after and stage.endswith(self.stop_after):
            raise StopRun(stage)

    @contextmanager
    def _timed(self, stage: str):
        """Add the wall seconds of the block to ``stage`` in OUT/timings.json (only stages that ran are timed)."""
        t0 = time.perf_counter()
        yield
        path = self.out / "timings.json"
        timings = read_json(path) if path.exists() else {}
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - t0, 2)
        write_json(path, timings)

    def _backend(self, model_path: Path) -> HFBackend:
        from iprkit.models import load_model

        model, tok = load_model(model_path)
        return HFBackend(model, tok, self.cfg.generation)

    def _engine(self, model_path: Path, seed: int, snapshots: bool = False) -> RolloutEngine:
        return RolloutEngine(self._backend(model_path), self.env_factory, seed=seed,
                             max_live=self.cfg.generation.batch_size, snapshots=snapshots)

    # -- stages --------------------------------------------------------------------------
    def experts(self) -> list[Trajectory]:
        path = self.out / "experts" / f"{self.cfg.train_split}.jsonl"
        if not path.exists():
            with self._timed("experts"):
                self._write_experts(path)
        return load_trajectories(path)

    def _write_experts(self, path: Path) -> None:
        n = self.cfg.n_experts + self.cfg.n_explore if self.cfg.explore_held_out else self.cfg.n_experts
        if self.cfg.experts_file:
            given = load_trajectories(self.cfg.experts_file)[:n]
            ids = [t.task_id for t in given]
            trajs, failures = verify_experts(self.env, given, progress=self.progress)
        else:
            ids = self.env.task_ids(self.cfg.train_split)[:n]
            if hasattr(self.env, "prepare"):
                self.env.prepare(self.cfg.train_split, limit=n)
            trajs, failures = expert_trajectories(self.env, ids, progress=self.progress)
        bad = [t.task_id for t in trajs if not t.success] + [f["task_id"] for f in failures]
        write_json(self.out / "experts" / "replay_report.json", {"tasks": len(ids), "replayed_to_success": len(ids) - len(bad),
                                                                 "skipped": bad, "failures": failures})
        if bad:
            print(f"experts: {len(bad)} of {len(ids)} gold paths did not replay to success; skipped "
                  f"(see {self.out / 'experts' / 'replay_report.json'})")
        write_json(self.out / "experts" / "order.json", ids)  # task order: SFT takes the first n_experts
        save_trajectories(path, [t for t in trajs if t.success])

    def split_experts(self, experts: list[Trajectory]) -> tuple[list[Trajectory], list[Trajectory]]:
        """(SFT set, exploration set): the first ``n_experts`` tasks and, with ``explore_held_out``, the
        ``n_explore`` after them; else the first ``n_explore`` of the SFT set."""
        order_path = self.out / "experts" / "order.json"
        order = read_json(order_path) if order_path.exists() else [t.task_id for t in experts]
        sft_ids = set(order[: self.cfg.n_experts])
        sft_set = [t for t in experts if t.task_id in sft_ids]
        if self.cfg.explore_held_out:
            return sft_set, [t for t in experts if t.task_id not in sft_ids][: self.cfg.n_explore]
        return sft_set, sft_set[: self.cfg.n_explore]

    def sft(self, seed: int, experts: list[Trajectory]) -> Path:
        d = self.out / f"seed{seed}" / "sft"
        model = d / "model"
        if not model.exists():
            tmp = d.parent / "sft.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            with self._timed(f"seed{seed}/sft"):
                if self.cfg.sft_model:
                    self._copy_sft_model(Path(self.cfg.sft_model.format(seed=seed)), tmp)
                else:
                    train_sft(experts, replace(self.cfg.sft, seed=seed), tmp, progress=self.progress)
            shutil.rmtree(d, ignore_errors=True)
            tmp.rename(d)
        self._checkpoint(f"seed{seed}/sft")
        return model

    @staticmethod
    def _copy_sft_model(src: Path, dst: Path) -> None:
        """``sft_model``: the given model as ``dst/model``, with what `iprkit sft` wrote beside it and its origin."""
        if not (src / "config.json").exists():
            raise IprkitError(f"sft_model: {src} is not a model folder (no config.json); give the folder that "
                              "`iprkit sft` or a run's seed<S>/sft/ wrote as model/, or unset sft_model to train one.")
        shutil.copytree(src, dst / "model")
        for name in ("sft_metrics.json", "sft_config.json"):
            if (src.parent / name).exists():
                shutil.copy2(src.parent / name, dst / name)
        write_json(dst / "source.json", {"sft_model": str(src.resolve())})

    def evaluate(self, model: Path, d: Path, seed: int) -> dict:
        d = d / "eval"
        splits = self.cfg.eval_splits or list(self.env.test_splits)
        report = {}
        for split in splits:
            mpath = d / f"{split}_metrics.json"
            if not mpath.exists():
                ids = self.env.task_ids(split)[: self.cfg.n_eval]
                if hasattr(self.env, "prepare"):
                    self.env.prepare(split, limit=self.cfg.n_eval)
                with self._timed(f"{d.parent.relative_to(self.out)}/eval/{split}"):
                    metrics, trajs = evaluate_model(self._backend(model), self.env_factory, ids, seed=seed,
                                                    max_live=self.cfg.generation.batch_size, progress=self.progress,
                                                    desc=f"eval {split}")
                save_eval(d, split, metrics, trajs)
            report[split] = read_json(mpath)
        return report

    def iteration(self, seed: int, method: str, k: int, chosen: list[Trajectory], sft_model: Path, prev: Path) -> Path:
        """One iteration along the expert trajectories ``chosen``: explore, score, pair, train."""
        spec = _merge({"pairs": asdict(self.cfg.pairs), "dpo": asdict(self.cfg.dpo), "every_step": True},
                      {k2: v for k2, v in METHODS[method].items() if k2 != "iterations"})
        pcfg, dcfg = PairSettings(**spec["pairs"]), DPOSettings(**{**spec["dpo"], "seed": seed})
        d = self.out / f"seed{seed}" / method / f"iter{k}"
        tag = f"seed{seed}/{method}/iter{k}"

        # 1. explore along the expert trajectories with the current policy
        exp_path = d / "explore.jsonl"
        if not exp_path.exists():
            with self._timed(f"{tag}/explore"):
                engine = self._engine(prev, seed * 1000 + k)
                branches = explore(engine, chosen, every_step=spec["every_step"] and pcfg.step_pairs,
                                   temperature=self.cfg.explore_temperature, progress=self.progress)
                engine.close()
            save_trajectories(exp_path, branches)
        self._checkpoint(f"{tag}/explore")
        branches = branches_by_task(load_trajectories(exp_path))

        # 2. Monte Carlo step rewards for expert and agent actions (cached across iterations)
        rew_path = d / "step_rewards.jsonl"
        if not rew_path.exists():
            rows = []
            if pcfg.step_pairs:  # only step pairs need step rewards (ETO scores nothing)
                with self._timed(f"{tag}/score"):
                    rows = self._score(seed, k, tag, d, chosen, branches, sft_model, prev)
            write_jsonl(rew_path, rows)
        self._checkpoint(f"{tag}/score")
        mc = {(r["task_id"], r["step"], r["side"]): r["mean"] for _, r in read_jsonl(rew_path)}

        # 3. pairs
        pairs_path = d / "pairs.jsonl"
        if not pairs_path.exists():
            pairs, rows = [], []
            for e in chosen:
                em = {s: v for (t, s, side), v in mc.items() if t == e.task_id and side == "expert"}
                am = {s: v for (t, s, side), v in mc.items() if t == e.task_id and side == "agent"}
                p, r = build_pairs(e, branches.get(e.task_id, {}), em, am, pcfg)
                pairs += p
                rows += r
            write_jsonl(d / "comparisons.jsonl", rows)
            write_json(d / "pair_stats.json", pair_stats(pairs, rows))
            write_jsonl(pairs_path, pairs)
        self._checkpoint(f"{tag}/pairs")
        pairs = [p for _, p in read_jsonl(pairs_path)]

        # 4. train: DPO (+ NLL) from the previous policy against the reference
        model = d / "model"
        if not model.exists():
            tmp = d / "model.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            if not pairs:
                print(f"{tag}: no pairs, nothing to learn this iteration; the policy carries over unchanged")
                shutil.copytree(prev, tmp)
                write_json(d / "train_metrics.json", {"pairs": 0, "skipped": True})
            else:
                ref = sft_model if dcfg.reference == "sft" else prev
                with self._timed(f"{tag}/train"):
                    m = train_dpo(pairs, prev, ref, dcfg, tmp, progress=self.progress)
                write_json(d / "train_metrics.json", m)
            tmp.rename(model)
        self._checkpoint(f"{tag}/train")
        return model

    def _score(self, seed: int, k: int, tag: str, d: Path, chosen: list[Trajectory], branches: dict,
               sft_model: Path, prev: Path) -> list[dict]:
        """Monte Carlo step rewards of the expert's and the agent's actions, one row per (task, step, side)."""
        scorer = {"sft": sft_model, "current": prev}.get(self.cfg.mc.scorer, self.cfg.mc.scorer)
        scorer_id = fingerprint_model(scorer)
        cache = MCCache(self.out / "mc_cache" / f"{scorer_id}.jsonl")
        reqs = score_requests(chosen, branches, self.cfg.mc.score_expert, self.cfg.mc.score_same_action)
        engine = self._engine(scorer, seed * 1000 + k + 500, snapshots=self.cfg.mc.env_snapshots)
        ests, counts = score(engine, cache, scorer_id, self.env_id, [r for r, _ in reqs], self.cfg.mc, self.progress)
        engine.close()
        self.counters.setdefault(tag, {})["mc"] = counts
        write_json(d / "mc_counts.json", counts)
        return [{"task_id": t, "step": s, "side": side, **asdict(e)} for (_, (t, s, side)), e in zip(reqs, ests)]

    # -- the whole job ---------------------------------------------------------------------
    def run(self) -> dict:
        sft_set, explore_set = self.split_experts(self.experts())
        if not sft_set:
            raise IprkitError("no expert trajectory replayed to success; nothing to train on.")
        results: dict = {}
        for seed in self.cfg.seeds:
            sft_model = self.sft(seed, sft_set)
            base = self.evaluate(sft_model, self.out / f"seed{seed}" / "sft", seed)
            self._checkpoint(f"seed{seed}/sft/eval")
            for method in self.cfg.methods:
                n = METHODS[method].get("iterations", self.cfg.eto_iterations if method == "eto" else self.cfg.iterations)
                curve = [{"iteration": 0, **_flat(base)}]
                prev = sft_model
                for k in range(1, n + 1):
                    prev = self.iteration(seed, method, k, explore_set, sft_model, prev)
                    ev = self.evaluate(prev, self.out / f"seed{seed}" / method / f"iter{k}", seed)
                    self._checkpoint(f"seed{seed}/{method}/iter{k}/eval")
                    stats_path = self.out / f"seed{seed}" / method / f"iter{k}" / "pair_stats.json"
                    curve.append({"iteration": k, **_flat(ev), **{f"pairs_{a}": b for a, b in
                                                                   read_json(stats_path).items()}})
                results.setdefault(method, {})[seed] = curve
        table = results_table(results)
        write_json(self.out / "results.json", {"table": table, "curves": results})
        atomic_write_text(self.out / "results.md", format_table(table))
        mc_counts = {str(p.parent.relative_to(self.out)): read_json(p) for p in sorted(self.out.glob("seed*/*/iter*/mc_counts.json"))}
        timings = read_json(self.out / "timings.json") if (self.out / "timings.json").exists() else {}
        write_json(self.out / "metrics.json", {"results": table, "curves": results, "mc_counts": mc_counts,
                                               "experts": len(sft_set), "explored_tasks": len(explore_set),
                                               "timings_s": timings})
        return {"table": table, "curves": results, "counters": self.counters}

    def close(self) -> None:
        self.env.close()


def _flat(report: dict) -> dict:
    """Per-split metrics -> success/reward (mean over splits) plus each split's."""
    out = {}
    for split, m in report.items():
        out[f"{split}_success"] = m["success_rate"]
        out[f"{split}_reward"] = m["avg_reward"]
    out["success"] = statistics.mean(m["success_rate"] for m in report.values())
    out["reward"] = statistics.mean(m["avg_reward"] for m in report.values())
    return out


def results_table(results: dict) -> list[dict]:
    """One row per (method, iteration): success and reward, mean and std over seeds."""
    rows = []
    sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0
    for method, by_seed in results.items():
        n_iter = max(len(c) for c in by_seed.values())
        for k in range(n_iter):
            pts = [c[k] for c in by_seed.values() if len(c) > k]
            s, r = [p["success"] for p in pts], [p["reward"] for p in pts]
            rows.append({"method": method, "iteration": k, "seeds": len(pts), "success_mean": statistics.mean(s),
                         "success_std": sd(s), "reward_mean": statistics.mean(r), "reward_std": sd(r)})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| method | iteration | success (mean ± std) | avg reward (mean ± std) | seeds |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['iteration']} | {r['success_mean']:.3f} ± {r['success_std']:.3f} | "
                     f"{r['reward_mean']:.3f} ± {r['reward_std']:.3f} | {r['seeds']} |")
    return "\n".join(lines) + "\n"
