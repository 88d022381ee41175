"""The env protocol over the real packages: expert replay, deterministic replay,
snapshots, step limits and the env's own feedback for bad actions."""

import random
import re

import pytest

from iprkit.envs.base import StepResult
from iprkit.errors import IprkitError
from iprkit.experts import expert_trajectories


def _prefixes(env, split, n, seed=0, tasks=None):
    rng = random.Random(seed)
    ids = tasks or env.task_ids(split)
    out = []
    for _ in range(n):
        t = rng.choice(ids)
        gold = env.expert(t)
        k = rng.randint(0, len(gold))
        # mix gold actions with an off-path admissible-looking action, to cover more states
        prefix = gold[:k] + (["look"] if rng.random() < 0.3 else [])
        out.append((t, prefix))
    return out


def _replay_record(env, task, prefix):
    instruction, obs, results = env.replay(task, prefix)
    return instruction, obs, [(r.observation, r.reward, r.done, sorted(r.info.items(), key=str)) for r in results], \
        env.final_reward(), env.success()


def _assert_deterministic(env, split, n, tasks=None):
    prefixes = _prefixes(env, split, n, tasks=tasks)
    first = [_replay_record(env, t, p) for t, p in prefixes]
    random.Random(1).shuffle(order := list(range(n)))  # replay in another order: no state leaks between episodes
    for i in order:
        assert _replay_record(env, *prefixes[i]) == first[i], f"replay of {prefixes[i]} differed"


# -- TextWorld ------------------------------------------------------------------------

@pytest.mark.slow
def test_textworld_expert_replay_wins_every_test_game(tw_env):
    ids = tw_env.task_ids("test")
    trajs, failures = expert_trajectories(tw_env, ids, progress=False)
    assert not failures
    assert len(trajs) == 100 and all(t.success and t.final_reward == 1.0 for t in trajs)
    assert all(t.steps[-1].done for t in trajs)
    # thoughts are written, and the banner never reaches the model
    assert all(s.thought for t in trajs for s in t.steps)
    assert all(t.meta["entities"] for t in trajs)  # names and kinds, for entity renaming
    texts = [t.observation for t in trajs] + [s.observation for t in trajs for s in t.steps]
    assert not any("$$$$" in x or re.search(r"=-\d+/\d+", x) or "RESTART" in x for x in texts)


def test_textworld_quote_thoughts_cite_the_task_sentences_in_order(tw_env):
    from iprkit.envs.textworld_env import TextWorldEnv

    env = TextWorldEnv(n_test=100, thoughts="quote")
    trajs, failures = expert_trajectories(env, tw_env.task_ids("test")[:25], progress=False)
    assert not failures and all(t.success for t in trajs)
    for t in trajs:
        quotes = [re.fullmatch(r'Next in my task: "(.+)"', s.thought) for s in t.steps]
        assert all(quotes), [s.thought for s in t.steps]
        where = [t.instruction.index(q[1]) for q in quotes]  # verbatim, in the task's order, each once
        assert where == sorted(where) and len(set(where)) == len(where)
    env.close()


def test_textworld_splits_are_disjoint_seed_ranges(tw_env):
    train, test = set(tw_env.task_ids("train")), set(tw_env.task_ids("test"))
    assert not train & test
    assert tw_env.expert(sorted(test)[0])  # a gold path exists


def test_textworld_replay_is_deterministic(tw_env):
    _assert_deterministic(tw_env, "test", 40)


def test_textworld_snapshot_matches_replay(tw_env):
    t = tw_env.task_ids("test")[3]
    gold = tw_env.expert(t)
    tw_env.reset(t)
    tw_env.step(gold[0])
    snap = tw_env.snapshot()
    rest_a = [tw_env.step(a) for a in gold[1:]]
    won_a = tw_env.success()
    tw_env.restore(snap)
    rest_b = [tw_env.step(a) for a in gold[1:]]
    assert [(r.observation, r.reward, r.done) for r in rest_a] == [(r.observation, r.reward, r.done) for r in rest_b]
    assert won_a and tw_env.success()
    # the snapshot can be restored again, and into a new branch
    tw_env.restore(snap)
    assert tw_env.steps_taken == 1 and not tw_env.done


def test_textworld_long_commands_get_an_answer_with_and_without_tracking():
    """A model turn without an Action line goes to the game whole. In this state (a demo exploration, seed 0) a
    200-character one made TextWorld's parser print 8 KB of "Programming error" lines (its buffer has 123 entries),
    cut to 34 characters by TextWorld's state tracking, which the rollout engine turns off (it only feeds
    admissible_commands): commands are cut to what the parser reads, and the answer is the same either way."""
    from iprkit.envs.textworld_env import TextWorldEnv

    env = TextWorldEnv(preset="easy", n_train=864, n_test=0)
    key = "non-euclidean keycard"
    prefix = [f"unlock non-euclidean chest with {key}", "open non-euclidean chest", f"insert {key} into non-euclidean chest",
              "lock non-euclidean chest with non-euclidean key",
              "lock non-euclidean chest with non-euclidean chest with non-euclidean key", "open non-euclidean chest",
              f"insert {key}"]
    turn = ("Thought: The non-euclidean chest is in my way and must be opened to go on, so I unlock non-euclidean chest "
            f"with {key}. You can see a non-euclidean chest is an iron in the corner is som")
    seen, admissible = {}, {}
    for track in (True, False):
        env.track_admissible = track
        env.reset("easy-861")
        for a in prefix:
            env.step(a)
        seen[track] = [env.step(turn).observation, env.step("look").observation]
        admissible[track] = list(env.admissible_commands)
    env.close()
    assert seen[True] == seen[False]
    assert not any("Programming error" in o for o in seen[False]), seen[False][0][:200]
    assert admissible[True] and not admissible[False]  # nothing is tracked for them


