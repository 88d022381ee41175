"""ScienceWorld (ETO's environment): task:variation ids over the simulator's own variation splits, gold paths
that replay to success, partial reward = score / 100, and a pool of simulators (JVMs) reused across episodes."""

import pytest

from conftest import run_cli
from iprkit.envs import make_env
from iprkit.envs.scienceworld_env import _POOL
from iprkit.errors import IprkitError
from iprkit.experts import expert_trajectories

TASKS = ["find-animal", "chemistry-mix-paint-secondary-color"]


@pytest.fixture(scope="module")
def sw():
    env = make_env("scienceworld", tasks=TASKS, variations=2)
    yield env
    env.close()


def test_splits_are_the_simulators_variation_splits(sw):
    train, dev, test = (sw.task_ids(s) for s in ("train", "dev", "test"))
    assert len(train) == len(dev) == len(test) == 4 and train[0].startswith("find-animal:")
    assert not set(train) & set(test) and not set(dev) & set(test)
    with pytest.raises(IprkitError, match="unknown task type"):
        make_env("scienceworld", tasks=["boil-everything"]).task_ids("train")


def test_gold_paths_replay_to_success_on_train_and_test(sw):
    ids = sw.task_ids("train") + sw.task_ids("test")
    trajs, failures = expert_trajectories(sw, ids, progress=False)
    assert not failures and all(t.success and t.final_reward == 1.0 for t in trajs)
    assert "Your task is to" in trajs[0].instruction and trajs[0].observation.startswith("This room is called")


def test_partial_reward_is_score_over_100(sw):
    task = sw.task_ids("train")[-1]  # a paint-mixing task scores its sub-goals on the way
    sw.reset(task)
    for action in sw.expert(task):
        score = sw.step(action).info["score"]
        if 0 < score < 100:  # a sub-goal reached, the task not done
            assert sw.final_reward() == pytest.approx(score / 100) and not sw.success() and not sw.done
            break
    else:
        pytest.fail("no partial score on the gold path")


def test_simulators_are_pooled_and_reused():
    first = make_env("scienceworld", tasks=TASKS, variations=1)
    first.reset(first.task_ids("test")[0])
    jvm = first._sim
    first.close()
    assert jvm in _POOL
    second = make_env("scienceworld", tasks=TASKS, variations=1)
    second.reset(second.task_ids("test")[0])
    assert second._sim is jvm  # the same JVM, not a new one
    second.close()
    assert second.max_instances == 8


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    r = run_cli("run", "--preset", "smoke", "--out", str(tmp_path / "run"), "env=scienceworld",
                f"env_kwargs={{tasks: [{', '.join(TASKS)}], variations: 2, max_steps: 20}}", "n_eval=2", "n_explore=1",
                "generation.max_new_tokens=16")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| ipr | 1 |" in r.stdout and "experts: 4 of 4 train tasks replayed to success" in r.stdout
