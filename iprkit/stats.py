"""Paired statistics: compare two agents on the same tasks and seeds, task by task.

Every method is evaluated on the same test tasks with the same seeds, so a comparison pairs
each (seed, task) of method A with the same (seed, task) of method B:

- the paired difference in success and in final reward (A - B), with a 95% bootstrap interval
  that resamples *tasks* (each drawn task keeps all its seeds), deterministic for a seed;
- an exact McNemar test for success: among the pairs where exactly one side won, is A's share
  different from one half? (two-sided binomial p-value);
- :func:`mcnemar_pairs_needed`: how many paired tasks a difference of a given size needs, at the
  discordance rate a run measured (the power calculation behind the ``table`` sizes).
"""

import math
import random
from statistics import NormalDist


def paired_rows(a: dict[tuple, dict], b: dict[tuple, dict]) -> list[tuple[dict, dict]]:
    """The (A, B) per-task rows of the (seed, split, task) keys both evaluated."""
    return [(a[k], b[k]) for k in sorted(set(a) & set(b))]


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (A won and B lost; B won and A lost)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def bootstrap_ci(diffs_by_task: dict[str, list[float]], n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean paired difference, resampling tasks with replacement."""
    tasks = sorted(diffs_by_task)
    if not tasks:
        return (0.0, 0.0)
    rng = random.Random(seed)
    means = []
    for _ in range(n_boot):
        picked = [x for _ in tasks for x in diffs_by_task[tasks[rng.randrange(len(tasks))]]]
        means.append(sum(picked) / len(picked))
    means.sort()
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return means[int(lo * (n_boot - 1))], means[int(math.ceil(hi * (n_boot - 1)))]


def compare(name_a: str, name_b: str, rows_a: dict[tuple, dict], rows_b: dict[tuple, dict], seed: int = 0) -> dict:
    """A against B over their shared (seed, split, task) evaluations."""
    pairs = paired_rows(rows_a, rows_b)
    by_task_s: dict[str, list[float]] = {}
    by_task_r: dict[str, list[float]] = {}
    a_only = b_only = 0
    for ra, rb in pairs:
        t = f"{ra.get('split', '')}/{ra['task_id']}"
        sa, sb = float(bool(ra["success"])), float(bool(rb["success"]))
        by_task_s.setdefault(t, []).append(sa - sb)
        by_task_r.setdefault(t, []).append(float(ra["final_reward"] or 0.0) - float(rb["final_reward"] or 0.0))
        a_only += sa > sb
        b_only += sb > sa
    n = len(pairs)
    mean = lambda d: sum(x for xs in d.values() for x in xs) / n if n else 0.0
    return {"a": name_a, "b": name_b, "pairs": n, "tasks": len(by_task_s),
            "success_diff": mean(by_task_s), "success_ci": list(bootstrap_ci(by_task_s, seed=seed)),
            "reward_diff": mean(by_task_r), "reward_ci": list(bootstrap_ci(by_task_r, seed=seed + 1)),
            "a_only_won": a_only, "b_only_won": b_only, "discordance": (a_only + b_only) / n if n else 0.0,
            "mcnemar_p": mcnemar_p(a_only, b_only)}


def mcnemar_pairs_needed(delta: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired tasks needed to detect a success difference ``delta`` with McNemar's test, when a fraction
    ``discordance`` of pairs has exactly one winner (normal approximation; Connor 1987)."""
    if delta <= 0 or discordance <= delta:
        raise ValueError("need 0 < delta < discordance")
    za, zb = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    return math.ceil((za * math.sqrt(discordance) + zb * math.sqrt(discordance - delta ** 2)) ** 2 / delta ** 2)


def format_paired(rows: list[dict]) -> str:
    """The comparisons as a Markdown table."""
    lines = ["| A vs B | paired (seed, task) | success A - B [95% CI] | reward A - B [95% CI] | "
             "only A won / only B won | McNemar p |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['a']} vs {r['b']} | {r['pairs']} | {r['success_diff']:+.3f} [{r['success_ci'][0]:+.3f}, "
                     f"{r['success_ci'][1]:+.3f}] | {r['reward_diff']:+.3f} [{r['reward_ci'][0]:+.3f}, "
                     f"{r['reward_ci'][1]:+.3f}] | {r['a_only_won']} / {r['b_only_won']} | {r['mcnemar_p']:.3f} |")
    return "\n".join(lines) + "\n"
