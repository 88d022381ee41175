"""Stages sharded across worker processes (launched with torchrun): exploration, Monte Carlo scoring and
evaluation give the same artifacts with one process or two, and a worker that died leaves the others' shards
for the rerun."""

import pickle

import pytest

from iprkit.config import from_dict
from iprkit.io import read_json, read_jsonl
from iprkit.layout import RunLayout
from iprkit.loop import Runner, StopRun
from iprkit.presets import RUN_PRESETS
from iprkit.settings import RunSettings


def _run(out, smoke_model, workers, settings=None, **kw):
    """A smoke IPR run from the trained smoke model (``settings``: more fields)."""
    cfg = from_dict(RunSettings, {**RUN_PRESETS["smoke"], "methods": ["ipr"], "sft_model": str(smoke_model),
                                  "mc": {"n": 3, "temperature": 1.0}, "n_explore": 4, **(settings or {})})
    runner = Runner(cfg, out, progress=False, workers=workers, **kw)
    try:
        runner.run()
    except StopRun:
        pass
    finally:
        runner.close()
    return RunLayout(out)


@pytest.mark.slow
def test_one_worker_or_two_give_the_same_exploration_estimates_and_evaluation(smoke_model, tmp_path):
    reuse = {"mc": {"n": 3, "temperature": 1.0, "reuse": True}}  # reuse shares samples within a task: shards hold whole tasks
    one, two = _run(tmp_path / "k1", smoke_model, 1, reuse), _run(tmp_path / "k2", smoke_model, 2, reuse)
    rows = lambda p: [r for _, r in read_jsonl(p)]
    it1, it2 = one.iteration(0, "ipr", 1), two.iteration(0, "ipr", 1)
    assert rows(it1.explore) == rows(it2.explore)
    sampled = [r for r in rows(it1.step_rewards) if not r["terminal"]]
    assert sampled and rows(it1.step_rewards) == rows(it2.step_rewards)  # the sampled MC rollouts too
    assert read_json(it1.mc_counts) == read_json(it2.mc_counts)  # the workers' counters, summed
    for lay in (one, two):
        assert lay.eval(0, "ipr", 1).metrics("test").exists()
    assert rows(one.eval(0, "sft", 0).tasks("test")) == rows(two.eval(0, "sft", 0).tasks("test"))
    assert not list(two.shards("seed0/ipr/iter1/score").glob("*.pkl"))  # merged, then removed


@pytest.mark.slow
def test_a_rerun_keeps_the_shards_that_finished(smoke_model, tmp_path):
    from iprkit.shard import worker

    lay = _run(tmp_path / "k2", smoke_model, 2, stop_after="sft/eval")  # a run that stopped before exploring
    stage = "seed0/ipr/iter1/explore"
    import os

    os.environ.update(RANK="1", WORLD_SIZE="2")
    try:
        worker(lay.root, stage, threads=1)  # as if rank 1 finished and rank 0 was killed
    finally:
        del os.environ["RANK"], os.environ["WORLD_SIZE"]
    done = lay.shard(stage, 1, 2)
    marked = pickle.loads(done.read_bytes())
    marked["results"][0].meta["kept"] = True  # a mark that only the kept shard carries
    done.write_bytes(pickle.dumps(marked))
    again = _run(tmp_path / "k2", smoke_model, 2)
    explored = [r for _, r in read_jsonl(again.iteration(0, "ipr", 1).explore)]
    assert explored[1]["meta"].get("kept") is True and "kept" not in explored[0]["meta"]


@pytest.mark.slow
def test_two_training_processes_match_one(tmp_path, smoke_model):
    """SFT and DPO under torchrun with 2 CPU processes (gloo): same global batch and data order, so the same loss
    curve as 1 process (to float rounding), and models that load and agree."""
    import torch

    from iprkit.models import load_model

    def run(n):
        cfg = from_dict(RunSettings, {**RUN_PRESETS["smoke"], "methods": ["ipr"], "train": {"num_processes": n},
                                      "sft": {**RUN_PRESETS["smoke"]["sft"], "group_by_length": False, "max_steps": 20,
                                              "logging_steps": 2}})
        runner = Runner(cfg, tmp_path / f"p{n}", progress=False)
        try:
            runner.run()
        finally:
            runner.close()
        lay = RunLayout(tmp_path / f"p{n}")
        sft = read_json(lay.sft(0).metrics)
        return lay, sft, read_json(lay.iteration(0, "ipr", 1).train_metrics)

    (l1, s1, d1), (l2, s2, d2) = run(1), run(2)
    assert (s1["processes"], s2["processes"], d2["processes"]) == (1, 2, 2)
    curve = lambda m: [h["loss"] for h in m["log_history"] if "loss" in h]
    assert len(curve(s1)) == 10 and max(abs(a - b) for a, b in zip(curve(s1), curve(s2))) < 1e-3
    assert d1["pairs"] == d2["pairs"] > 0 and d1["steps"] == d2["steps"]
    m1, _ = load_model(l1.model(0, "ipr", 1))
    m2, _ = load_model(l2.model(0, "ipr", 1))
    sft, _ = load_model(l1.model(0, "sft", 0))
    gap = lambda x, y: max((a - b).abs().max().item() for a, b in zip(x.parameters(), y.parameters()))
    # DPO moved the weights (about 2e-4 here); the two runs' models differ by float rounding (about 6e-6)
    assert gap(m1, m2) < 0.1 * gap(m1, sft)
    assert not list(l2.root.rglob("*.pairs"))  # the pairs' dataset folder for the processes is cleaned up


@pytest.mark.slow
def test_training_under_accelerate_launch_keeps_its_config(tmp_path, smoke_model, capsys):
    """``train.accelerate_config``: training goes through ``accelerate launch --config_file`` (here a one-process
    CPU config; the multi-GPU examples in configs/accelerate/ are documented, not run), and the run keeps the file."""
    config = tmp_path / "cpu.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 1\n"
                      "num_machines: 1\nmixed_precision: 'no'\nuse_cpu: true\n")
    lay = _run(tmp_path / "acc", smoke_model, 1, {"train": {"accelerate_config": str(config)}},
               stop_after="ipr/iter1/train")
    assert lay.accelerate_config.read_text() == config.read_text()
    assert f"seed0/ipr/iter1/train: training with accelerate config {config}" in capsys.readouterr().out
    assert (lay.shards("seed0/ipr/iter1/train") / "train.log").exists()
    assert read_json(lay.iteration(0, "ipr", 1).train_metrics)["processes"] == 1
    assert (lay.model(0, "ipr", 1) / "config.json").exists()
