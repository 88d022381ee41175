"""Bad input gets a clear error naming the task, file or setting; one bad episode
never stops a batch; the experts CLI writes what it says."""

import json

import pytest

from conftest import run_cli
from iprkit.envs import make_env
from iprkit.errors import EpisodeOverError, IprkitError, UnknownTaskError
from iprkit.experts import expert_trajectories


def test_unknown_env_name():
    with pytest.raises(IprkitError, match=r"unknown env 'webshop'; installed: \[.*'alfworld'.*'sql'.*'textworld'"):
        make_env("webshop")


def test_unknown_task_and_split(tw_env):
    with pytest.raises(UnknownTaskError, match=r"unknown task id 'easy-999999999'.*task_ids"):
        tw_env.reset("easy-999999999")
    with pytest.raises(UnknownTaskError, match="unknown split 'dev'"):
        tw_env.task_ids("dev")


def test_step_before_reset_and_after_done(tw_env):
    from iprkit.envs.textworld_env import TextWorldEnv

    fresh = TextWorldEnv(n_train=1, n_test=1)
    with pytest.raises(EpisodeOverError, match="call reset"):
        fresh.step("look")
    t = tw_env.task_ids("test")[0]
    tw_env.replay(t, tw_env.expert(t))
    with pytest.raises(EpisodeOverError, match="is over"):
        tw_env.step("look")


def test_missing_alfworld_data(monkeypatch, tmp_path):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(IprkitError, match="ALFWORLD_DATA is not set.*alfworld-download"):
        make_env("alfworld")
    with pytest.raises(IprkitError, match=f"{tmp_path}/json_2.1.1 does not exist"):
        make_env("alfworld", data_dir=tmp_path)


def test_bad_episode_does_not_stop_the_batch(tw_env):
    ids = tw_env.task_ids("test")[:2]
    trajs, failures = expert_trajectories(tw_env, [ids[0], "easy-oops", ids[1]], progress=False)
    assert [t.task_id for t in trajs] == ids
    assert failures == [{"task_id": "easy-oops", "error": failures[0]["error"]}] and "easy-oops" in failures[0]["error"]


def test_experts_cli(tmp_path, tw_env):
    out = tmp_path / "e.jsonl"
    r = run_cli("experts", "--env", "textworld", "--split", "test", "--limit", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "textworld test: 3/3 expert trajectories replay to success (100.0%)" in r.stdout
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(rows) == 3 and all(row["success"] is True and row["final_reward"] == 1.0 for row in rows)


def test_cli_reports_errors_without_traceback(tmp_path):
    r = run_cli("experts", "--env", "nope", "--out", str(tmp_path / "x.jsonl"))
    assert r.returncode == 2 and "iprkit: error: unknown env 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("experts", "--env", "alfworld", "--alfworld-data", str(tmp_path), "--out", str(tmp_path / "x.jsonl"))
    assert r.returncode == 2 and "json_2.1.1 does not exist" in r.stderr
