"""The IPR iteration's rollout stages (exploration at every step, Monte Carlo scoring) under
engine settings, side by side on the same model, tasks and requests.

    python benchmarks/mc_stage.py --run runs/table3 --seed 1

It reads a finished run directory (its config, expert trajectories, one seed's SFT model and
its IPR iteration-1 exploration), then repeats that iteration's exploration and Monte Carlo
scoring (no cache) with each setting:

- ``replay``: the default: each rollout replays its prefix; finished rows leave the decode batch;
- ``replay, full batch``: every row decodes until the longest turn of its batch ends;
- ``snapshots, full batch``: rollouts restore a TextWorld state copy instead of replaying (the old default).

Prints a table (seconds, ratio to the old default, rollouts, mean step reward) and writes JSON.
Greedy exploration must give the same trajectories in every setting. Monte Carlo samples: its
estimates agree exactly between ``snapshots`` and ``replay`` at the same batching, and agree in
distribution (not draw by draw: the random stream depends on the batch's shape) with compaction.
"""

import argparse
import json
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
from iprkit.explore import branches_by_task, explore, score_requests  # noqa: E402
from iprkit.layout import RunLayout  # noqa: E402
from iprkit.loop import Runner  # noqa: E402
from iprkit.mc import MCCache, score  # noqa: E402
from iprkit.settings import RunSettings  # noqa: E402
from iprkit.trajectory import load_trajectories  # noqa: E402

SETTINGS = {  # name: (env snapshots, compact decode batch)
    "replay": (False, True),
    "replay, full batch": (False, False),
    "snapshots, full batch": (True, False),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished run directory with an IPR iteration 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="ipr")
    ap.add_argument("--skip-explore", action="store_true", help="time Monte Carlo only")
    ap.add_argument("--out", default="benchmarks/results/mc_stage.json")
    args = ap.parse_args()
    run = RunLayout(args.run)
    cfg = from_dict(RunSettings, json.loads(run.config.read_text()))
    torch.set_num_threads(cfg.threads)
    model = run.model(args.seed, "sft", 0)
    it = run.iteration(args.seed, args.method, 1)
    rows, ref_explore = {}, None
    for name, (snapshots, compact) in SETTINGS.items():
        c = replace(cfg, generation=replace(cfg.generation, compact=compact))
        runner = Runner(c, tempfile.mkdtemp(), progress=False)
        runner.layout = run  # read the finished run's experts (the runner itself writes nothing here)
        chosen = runner.explore_set(args.seed, 1)
        row = {"env_snapshots": snapshots, "compact": compact}
        if not args.skip_explore:
            engine = runner.engine(model, runner.rollout_seed(args.seed, 1, "explore"))
            t0 = time.perf_counter()
            branches = explore(engine, chosen, every_step=True, progress=False)
            row["explore_s"] = time.perf_counter() - t0
            row["explore_episodes"] = len(branches)
            actions = [b.actions for b in branches]
            row["explore_same_as_first"] = ref_explore is None or actions == ref_explore
            ref_explore = ref_explore or actions
            engine.close()
        reqs = score_requests(chosen, branches_by_task(load_trajectories(it.explore)),
                              cfg.mc.score_expert, cfg.mc.score_same_action)
        engine = runner.engine(model, runner.rollout_seed(args.seed, 1, "score"), snapshots=snapshots)
        cache = MCCache(Path(tempfile.mkdtemp()) / "mc.jsonl")
        t0 = time.perf_counter()
        ests, counts = score(engine, cache, "bench", runner.env_id, [r for r, _ in reqs], cfg.mc, progress=False)
        row["mc_s"] = time.perf_counter() - t0
        row["mc_rollouts"] = counts["rollouts"]
        row["mc_mean_step_reward"] = statistics.mean(e.mean for e in ests if not e.terminal)
        row["mc_estimates"] = [e.mean for e in ests]
        row["backend"] = dict(engine.backend.stats)
        engine.close()
        runner.close()
        rows[name] = row
    base = rows["snapshots, full batch"]
    head = f"{'':24}{'explore s':>10}{'MC s':>8}{'MC ratio':>10}{'rollouts':>10}{'mean step reward':>18}{'same explore':>14}"
    print(head)
    for name, r in rows.items():
        r["mc_speedup_vs_old_default"] = base["mc_s"] / r["mc_s"]
        print(f"{name:24}{r.get('explore_s', float('nan')):>10.1f}{r['mc_s']:>8.1f}{r['mc_speedup_vs_old_default']:>9.2f}x"
              f"{r['mc_rollouts']:>10}{r['mc_mean_step_reward']:>18.3f}{str(r.get('explore_same_as_first', '-')):>14}")
    same = rows["replay, full batch"]["mc_estimates"] == base["mc_estimates"]
    print(f"MC ratio = old default's seconds / this setting's; snapshot and replay estimates identical: {same}")
    for r in rows.values():
        r.pop("mc_estimates")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"run": str(run.root), "seed": args.seed, "threads": cfg.threads,
                                          "cpu_count": os.cpu_count(), "snapshot_replay_estimates_identical": same,
                                          "settings": rows}, indent=2))


if __name__ == "__main__":
    main()
