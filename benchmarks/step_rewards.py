"""Step rewards from a learned model (``prm``, ``hybrid``) against Monte Carlo, on held-out Monte Carlo labels.

    python benchmarks/step_rewards.py --run runs/demo --seed 0

Reads a finished run (its config, experts, one seed's SFT model and its IPR iteration-1 exploration) and:

1. scores every request of that iteration by Monte Carlo with the paper's estimator (N=5, temperature 1, the
   expert's and the agent's actions at every step): the reference ``MC-A``;
2. splits the explored tasks in two halves; trains a PRM (``iprkit.prm``) on the first half's MC-A labels;
3. on the held-out half, makes the step verdicts (expert better / agent better / neither, at the paper's
   margin 0.01) with ``prm``, with ``hybrid`` (its Monte Carlo from fresh seeds), and with a second Monte
   Carlo run ``MC-B`` (fresh seeds: how often two Monte Carlo runs agree with each other, the ceiling);
4. reports each one's agreement with MC-A and its cost per scored step: model forward tokens (rollouts:
   prompt and generated tokens the scorer processed; PRM: tokens it read) and wall seconds.

Prints a table and writes JSON.
"""

import argparse
import json
import os
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
from iprkit.prm import PRM, estimate, label_examples, train_prm  # noqa: E402
from iprkit.settings import PRMSettings, RunSettings  # noqa: E402
from iprkit.trajectory import load_trajectories  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mc_reuse import verdicts  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished run directory with an IPR iteration 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bands", default="0,0.05,0.2", help="hybrid: the mc.prm_band values to try")
    ap.add_argument("--epochs", type=float, default=3.0, help="PRM training epochs")
    ap.add_argument("--out", default="benchmarks/results/step_rewards.json")
    args = ap.parse_args()
    run = RunLayout(args.run)
    cfg = from_dict(RunSettings, json.loads(run.config.read_text()))
    cfg = replace(cfg, mc=replace(cfg.mc, n=5, temperature=1.0, score_expert=True, score_same_action=True, reuse=False))
    torch.set_num_threads(cfg.threads)
    model = run.model(args.seed, "sft", 0)
    it = run.iteration(args.seed, "ipr", 1)
    runner = Runner(cfg, tempfile.mkdtemp(), progress=False)
    runner.layout = run  # read the finished run's experts (the runner itself writes nothing here)
    chosen = runner.explore_set(args.seed, 1)
    branches = branches_by_task(load_trajectories(it.explore))
    reqs = score_requests(chosen, branches, True, True)
    half = {e.task_id for e in chosen[: len(chosen) // 2]}
    train = [(r, t) for r, t in reqs if t[0] in half]
    test = [(r, t) for r, t in reqs if t[0] not in half]

    def monte_carlo(requests, sample_seed):
        engine = runner.engine(model, sample_seed)
        t0 = time.perf_counter()
        ests, counts = score(engine, MCCache(Path(tempfile.mkdtemp()) / "mc.jsonl"), "bench", runner.env_id, requests,
                             cfg.mc, progress=False)
        stats = dict(engine.backend.stats)
        engine.close()
        return ests, counts, time.perf_counter() - t0, stats.get("prefill_tokens", 0) + stats.get("new_tokens", 0)

    a_ests, _, a_s, a_tokens = monte_carlo([r for r, _ in reqs], runner.rollout_seed(args.seed, 1, "score"))
    labels = {t: e for (_, t), e in zip(reqs, a_ests)}
    rows = [{"task_id": t[0], "step": t[1], "side": t[2], "mean": e.mean, "n": e.n, "terminal": e.terminal}
            for (_, t), e in zip(train, [labels[t] for _, t in train])]
    examples = label_examples(chosen, branches, rows, cfg.mc.n)
    prm_dir = Path(tempfile.mkdtemp()) / "prm"
    t0 = time.perf_counter()
    metrics = train_prm(examples, model, PRMSettings(epochs=args.epochs), prm_dir, seed=args.seed, progress=False)
    train_s = time.perf_counter() - t0
    experts = {e.task_id: e for e in chosen}
    test_reqs, test_tags = [r for r, _ in test], [t for _, t in test]
    reference = verdicts(test_tags, [labels[t] for t in test_tags], 0.01)
    scored = sum(1 for r in test_reqs if r.terminal_reward is None)

    report = {"run": str(run.root), "seed": args.seed, "threads": cfg.threads, "cpu_count": os.cpu_count(),
              "mc": {"n": cfg.mc.n, "temperature": cfg.mc.temperature},
              "tasks": {"train": len(half), "heldout": len({t[0] for t in test_tags})},
              "labels": len(examples), "prm_training_s": round(train_s, 1), "prm": metrics,
              "heldout_scored_steps": scored, "verdicts": len(reference), "rows": {}}
    b_ests, b_counts, b_s, b_tokens = monte_carlo(test_reqs, runner.rollout_seed(args.seed, 1, "score") + 7919)
    report["rows"]["MC-B (fresh seeds)"] = {"ests": b_ests, "seconds": b_s, "tokens": b_tokens, "mc_steps": scored}
    bands = [float(b) for b in args.bands.split(",")]
    for name, band in [("prm", 0.0)] + [(f"hybrid, band {b:g}", b) for b in bands]:
        mcfg = replace(cfg.mc, estimator=name.split(",")[0], prm_band=band)
        prm = PRM(prm_dir)
        spent = {"seconds": 0.0, "tokens": 0}

        def run_mc(rs):
            ests, counts, s, tokens = monte_carlo(rs, runner.rollout_seed(args.seed, 1, "score") + 7919)
            spent["seconds"] += s
            spent["tokens"] += tokens
            return ests, counts

        t0 = time.perf_counter()
        ests, counts = estimate(prm, experts, test_reqs, test_tags, mcfg, 0.01, run_mc)
        report["rows"][name] = {"ests": ests, "seconds": time.perf_counter() - t0, "tokens": prm.forward_tokens + spent["tokens"],
                                "mc_steps": counts["mc_scored"]}
    runner.close()
    a_per_step = {"seconds": a_s / max(1, sum(r.terminal_reward is None for r, _ in reqs)),
                  "tokens": a_tokens / max(1, sum(r.terminal_reward is None for r, _ in reqs))}
    print(f"held out: {report['tasks']['heldout']} tasks, {scored} scored steps, {len(reference)} verdicts; PRM trained on "
          f"{len(examples)} labels of {len(half)} tasks in {train_s:.0f} s (held-out MSE {metrics.get('heldout_mse', 0):.3f})")
    decided = [k for k, v in reference.items() if v != "neither"]
    report["reference_verdicts"] = {w: sum(v == w for v in reference.values()) for w in ("expert", "agent", "neither")}
    print(f"MC-A's verdicts: {report['reference_verdicts']}")
    print(f"{'estimator':22}{'agree with MC-A':>17}{'where MC-A decided':>20}{'MC steps':>10}{'tokens/step':>13}"
          f"{'s/step':>9}{'cost vs MC':>12}")
    print(f"{'MC-A (reference)':22}{'-':>17}{'-':>20}{scored:>10}{a_per_step['tokens']:>13.0f}{a_per_step['seconds']:>9.3f}"
          f"{'1.0x':>12}")
    for name, row in report["rows"].items():
        v = verdicts(test_tags, row.pop("ests"), 0.01)
        row["agree"] = sum(reference[k] == v.get(k) for k in reference) / max(1, len(reference))
        row["agree_where_decided"] = sum(reference[k] == v.get(k) for k in decided) / max(1, len(decided))
        row["tokens_per_step"], row["seconds_per_step"] = row["tokens"] / max(1, scored), row["seconds"] / max(1, scored)
        row["cost_ratio_tokens"] = a_per_step["tokens"] / max(1e-9, row["tokens_per_step"])
        print(f"{name:22}{row['agree']:>16.1%}{row['agree_where_decided']:>19.1%}{row['mc_steps']:>10}{row['tokens_per_step']:>13.0f}"
              f"{row['seconds_per_step']:>9.3f}{row['cost_ratio_tokens']:>11.1f}x")
    report["mc_a_per_step"] = a_per_step
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
