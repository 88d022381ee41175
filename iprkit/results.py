"""The results table: success and reward per method and iteration, mean and std over seeds.

    curves = {"ipr": {0: [{"iteration": 0, "success": 0.5, "reward": 0.5, ...}, ...]}}
    rows = results_table(curves); print(format_table(rows))
"""

import statistics


def flat_metrics(report: dict) -> dict:
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
            row = {"method": method, "iteration": k, "seeds": len(pts), "success_mean": statistics.mean(s),
                   "success_std": sd(s), "reward_mean": statistics.mean(r), "reward_std": sd(r)}
            if all("explored_success" in p for p in pts):  # the learning curve on the explored train tasks
                e = [p["explored_success"] for p in pts]
                row.update(explored_success_mean=statistics.mean(e), explored_success_std=sd(e))
            rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Held-out success and reward per (method, iteration); with a column for the explored train tasks when
    the run evaluated them."""
    explored = any("explored_success_mean" in r for r in rows)
    head = "| method | iteration | success (mean ± std) | avg reward (mean ± std) |"
    lines = [head + (" explored tasks: success |" if explored else "") + " seeds |",
             "|---|---|---|---|" + ("---|" if explored else "") + "---|"]
    for r in rows:
        cell = (f" {r['explored_success_mean']:.3f} ± {r['explored_success_std']:.3f} |"
                if "explored_success_mean" in r else " - |") if explored else ""
        lines.append(f"| {r['method']} | {r['iteration']} | {r['success_mean']:.3f} ± {r['success_std']:.3f} | "
                     f"{r['reward_mean']:.3f} ± {r['reward_std']:.3f} |{cell} {r['seeds']} |")
    return "\n".join(lines) + "\n"


def format_mc_counts(mc_counts: dict[str, dict]) -> str:
    """One line per iteration that scored steps: rollouts run (and what an estimator without reuse runs, with
    ``mc.reuse``), estimates computed, cached and terminal, and the steps a step reward model scored."""
    lines = []
    for where, c in sorted(mc_counts.items()):
        if not c:
            continue
        run, plain = c.get("rollouts", 0), c.get("rollouts_without_reuse", c.get("rollouts", 0))
        line = f"- {where}: {run} rollouts run"
        if c.get("reused_samples"):
            line += (f" ({plain} without reuse: {1 - run / plain:.0%} saved; {c['reused_samples']} samples from passing "
                     f"rollouts in {c.get('estimates_with_reused_samples', 0)} estimates)")
        line += f"; {c.get('computed', 0)} estimates computed, {c.get('cached', 0)} cached, {c.get('terminal', 0)} terminal"
        if "prm_scored" in c:
            line += f"; the step reward model scored {c['prm_scored']} steps, Monte Carlo {c.get('mc_scored', 0)} of them"
        lines.append(line)
    return "\nMonte Carlo step rewards:\n\n" + "\n".join(lines) + "\n" if lines else ""
