"""Rollout reuse (``mc.reuse``) against the paper's estimator on one finished IPR iteration, side by side.

    python benchmarks/mc_reuse.py --run runs/demo --seed 0            # the run's own MC settings
    python benchmarks/mc_reuse.py --run runs/demo --paper            # the paper's: N=5, T=1, every step scored

Reads a finished run directory (its config, experts, one seed's SFT model and its IPR iteration-1 exploration)
and scores that iteration's Monte Carlo requests twice with the same scorer, seeds and engine settings, no
cache: ``mc.reuse=false`` then ``true``. Prints a table and writes JSON:

- rollouts run and wall time of each (``--repeat`` times, alternating, the fastest kept), and the rollouts saved;
- estimates identical between the two (a state that took no passing rollout runs the same seeds, so its
  estimate must be identical), and for the states that took some: the mean paired difference of their
  estimates with its 95% interval (reuse keeps the estimator's expectation, so it should cover 0);
- step verdicts at the paper's margin (expert better / agent better / neither, by MC step reward) that agree.
"""

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from iprkit.config import from_dict  # noqa: E402
from iprkit.explore import branches_by_task, score_requests  # noqa: E402
from iprkit.layout import RunLayout  # noqa: E402
from iprkit.loop import Runner  # noqa: E402
from iprkit.mc import MCCache, score  # noqa: E402
from iprkit.settings import RunSettings  # noqa: E402
from iprkit.trajectory import load_trajectories  # noqa: E402


def verdicts(tags, ests, margin):
    """(task, step) -> expert / agent / neither, from the two sides' MC step rewards."""
    by = {}
    for (task, step, side), e in zip(tags, ests):
        by.setdefault((task, step), {})[side] = e.mean
    out = {}
    for key, sides in by.items():
        if {"expert", "agent"} <= sides.keys():
            d = sides["expert"] - sides["agent"]
            out[key] = "expert" if d > margin else "agent" if d < -margin else "neither"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished run directory with an IPR iteration 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=0, help="rollouts per estimate (default: the run's mc.n)")
    ap.add_argument("--paper", action="store_true", help="the paper's estimator settings: N=5, temperature 1, "
                    "the expert's and the agent's actions scored at every step")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each setting, alternating (wall time: the fastest)")
    ap.add_argument("--out", default="benchmarks/results/mc_reuse.json")
    args = ap.parse_args()
    run = RunLayout(args.run)
    cfg = from_dict(RunSettings, json.loads(run.config.read_text()))
    if args.paper:
        cfg = replace(cfg, mc=replace(cfg.mc, n=5, temperature=1.0, score_expert=True, score_same_action=True))
    if args.n:
        cfg = replace(cfg, mc=replace(cfg.mc, n=args.n))
    torch.set_num_threads(cfg.threads)
    model = run.model(args.seed, "sft", 0)
    it = run.iteration(args.seed, "ipr", 1)
    rows = {}
    for _ in range(args.repeat):
        for reuse in (False, True):
            runner = Runner(replace(cfg, mc=replace(cfg.mc, reuse=reuse)), tempfile.mkdtemp(), progress=False)
            runner.layout = run  # read the finished run's experts (the runner itself writes nothing here)
            chosen = runner.explore_set(args.seed, 1)
            reqs = score_requests(chosen, branches_by_task(load_trajectories(it.explore)), cfg.mc.score_expert,
                                  cfg.mc.score_same_action)
            engine = runner.engine(model, runner.rollout_seed(args.seed, 1, "score"))
            t0 = time.perf_counter()
            ests, counts = score(engine, MCCache(Path(tempfile.mkdtemp()) / "mc.jsonl"), "bench", runner.env_id,
                                 [r for r, _ in reqs], runner.cfg.mc, progress=False)
            dt = time.perf_counter() - t0
            engine.close()
            runner.close()
            if reuse in rows:  # the same seeds: the same estimates, only the time differs
                assert [e.mean for e in ests] == [e.mean for e in rows[reuse]["ests"]]
                rows[reuse]["all_seconds"].append(dt)
                rows[reuse]["seconds"] = min(rows[reuse]["seconds"], dt)
                continue
            rows[reuse] = {"seconds": dt, "all_seconds": [dt], "counts": counts, "ests": ests, "tags": [t for _, t in reqs]}
    plain, reused = rows[False], rows[True]
    pairs = [(a, b) for a, b in zip(plain["ests"], reused["ests"]) if not a.terminal]
    took = [(a.mean, b.mean) for a, b in pairs if b.reused]
    untouched = [(a, b) for a, b in pairs if not b.reused]
    diffs = [b - a for a, b in took]
    mean_d = statistics.mean(diffs) if diffs else 0.0
    half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    va, vb = (verdicts(r["tags"], r["ests"], 0.01) for r in (plain, reused))
    agree = sum(va[k] == vb.get(k) for k in va)
    report = {
        "run": str(run.root), "seed": args.seed, "n": cfg.mc.n, "temperature": cfg.mc.temperature,
        "threads": cfg.threads, "cpu_count": os.cpu_count(),
        "rollouts": {"no reuse": plain["counts"]["rollouts"], "reuse": reused["counts"]["rollouts"]},
        "seconds": {"no reuse": round(plain["seconds"], 1), "reuse": round(reused["seconds"], 1)},
        "all_seconds": {"no reuse": [round(x, 1) for x in plain["all_seconds"]],
                        "reuse": [round(x, 1) for x in reused["all_seconds"]]},
        "settings": {"n": cfg.mc.n, "temperature": cfg.mc.temperature, "score_same_action": cfg.mc.score_same_action},
        "estimates": len(pairs), "estimates_with_reused_samples": len(took),
        "reused_samples": reused["counts"]["reused_samples"],
        "untouched_identical": sum(a.mean == b.mean and a.rollouts == b.rollouts for a, b in untouched),
        "untouched": len(untouched),
        "reused_mean_difference": round(mean_d, 4), "reused_difference_ci95": [round(mean_d - half, 4), round(mean_d + half, 4)],
        "mean_step_reward": {"no reuse": statistics.mean(a.mean for a, _ in pairs),
                             "reuse": statistics.mean(b.mean for _, b in pairs)},
        "verdicts": len(va), "verdicts_agree": agree,
    }
    saved = 1 - report["rollouts"]["reuse"] / max(1, report["rollouts"]["no reuse"])
    print(f"{'':12}{'rollouts':>10}{'seconds':>10}{'mean step reward':>18}")
    for name in ("no reuse", "reuse"):
        print(f"{name:12}{report['rollouts'][name]:>10}{report['seconds'][name]:>10.1f}{report['mean_step_reward'][name]:>18.3f}")
    print(f"rollouts saved: {saved:.0%}; wall time ratio: {report['seconds']['no reuse'] / report['seconds']['reuse']:.2f}x")
    print(f"estimates that took no passing rollout, identical: {report['untouched_identical']}/{report['untouched']}")
    print(f"estimates that took some ({len(took)}, {report['reused_samples']} samples): mean difference "
          f"{mean_d:+.3f} [95% CI {mean_d - half:+.3f}, {mean_d + half:+.3f}]")
    print(f"step verdicts at margin 0.01 that agree: {agree}/{len(va)}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
