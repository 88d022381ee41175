"""Paired statistics: differences, bootstrap intervals and McNemar p-values from known per-task outcomes."""

import pytest

from iprkit.stats import bootstrap_ci, compare, format_paired, mcnemar_p, mcnemar_pairs_needed


def _rows(wins, seed=0, reward=None):
    return {(seed, "test", f"t{i}"): {"task_id": f"t{i}", "success": w, "final_reward": float(w) if reward is None else reward[i]}
            for i, w in enumerate(wins)}


def test_mcnemar_exact_p_values():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 0) == pytest.approx(2 / 32)  # 2 * (1/2)^5
    assert mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(10, 2) == pytest.approx(2 * sum(__import__("math").comb(12, k) for k in range(3)) / 4096)


def test_paired_difference_counts_and_interval():
    a = _rows([1, 1, 1, 0, 1, 0, 1, 1, 0, 1])
    b = _rows([0, 1, 0, 0, 1, 0, 0, 1, 1, 1])
    r = compare("ipr@1", "sft@0", a, b)
    assert (r["pairs"], r["tasks"], r["a_only_won"], r["b_only_won"]) == (10, 10, 3, 1)
    assert r["success_diff"] == pytest.approx(0.2) and r["discordance"] == pytest.approx(0.4)
    lo, hi = r["success_ci"]
    assert lo <= 0.2 <= hi and lo < 0 < hi  # 10 tasks cannot tell a 2-task difference from noise
    assert r["mcnemar_p"] == pytest.approx(mcnemar_p(3, 1))
    assert compare("a", "b", a, b) == r | {"a": "a", "b": "b"}  # deterministic for a seed
    assert "| ipr@1 vs sft@0 | 10 | +0.200 [" in format_paired([r])


def test_only_shared_tasks_are_paired_and_seeds_cluster_by_task():
    a = {**_rows([1, 1]), **_rows([1, 0], seed=1), (0, "test", "extra"): {"task_id": "extra", "success": 1, "final_reward": 1}}
    b = {**_rows([0, 1]), **_rows([0, 0], seed=1)}
    r = compare("a", "b", a, b)
    assert r["pairs"] == 4 and r["tasks"] == 2 and r["success_diff"] == pytest.approx(0.5)
    assert bootstrap_ci({"t0": [1.0, 1.0], "t1": [0.0, 0.0]}, n_boot=500) == (0.0, 1.0)


def test_pairs_needed_for_a_three_point_difference():
    n = mcnemar_pairs_needed(0.03, 0.20)
    assert 1600 < n < 1800  # about 1,700 paired tasks at 20% discordance
    assert mcnemar_pairs_needed(0.10, 0.20) < n
    with pytest.raises(ValueError):
        mcnemar_pairs_needed(0.3, 0.2)
