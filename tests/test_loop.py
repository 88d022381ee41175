"""The IPR loop end to end at smoke scale: every stage's artifacts, the results table,
resuming after an interruption, no rollout computed twice, and bad input."""

import json
import os

import pytest

from iprkit.config import from_dict
from iprkit.errors import IprkitError
from iprkit.io import atomic_write_text, write_jsonl
from iprkit.loop import RunConfig, Runner, StopRun
from iprkit.presets import RUN_PRESETS


def _cfg(**changes):
    base = {**RUN_PRESETS["smoke"], "methods": ["ipr"], "iterations": 2}
    return from_dict(RunConfig, {**base, **changes})


def _run(out, stop_after=None, **changes):
    runner = Runner(_cfg(**changes), out, progress=False, stop_after=stop_after)
    try:
        return runner.run()
    finally:
        runner.close()


def _files(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def full_run(smoke_run):
    return smoke_run


def test_every_stage_writes_its_artifacts(full_run):
    out, result = full_run
    it1 = out / "seed0" / "ipr" / "iter1"
    for name in ("explore.jsonl", "step_rewards.jsonl", "pairs.jsonl", "pair_stats.json", "comparisons.jsonl",
                 "train_metrics.json", "model/config.json", "eval/test_metrics.json"):
        assert (it1 / name).exists(), name
    assert (out / "config.json").exists() and (out / "results.md").exists()
    rows = [(r["method"], r["iteration"]) for r in result["table"]]
    assert rows == [("ipr", 0), ("ipr", 1), ("ipr", 2)]
    # MC estimates carry their spread and rollouts; terminal steps take the env's reward
    rewards = [json.loads(l) for l in (it1 / "step_rewards.jsonl").read_text().splitlines()]
    assert {r["side"] for r in rewards} == {"expert", "agent"}
    sampled = [r for r in rewards if not r["terminal"]]
    assert sampled and all(len(r["rollouts"]) == 2 and r["ci_low"] <= r["mean"] <= r["ci_high"] for r in sampled)
    assert all(r["n"] == 0 and r["mean"] in (0.0, 1.0) for r in rewards if r["terminal"])
    # every stage that ran is timed, and the times reach metrics.json
    timings = json.loads((out / "timings.json").read_text())
    stages = ["experts", "seed0/sft", "seed0/sft/eval/test"] + [f"seed0/ipr/iter{k}/{s}" for k in (1, 2)
                                                                for s in ("explore", "score", "train", "eval/test")]
    assert sorted(timings) == sorted(stages) and all(v >= 0 for v in timings.values())
    assert timings["seed0/sft"] > 0 and timings["seed0/ipr/iter1/explore"] > 0  # (a fully cached stage may take ~0 s)
    assert json.loads((out / "metrics.json").read_text())["timings_s"] == timings


def test_later_iterations_reuse_cached_expert_estimates(full_run):
    _, result = full_run
    it1, it2 = result["counters"]["seed0/ipr/iter1"]["mc"], result["counters"]["seed0/ipr/iter2"]["mc"]
    assert it1["cached"] == 0 and it1["computed"] > 0
    assert it2["cached"] > 0  # the expert's actions, scored by the same fixed SFT scorer, are not rescored


def test_rerun_computes_nothing_twice(full_run):
    out, result = full_run
    before = _files(out)
    again = _run(out)
    assert again["counters"] == {} and _files(out) == before  # no stage ran, no file rewritten
    assert again["table"] == result["table"]


def test_resume_after_interruption_matches_uninterrupted(full_run, tmp_path):
    out, result = full_run
    with pytest.raises(StopRun):
        _run(tmp_path, stop_after="ipr/iter1/score")
    assert (tmp_path / "seed0/ipr/iter1/step_rewards.jsonl").exists()
    assert not (tmp_path / "seed0/ipr/iter1/pairs.jsonl").exists()
    # a half-written temp file from the "crash" is ignored
    (tmp_path / "seed0/ipr/iter1/.pairs.jsonl.x.tmp").write_text('{"kind": "st')
    resumed = _run(tmp_path)
    assert "mc" not in resumed["counters"].get("seed0/ipr/iter1", {})  # iteration 1's rollouts were not redone
    assert resumed["table"] == result["table"]
    for k in (1, 2):
        a = json.loads((out / f"seed0/ipr/iter{k}/eval/test_metrics.json").read_text())
        b = json.loads((tmp_path / f"seed0/ipr/iter{k}/eval/test_metrics.json").read_text())
        assert a == b


def test_empty_pair_set_carries_the_policy_over(tmp_path, full_run):
    out, _ = full_run
    res = _run(tmp_path, iterations=1, pairs={"final_margin": 5.0})  # no pair can clear this margin
    d = tmp_path / "seed0/ipr/iter1"
    assert json.loads((d / "train_metrics.json").read_text()) == {"pairs": 0, "skipped": True}
    assert (d / "model/model.safetensors").read_bytes() == (tmp_path / "seed0/sft/model/model.safetensors").read_bytes()
    assert [r["iteration"] for r in res["table"]] == [0, 1]


def test_bad_run_inputs(tmp_path, tw_experts):
    with pytest.raises(IprkitError, match=r"unknown method\(s\) \['ppo'\]"):
        Runner(_cfg(methods=["ppo"]), tmp_path / "a")
    with pytest.raises(IprkitError, match="not a Hugging Face model folder"):
        Runner(_cfg(mc={"scorer": str(tmp_path / "no-model")}), tmp_path / "b")
    # imported experts: ones that do not replay are reported per task and skipped
    good = [t for t in tw_experts if t.task_id in {f"easy-{1_000_000 + i}" for i in range(3)}]
    broken = good[0].to_dict() | {"task_id": good[1].task_id}  # another game's actions
    unknown = good[0].to_dict() | {"task_id": "easy-424242424"}
    path = tmp_path / "experts.jsonl"
    write_jsonl(path, [t.to_dict() for t in good] + [broken, unknown])
    runner = Runner(_cfg(experts_file=str(path), env_kwargs={"preset": "easy", "n_train": 24, "n_test": 100}),
                    tmp_path / "c", progress=False)
    try:
        kept = runner.experts()
    finally:
        runner.close()
    report = json.loads((tmp_path / "c/experts/replay_report.json").read_text())
    assert len(kept) == 3 and report["tasks"] == 5 and report["replayed_to_success"] == 3
    assert sorted(report["skipped"]) == sorted([good[1].task_id, "easy-424242424"])


def test_failed_write_keeps_the_previous_artifact(tmp_path):
    path = tmp_path / "pairs.jsonl"
    atomic_write_text(path, "old\n")

    def rows():
        yield {"a": 1}
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_jsonl(path, rows())
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["pairs.jsonl"]


def test_sft_model_reuses_a_trained_base_agent(tmp_path, full_run):
    out, _ = full_run
    runner = Runner(_cfg(sft_model=str(out / "seed{seed}" / "sft" / "model")), tmp_path, progress=False)
    try:
        model = runner.sft(0, runner.experts())
    finally:
        runner.close()
    src = out / "seed0" / "sft"
    assert (model / "model.safetensors").read_bytes() == (src / "model" / "model.safetensors").read_bytes()
    assert json.loads((model.parent / "source.json").read_text())["sft_model"] == str((src / "model").resolve())
    assert (model.parent / "sft_metrics.json").read_text() == (src / "sft_metrics.json").read_text()
    assert not (model.parent / "trainer").exists()  # nothing was trained
    with pytest.raises(IprkitError, match=r"sft_model: .*nowhere is not a model folder"):
        Runner(_cfg(sft_model=str(tmp_path / "nowhere")), tmp_path / "b", progress=False).sft(0, [])


def test_explore_held_out_explores_tasks_sft_never_saw(tmp_path, full_run):
    out, _ = full_run
    cfg = _cfg(sft_model=str(out / "seed{seed}" / "sft" / "model"), explore_held_out=True, n_experts=20, n_explore=4)
    with pytest.raises(StopRun):
        Runner(cfg, tmp_path, progress=False, stop_after="ipr/iter1/explore").run()
    order = json.loads((tmp_path / "experts/order.json").read_text())
    explored = {json.loads(l)["task_id"] for l in (tmp_path / "seed0/ipr/iter1/explore.jsonl").read_text().splitlines()}
    assert len(order) == 24 and explored and explored <= set(order[20:])
    with pytest.raises(IprkitError, match="explore_held_out=true needs n_experts"):
        Runner(_cfg(explore_held_out=True, n_explore=4), tmp_path / "b")