def test_textworld_bad_action_gets_env_feedback_and_step_limit(tw_env):
    t = tw_env.task_ids("test")[0]
    tw_env.reset(t)
    r = tw_env.step("fly to the moon")
    assert isinstance(r, StepResult) and r.observation and not r.done and r.reward == 0.0
    for _ in range(tw_env.max_steps - 2):
        assert not tw_env.step("look").done
    last = tw_env.step("look")
    assert last.done and last.info.get("truncated") and not tw_env.success()


# -- ALFWorld -------------------------------------------------------------------------

@pytest.mark.slow
def test_alfworld_splits_and_expert_replay(alf_env):
    assert len(alf_env.task_ids("valid_seen")) == 140 and len(alf_env.task_ids("valid_unseen")) == 134
    sample = alf_env.task_ids("valid_unseen")[::7]  # 20 games of every task type; the full split is in the README
    trajs, failures = expert_trajectories(alf_env, sample, progress=False)
    assert not failures
    assert sum(t.success for t in trajs) / len(trajs) >= 0.95
    t = trajs[0]
    assert "Your task is to:" in t.instruction and "Welcome to TextWorld" not in t.observation
    assert alf_env.max_steps == 20


@pytest.mark.slow
def test_alfworld_replay_is_deterministic(alf_env):
    _assert_deterministic(alf_env, "valid_unseen", 10, tasks=alf_env.task_ids("valid_unseen")[:5])


def test_alfworld_admissible_commands_and_bad_action(alf_env):
    t = alf_env.task_ids("valid_seen")[0]
    alf_env.reset(t)
    assert any(c.startswith("go to") for c in alf_env.admissible_commands)
    r = alf_env.step("dance wildly")
    assert r.observation == "Nothing happens." and not r.done


# -- InterCode-SQL --------------------------------------------------------------------

def test_sql_split_by_database(sql_env):
    from iprkit.envs.sql_env import TEST_DBS

    train, test = sql_env.task_ids("train"), sql_env.task_ids("test")
    assert len(train) + len(test) == 1034 and len(test) == 205
    assert {sql_env.task(t)["db"] for t in test} == set(TEST_DBS)
    assert not {sql_env.task(t)["db"] for t in train} & set(TEST_DBS)


def test_sql_gold_scoring_reproduces_intercode_mean(sql_env):
    ids = sql_env.task_ids("train") + sql_env.task_ids("test")
    trajs, failures = expert_trajectories(sql_env, ids, progress=False)
    assert not failures
    mean = sum(t.final_reward for t in trajs) / len(trajs)
    assert 0.985 <= mean <= 1.0, mean  # InterCode reports about 0.99 for the gold queries


def test_sql_replay_is_deterministic(sql_env):
    _assert_deterministic(sql_env, "test", 10)


@pytest.mark.parametrize("kwargs,family", [
    ({"rooms": 4, "objects": 8, "quest_length": 4}, "r4-o8-q4"),
    pytest.param({"preset": "tw-simple"}, "tw-simple", marks=pytest.mark.slow),
    pytest.param({"preset": "tw-coin_collector", "challenge_settings": {"level": 5}}, "tw-coin_collector-level5",
                 marks=pytest.mark.slow),
    pytest.param({"preset": "tw-treasure_hunter", "challenge_settings": {"level": 3}}, "tw-treasure_hunter-level3",
                 marks=pytest.mark.slow),
    pytest.param({"preset": "tw-cooking"}, "tw-cooking-go1-recipe1", marks=pytest.mark.slow),
])
def test_textworld_families_generate_games_whose_experts_win(tmp_path, kwargs, family):
    from iprkit.envs.textworld_env import TextWorldEnv

    with TextWorldEnv(n_train=2, n_test=2, game_dir=tmp_path, **kwargs) as env:
        ids = env.task_ids("train") + env.task_ids("test")
        assert ids[0] == f"{family}-0" and ids[-1] == f"{family}-1000001"  # the family names its task ids
        env.prepare("train")
        trajs, failures = expert_trajectories(env, ids, progress=False)
    assert not failures and all(t.success and t.final_reward == 1.0 for t in trajs)
    assert sorted(p.name for p in tmp_path.glob("*.z8")) == ["0.z8", "1.z8", "1000000.z8", "1000001.z8"]


def test_textworld_family_settings_are_checked():
    from iprkit.envs.textworld_env import TextWorldEnv

    with pytest.raises(IprkitError, match=r"train seeds 0..1199 and test seeds 1000..1099 overlap"):
        TextWorldEnv(n_train=1200, test_start=1000)
    with pytest.raises(IprkitError, match="tw-coin_collector has no setting"):
        TextWorldEnv(preset="tw-coin_collector", challenge_settings={"levels": 2})
    with pytest.raises(IprkitError, match="write a space after each colon"):  # YAML's reading of {level:5}
        TextWorldEnv(preset="tw-coin_collector", challenge_settings={"level:5": None})
    with pytest.raises(IprkitError, match=r"rooms=\[5, 2\]; give a count"):
        TextWorldEnv(rooms=[5, 2])
    with pytest.raises(IprkitError, match="makes its own worlds"):
        TextWorldEnv(preset="tw-cooking", rooms=3)
    a, b = TextWorldEnv(rooms=4), TextWorldEnv(rooms=5)
    assert not set(a.task_ids("train")) & set(b.task_ids("train"))  # two families never share a task id
