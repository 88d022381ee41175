"""The method table (ETO, IPR and the ablations as typed specs) and the results table."""

import pytest

from iprkit.config import from_dict
from iprkit.errors import IprkitError
from iprkit.results import flat_metrics, format_table, results_table
from iprkit.settings import METHODS, DPOSettings, PairSettings, RunSettings


def _applied(name, pairs=None, dpo=None):
    m = METHODS[name]
    return m.pair_settings(pairs or PairSettings()), m.dpo_settings(dpo or DPOSettings())


def test_eto_is_outcome_pairs_plain_dpo_against_the_previous_policy():
    p, d = _applied("eto", PairSettings(outcome_pairs=False), DPOSettings(nll_weight=2.0, reference="sft", beta=0.3))
    assert (p.step_pairs, p.outcome_pairs) == (False, True)  # forced, whatever the run's pair settings say
    assert (d.nll_weight, d.reference) == (0.0, "previous")
    assert d.beta == 0.3  # everything else is the run's


def test_ipr_is_the_run_settings_unchanged():
    base_p, base_d = PairSettings(step_margin=0.2, mode="single-step"), DPOSettings(nll="mean")
    assert _applied("ipr", base_p, base_d) == (base_p, base_d)


@pytest.mark.parametrize("name,step,outcome,nll", [
    ("ipr-no-step", False, True, 1.0),
    ("ipr-no-outcome", True, False, 1.0),
    ("ipr-no-nll", True, True, 0.0),
])
def test_ablations_change_one_thing(name, step, outcome, nll):
    p, d = _applied(name)
    assert (p.step_pairs, p.outcome_pairs, d.nll_weight, d.reference) == (step, outcome, nll, "sft")


def test_iterations_per_method():
    cfg = RunSettings(iterations=4, eto_iterations=2, methods=list(METHODS))
    assert {m: cfg.method_iterations(m) for m in METHODS} == {
        "sft": 0, "eto": 2, "ipr": 4, "ipr-no-step": 4, "ipr-no-outcome": 4, "ipr-no-nll": 4}
    with pytest.raises(IprkitError, match=r"unknown method\(s\) \['ppo'\]"):
        from_dict(RunSettings, {"methods": ["ipr", "ppo"]})


def test_results_table_mean_and_std_over_seeds():
    def point(k, s, r):
        return {"iteration": k, "success": s, "reward": r}

    curves = {"sft": {0: [point(0, 0.5, 0.6)], 1: [point(0, 0.7, 0.8)]},
              "ipr": {0: [point(0, 0.5, 0.6), point(1, 0.6, 0.6)], 1: [point(0, 0.7, 0.8), point(1, 0.9, 1.0)]}}
    rows = results_table(curves)
    assert [(r["method"], r["iteration"], r["seeds"]) for r in rows] == [("sft", 0, 2), ("ipr", 0, 2), ("ipr", 1, 2)]
    last = rows[-1]
    assert last["success_mean"] == pytest.approx(0.75) and last["success_std"] == pytest.approx(0.2121320, abs=1e-6)
    assert last["reward_mean"] == pytest.approx(0.8)
    one_seed = results_table({"ipr": {0: [point(0, 0.5, 0.5)]}})
    assert one_seed[0]["success_std"] == 0.0
    text = format_table(rows)
    assert text.splitlines()[0].startswith("| method | iteration |") and "| ipr | 1 | 0.750 ± 0.212 |" in text


def test_flat_metrics_average_the_splits_and_keep_each():
    flat = flat_metrics({"valid_seen": {"success_rate": 0.5, "avg_reward": 0.5},
                         "valid_unseen": {"success_rate": 0.7, "avg_reward": 0.9}})
    assert flat["success"] == pytest.approx(0.6) and flat["reward"] == pytest.approx(0.7)
    assert flat["valid_unseen_success"] == 0.7 and flat["valid_seen_reward"] == 0.5
