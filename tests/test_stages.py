"""Stages: skip what is done, time what ran, write folders whole, stop after a named stage, and refuse a
stage name that does not exist before doing any work."""

import json

import pytest

from iprkit.errors import IprkitError
from iprkit.io import write_json
from iprkit.layout import RunLayout
from iprkit.stages import Stage, StageRunner, StopRun, Work, staged_dir, stop_index

NAMES = ["experts", "seed0/sft", "seed0/sft/eval/test", "seed0/sft/eval/train", "seed0/ipr/iter1/explore",
         "seed0/ipr/iter1/score", "seed0/ipr/iter1/eval/test", "seed1/sft"]


@pytest.mark.parametrize("target,stop", [
    ("experts", "experts"),
    ("sft", "seed0/sft"),  # the first stage ending with it: SFT training, before its evaluation
    ("seed1/sft", "seed1/sft"),
    ("ipr/iter1/score", "seed0/ipr/iter1/score"),
    ("seed0/sft/eval", "seed0/sft/eval/train"),  # a group: after its last stage
    ("eval/test", "seed0/sft/eval/test"),
])
def test_stop_after_names_a_stage_or_a_group(target, stop):
    assert NAMES[stop_index(NAMES, target)] == stop


def test_unknown_stop_after_is_refused_with_the_stage_names():
    with pytest.raises(IprkitError, match=r"--stop-after 'ipr/iter9/score' names no stage.*seed0/sft"):
        stop_index(NAMES, "ipr/iter9/score")
    with pytest.raises(IprkitError, match="names no stage"):
        stop_index(NAMES, "iter1/sco")  # whole path components only


def test_runner_skips_done_stages_times_the_rest_and_stops(tmp_path):
    layout = RunLayout(tmp_path)
    calls = []

    def stage(name):
        out = tmp_path / f"{name}.out"
        return Stage(name, [out], lambda: (calls.append(name), out.write_text(name)))

    plan = [stage("a"), stage("b"), stage("c")]
    with pytest.raises(StopRun, match="b"):
        StageRunner(layout.timings, stop_after="b").run_all(plan)
    assert calls == ["a", "b"]
    runner = StageRunner(layout.timings)
    runner.run_all(plan)
    assert calls == ["a", "b", "c"] and runner.ran == ["c"]  # a and b were done
    assert sorted(json.loads(layout.timings.read_text())) == ["a", "b", "c"]


def test_a_stage_that_leaves_no_output_is_an_error(tmp_path):
    with pytest.raises(IprkitError, match="finished without writing"):
        StageRunner(tmp_path / "t.json").run(Stage("x", [tmp_path / "never"], lambda: None))


def test_untimed_stage_and_work_shape(tmp_path):
    out = tmp_path / "squares.json"
    work = Work(items=lambda: [1, 2, 3], do=lambda xs: [x * x for x in xs], write=lambda rows: write_json(out, rows))
    runner = StageRunner(tmp_path / "t.json")
    runner.run(Stage("squares", [out], work, timed=False))
    assert json.loads(out.read_text()) == [1, 4, 9] and not (tmp_path / "t.json").exists()
    # the same items in two shards, merged in item order, give the same rows
    items = work.items()
    assert work.do(items[:2]) + work.do(items[2:]) == work.do(items)


def test_staged_dir_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with staged_dir(final) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed")
    assert not final.exists()
    with staged_dir(final) as tmp:
        (tmp / "weights").write_text("whole")
    assert (final / "weights").read_text() == "whole" and not tmp.exists()


def test_a_run_with_an_unknown_stop_after_fails_before_any_work(tmp_path):
    from iprkit.config import from_dict
    from iprkit.loop import Runner
    from iprkit.presets import RUN_PRESETS
    from iprkit.settings import RunSettings

    cfg = from_dict(RunSettings, RUN_PRESETS["smoke"])
    with pytest.raises(IprkitError, match="names no stage"):
        Runner(cfg, tmp_path, stop_after="ipr/iter2/score")  # the smoke preset runs one iteration
    assert not any(tmp_path.iterdir())  # nothing written, no env built
