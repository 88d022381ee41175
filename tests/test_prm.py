"""The learned step reward model: it learns Monte Carlo labels, scores states in [0, 1], and the ``hybrid``
estimator runs Monte Carlo (real rollouts on real TextWorld games) exactly where the model's expert-agent
difference is within the pair margin plus the band; a run with ``mc.estimator=hybrid`` trains one per iteration
from the earlier iterations' labels and says which estimator made each step reward and decided each pair."""

import copy
import json

import pytest
import torch

from iprkit.mc import MCCache, ScoreRequest, score
from iprkit.prm import PRM, estimate, state_messages, train_prm
from iprkit.rollout import RolloutEngine
from iprkit.settings import MCSettings, PRMSettings

from test_mc import ScriptedAgent


def _bad(e):
    """The expert's first step replaced by a useless action (a state with nothing gained)."""
    steps = copy.deepcopy(e.steps[:1])
    steps[0].action, steps[0].thought, steps[0].observation = "eat the floor", "Hm.", "That's not something you can eat."
    return steps


@pytest.fixture(scope="module")
def prm(smoke_model, tw_experts, tmp_path_factory):
    """A PRM trained on labels that say: the expert's first step is worth 1, a useless one 0."""
    torch.set_num_threads(2)
    experts = [e for e in tw_experts if len(e.steps) > 1][:24]
    examples = []
    for e in experts:
        examples.append({"messages": state_messages(e, ScoreRequest(e.task_id, e.steps[:1])), "label": 1.0, "weight": 3.0})
        examples.append({"messages": state_messages(e, ScoreRequest(e.task_id, _bad(e))), "label": 0.0, "weight": 3.0})
    out = tmp_path_factory.mktemp("prm") / "prm"
    metrics = train_prm(examples, smoke_model, PRMSettings(epochs=6, learning_rate=1e-3, batch_size=8, holdout=0.25),
                        out, progress=False)
    return PRM(out), metrics, experts


def test_the_prm_learns_its_labels_and_scores_in_range(prm):
    model, metrics, experts = prm
    assert metrics["examples"] == 48 and metrics["heldout"] == 12 and metrics["heldout_pearson"] > 0.5
    good = model.score([state_messages(e, ScoreRequest(e.task_id, e.steps[:1])) for e in experts])
    bad = model.score([state_messages(e, ScoreRequest(e.task_id, _bad(e))) for e in experts])
    assert all(0.0 <= v <= 1.0 for v in good + bad)
    assert sum(good) / len(good) > sum(bad) / len(bad) + 0.3
    assert model.forward_tokens > 0


@pytest.mark.parametrize("band", [0.0, 0.3, 1.0])
def test_hybrid_runs_monte_carlo_exactly_where_the_model_is_unsure(prm, tw_env, tw_experts, tmp_path, band):
    model, _, experts = prm
    reqs, tags = [], []
    for e in experts[:8]:
        reqs += [ScoreRequest(e.task_id, e.steps[:1]), ScoreRequest(e.task_id, _bad(e))]
        tags += [(e.task_id, 0, "expert"), (e.task_id, 0, "agent")]
    cfg = MCSettings(n=2, temperature=1.0, estimator="hybrid", prm_band=band)
    engine = RolloutEngine(ScriptedAgent(tw_experts, lambda i: True), lambda: tw_env, max_live=1)
    ran = []

    def run_mc(rs):
        ran.extend(rs)
        return score(engine, MCCache(tmp_path / "mc.jsonl"), "scripted", "textworld:test", rs, cfg, progress=False)

    ests, counts = estimate(model, {e.task_id: e for e in experts}, reqs, tags, cfg, 0.01, run_mc)
    scores = model.score([state_messages(e, r) for e, r in zip([x for x in experts[:8] for _ in (0, 1)], reqs)])
    unsure = [abs(scores[i] - scores[i + 1]) <= 0.01 + band for i in range(0, len(reqs), 2)]
    expected = [x for x, u in zip([(reqs[i], reqs[i + 1]) for i in range(0, len(reqs), 2)], unsure) if u]
    assert [id(r) for r in ran] == [id(r) for pair in expected for r in pair]
    assert counts["prm_scored"] == 16 and counts["mc_scored"] == 2 * sum(unsure)
    for i, est in enumerate(ests):
        assert est.prm == pytest.approx(scores[i], abs=1e-5)
        assert est.estimator == ("mc" if unsure[i // 2] else "prm")
        assert est.n == (2 if unsure[i // 2] else 0)
    if band == 1.0:
        assert all(unsure)  # every step falls back on Monte Carlo
    if band == 0.0:
        assert not all(unsure)  # the model decides where it sees a clear winner


@pytest.mark.slow
def test_a_hybrid_run_trains_a_prm_from_earlier_labels_and_marks_its_estimates(smoke_model, tmp_path):
    from iprkit.config import from_dict
    from iprkit.io import read_jsonl
    from iprkit.layout import RunLayout
    from iprkit.loop import Runner
    from iprkit.presets import RUN_PRESETS
    from iprkit.settings import RunSettings

    cfg = from_dict(RunSettings, {**RUN_PRESETS["smoke"], "methods": ["ipr"], "iterations": 2, "sft_model": str(smoke_model),
                                  "mc": {"n": 2, "temperature": 1.0, "estimator": "hybrid", "prm_band": 0.1},
                                  "prm": {"epochs": 2.0, "batch_size": 4}, "n_explore": 4})
    runner = Runner(cfg, tmp_path / "run", progress=False)
    try:
        runner.run()
    finally:
        runner.close()
    lay = RunLayout(tmp_path / "run")
    it1, it2 = lay.iteration(0, "ipr", 1), lay.iteration(0, "ipr", 2)
    assert not it1.prm.exists() and it2.prm_metrics.exists()  # iteration 1: Monte Carlo, the labels
    metrics = json.loads(it2.prm_metrics.read_text())
    assert metrics["examples"] == sum(1 for _ in read_jsonl(it1.step_rewards))
    rows = [r for _, r in read_jsonl(it2.step_rewards)]
    assert {r["estimator"] for r in rows} <= {"mc", "prm", "terminal"}
    assert all(0 <= r["prm"] <= 1 for r in rows if r["estimator"] != "terminal")
    counts = json.loads(it2.mc_counts.read_text())
    assert counts["prm_scored"] == sum(r["estimator"] != "terminal" for r in rows)
    assert counts["mc_scored"] == sum(r["estimator"] == "mc" for r in rows)
    assert all(set(p["estimators"]) == {"expert", "agent"} for _, p in read_jsonl(it2.pairs) if p["kind"] == "step")
    assert "seed0/ipr/iter2/prm" in json.loads(lay.timings.read_text())
    # the notebook's view: where the model and Monte Carlo both scored an action, how far apart and whether the
    # step's verdict is the same under both
    from iprkit.views import load_iteration, prm_agreement

    agreement = prm_agreement(load_iteration(tmp_path / "run", 0, "ipr", 2), margin=0.01)
    both = [r for r in rows if r["estimator"] == "mc"]
    assert agreement["estimates"] == len(both)
    if both:
        diff = sum(abs(r["prm"] - r["mean"]) for r in both) / len(both)
        assert abs(agreement["mean_abs_diff"] - diff) < 1e-9
        assert sum(d["estimates"] for d in agreement["by_step"]) == len(both)
