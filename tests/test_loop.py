"""The IPR loop end to end at smoke scale: every stage's artifacts, the results table,
resuming after an interruption, no rollout computed twice, and bad input."""

import json
import os

import pytest

from iprkit.config import from_dict
from iprkit.errors import IprkitError
from iprkit.io import atomic_write_text, write_jsonl
from iprkit.layout import RunLayout
from iprkit.loop import Runner, StopRun
from iprkit.settings import RunSettings
from iprkit.trajectory import load_trajectories
from iprkit.presets import RUN_PRESETS


def _cfg(**changes):
    base = {**RUN_PRESETS["smoke"], "methods": ["ipr"], "iterations": 2}
    return from_dict(RunSettings, {**base, **changes})


def _run(out, stop_after=None, **changes):
    return _run_cfg(_cfg(**changes), out, stop_after)


def _run_cfg(cfg, out, stop_after=None):
    runner = Runner(cfg, out, progress=False, stop_after=stop_after)
    try:
        return runner.run()
    finally:
        runner.close()


def _sft_model_of(run) -> str:
    """``sft_model=`` naming another run's SFT model of each seed."""
    return str(RunLayout(run).model(0, "sft", 0)).replace("seed0", "seed{seed}")


def _files(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def full_run(smoke_run):
    return smoke_run


def test_every_stage_writes_its_artifacts(full_run):
    out, result = full_run
    run = RunLayout(out)
    it1 = run.iteration(0, "ipr", 1)
    for path in (it1.explore, it1.step_rewards, it1.pairs, it1.pair_stats, it1.comparisons, it1.train_metrics,
                 it1.model, it1.eval.metrics("test"), it1.eval.tasks("test")):
        assert path.exists(), path
    assert run.config.exists() and run.results_md.exists()
    rows = [(r["method"], r["iteration"]) for r in result["table"]]
    assert rows == [("ipr", 0), ("ipr", 1), ("ipr", 2)]
    # MC estimates carry their spread and rollouts; terminal steps take the env's reward
    rewards = [json.loads(l) for l in it1.step_rewards.read_text().splitlines()]
    assert {r["side"] for r in rewards} == {"expert", "agent"}
    sampled = [r for r in rewards if not r["terminal"]]
    assert sampled and all(len(r["rollouts"]) == 2 and r["ci_low"] <= r["mean"] <= r["ci_high"] for r in sampled)
    assert all(r["n"] == 0 and r["mean"] in (0.0, 1.0) for r in rewards if r["terminal"])
    # every stage that ran is timed, and the times reach metrics.json
    timings = json.loads(run.timings.read_text())
    stages = ["experts", "seed0/sft", "seed0/sft/eval/test", "seed0/sft/eval/explored"] + [
        f"seed0/ipr/iter{k}/{s}" for k in (1, 2) for s in ("explore", "score", "pairs", "train", "eval/test", "eval/explored")]
    assert sorted(timings) == sorted(stages) and all(v >= 0 for v in timings.values())
    assert timings["seed0/sft"] > 0 and timings["seed0/ipr/iter1/explore"] > 0  # (a fully cached stage may take ~0 s)
    assert json.loads(run.metrics.read_text())["timings_s"] == timings
    # the methods are compared task by task: IPR's last iteration against SFT, on the same 4 test games
    (paired,) = json.loads(run.results_json.read_text())["paired"]
    assert (paired["a"], paired["b"], paired["pairs"]) == ("ipr@2", "sft@0", 4)
    assert paired["success_ci"][0] <= paired["success_diff"] <= paired["success_ci"][1]
    assert "| ipr@2 vs sft@0 | 4 |" in run.results_md.read_text()
    # and the Monte Carlo cost of each iteration: what ran, what an estimator without reuse runs
    counts = json.loads(it1.mc_counts.read_text())
    assert counts["rollouts"] == counts["rollouts_without_reuse"] == 2 * counts["computed"]  # reuse is off here
    assert f"- seed0/ipr/iter1: {counts['rollouts']} rollouts run; {counts['computed']} estimates computed" in run.results_md.read_text()


def test_learning_curves_on_the_explored_tasks_apart_from_held_out(full_run):
    out, result = full_run
    run = RunLayout(out)
    explored = {t.task_id for t in load_trajectories(run.iteration(0, "ipr", 1).explore)}
    for k in (0, 1, 2):  # every model is evaluated greedily on the tasks the iterations explored (train tasks)
        ev = run.eval(0, "sft" if k == 0 else "ipr", k)
        rows = [json.loads(l) for l in ev.tasks("explored").read_text().splitlines()]
        assert {r["task_id"] for r in rows} == explored and len(rows) == 4
        assert ev.splits() == ["test"] and ev.splits(explored=True) == ["test", "explored"]
        point = result["curves"]["ipr"][0][k]
        wins = sum(r["success"] for r in rows) / len(rows)
        assert point["explored_success"] == wins
        assert point["success"] == point["test_success"]  # the explored tasks stay out of the held-out mean
    rows = {r["iteration"]: r for r in result["table"]}
    assert rows[2]["explored_success_mean"] == result["curves"]["ipr"][0][2]["explored_success"]
    md = run.results_md.read_text()
    assert "explored tasks: success" in md.splitlines()[0] and "The same on the explored train tasks" in md
    (paired,) = result["paired_explored"]
    assert (paired["a"], paired["b"], paired["pairs"]) == ("ipr@2", "sft@0", 4)


def test_science_table_reports_the_finished_seeds(full_run, tmp_path):
    import importlib.util
    from pathlib import Path

    out, result = full_run
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "science_table.py"
    spec = importlib.util.spec_from_file_location("science_table", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.report("smoke", out, ["methods=[ipr]", "iterations=2"], "t", res_dir=tmp_path)
    assert row["finished_seeds"] == [0] and row["table"] == result["table"] and row["paired"] == result["paired"]
    assert json.loads((tmp_path / "science_table_t.json").read_text())["finished_seeds"] == [0]
    assert "| ipr@2 vs sft@0 | 4 |" in (tmp_path / "science_table_t.md").read_text()
    # a seed not run yet is not in the table
    row = bench.report("smoke", out, ["methods=[ipr]", "iterations=2", "seeds=[0,1]"], "t", res_dir=tmp_path)
    assert row["finished_seeds"] == [0] and row["seeds"] == [0, 1]


def test_fresh_exploration_sample_per_iteration(tmp_path, full_run):
    out, _ = full_run
    cfg = _cfg(sft_model=str(RunLayout(out).model(0, "sft", 0)), explore_sample="fresh", n_explore=5, iterations=3,
               seeds=[0, 1])
    with pytest.raises(StopRun):
        _run_cfg(cfg, tmp_path, stop_after="seed0/ipr/iter2/explore")
    runner = Runner(cfg, tmp_path / "view", progress=False)
    runner.layout = RunLayout(tmp_path)  # read the experts the run wrote
    try:
        pool = [t.task_id for t in runner.expert_sets[1]]
        draws = {(s, k): [t.task_id for t in runner.explore_set(s, k)] for s in (0, 1) for k in (1, 2, 3, 4, 5)}
    finally:
        runner.close()
    assert len(pool) == 24 and all(len(d) == 5 and set(d) <= set(pool) for d in draws.values())
    seen = [t for k in (1, 2, 3, 4) for t in draws[0, k]]
    assert len(set(seen)) == 20  # no task twice while the pool lasts (4 x 5 of 24)
    assert set(draws[0, 5]) & set(seen)  # then the pool starts over
    assert draws[0, 1] != draws[1, 1]  # each seed draws its own
    for k in (1, 2):  # and each iteration explored exactly its draw
        got = {t.task_id for t in load_trajectories(RunLayout(tmp_path).iteration(0, "ipr", k).explore)}
        assert got == set(draws[0, k])
    assert runner.explored_tasks(0) == [t for t in pool if t in set(seen[:15])]  # iterations 1-3, in pool order
    with pytest.raises(IprkitError, match="explore_sample"):
        _cfg(explore_sample="fresh", n_explore=None)


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


@pytest.mark.slow
def test_resume_after_interruption_matches_uninterrupted(full_run, tmp_path):
    out, result = full_run
    with pytest.raises(StopRun):
        _run(tmp_path, stop_after="ipr/iter1/score")
    it1 = RunLayout(tmp_path).iteration(0, "ipr", 1)
    assert it1.step_rewards.exists() and not it1.pairs.exists()
    # a half-written temp file from the "crash" is ignored
    (it1.dir / f".{it1.pairs.name}.x.tmp").write_text('{"kind": "st')
    resumed = _run(tmp_path)
    assert "mc" not in resumed["counters"].get("seed0/ipr/iter1", {})  # iteration 1's rollouts were not redone
    assert resumed["table"] == result["table"]
    for k in (1, 2):
        a, b = (json.loads(RunLayout(d).iteration(0, "ipr", k).eval.metrics("test").read_text()) for d in (out, tmp_path))
        assert a == b


@pytest.mark.slow
def test_empty_pair_set_carries_the_policy_over(tmp_path, full_run):
    out, _ = full_run
    res = _run(tmp_path, iterations=1, pairs={"final_margin": 5.0})  # no pair can clear this margin
    run = RunLayout(tmp_path)
    d = run.iteration(0, "ipr", 1)
    assert json.loads(d.train_metrics.read_text()) == {"pairs": 0, "skipped": True}
    weights = "model.safetensors"  # the Hugging Face folder's weights file
    assert (d.model / weights).read_bytes() == (run.model(0, "sft", 0) / weights).read_bytes()
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
    path = tmp_path / "mine.jsonl"
    write_jsonl(path, [t.to_dict() for t in good] + [broken, unknown])
    cfg = _cfg(experts_file=str(path), env_kwargs={"preset": "easy", "n_train": 24, "n_test": 100})
    with pytest.raises(StopRun):
        _run_cfg(cfg, tmp_path / "c", stop_after="experts")
    run = RunLayout(tmp_path / "c")
    kept = load_trajectories(run.experts("train"))
    report = json.loads(run.replay_report.read_text())
    assert len(kept) == 3 and report["tasks"] == 5 and report["replayed_to_success"] == 3
    assert sorted(report["skipped"]) == sorted([good[1].task_id, "easy-424242424"])


def test_an_option_value_the_env_refuses_writes_no_config_so_the_fixed_rerun_starts(tmp_path):
    """Option *values* are the env's to check (check_run sees only names): a refused one must not leave a config.json
    behind, or the corrected rerun into the same folder would be told that its config differs."""
    bad = {"preset": "tw-cooking", "challenge_settings": {"recipe:2": None}}  # YAML's reading of {recipe:2}
    with pytest.raises(IprkitError, match="write a space after each colon"):
        Runner(_cfg(env_kwargs=bad), tmp_path, progress=False)
    layout = RunLayout(tmp_path)
    assert not layout.config.exists() and not layout.lock.exists()
    fixed = _cfg(env_kwargs={"preset": "tw-cooking", "challenge_settings": {"recipe": 2}})
    Runner(fixed, tmp_path, progress=False).lock.release()
    assert json.loads(layout.config.read_text())["env_kwargs"]["challenge_settings"] == {"recipe": 2}
    with pytest.raises(IprkitError, match="holds a different config"):  # a real change is still refused at once
        Runner(_cfg(), tmp_path, progress=False)


def test_failed_write_keeps_the_previous_artifact(tmp_path):
    path = RunLayout(tmp_path).iteration(0, "ipr", 1).pairs
    path.parent.mkdir(parents=True)
    atomic_write_text(path, "old\n")

    def rows():
        yield {"a": 1}
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_jsonl(path, rows())
    assert path.read_text() == "old\n" and os.listdir(path.parent) == [path.name]


def test_sft_model_reuses_a_trained_base_agent(tmp_path, full_run):
    out, _ = full_run
    with pytest.raises(StopRun):
        _run(tmp_path, stop_after="sft", sft_model=_sft_model_of(out))
    src, got = RunLayout(out).sft(0), RunLayout(tmp_path).sft(0)
    weights = "model.safetensors"  # the Hugging Face folder's weights file
    assert (got.model / weights).read_bytes() == (src.model / weights).read_bytes()
    assert json.loads(got.source.read_text())["sft_model"] == str(src.model.resolve())
    assert got.metrics.read_text() == src.metrics.read_text()
    assert not got.trainer.exists()  # nothing was trained
    with pytest.raises(IprkitError, match=r"sft_model=.*nowhere \(seed 0\) is not a model folder"):
        _run(tmp_path / "b", stop_after="sft", sft_model=str(tmp_path / "nowhere"))


def test_explore_held_out_explores_tasks_sft_never_saw(tmp_path, full_run):
    out, _ = full_run
    cfg = _cfg(sft_model=_sft_model_of(out), explore_held_out=True, n_experts=20, n_explore=4)
    with pytest.raises(StopRun):
        Runner(cfg, tmp_path, progress=False, stop_after="ipr/iter1/explore").run()
    run = RunLayout(tmp_path)
    order = json.loads(run.experts_order.read_text())
    explored = {t.task_id for t in load_trajectories(run.iteration(0, "ipr", 1).explore)}
    assert len(order) == 24 and explored and explored <= set(order[20:])
    with pytest.raises(IprkitError, match="explore_held_out=true needs n_experts"):
        Runner(_cfg(explore_held_out=True, n_explore=4), tmp_path / "b")
