"""Monte Carlo step rewards with a scripted agent on real TextWorld games: estimates and their spread
from known rollout rewards, one computation for identical requests, and a cache that survives a torn
last line (a run killed mid-write)."""

import json
import math

import pytest

from iprkit.mc import MCCache, MCEstimate, ScoreRequest, score
from iprkit.rollout import RolloutEngine
from iprkit.settings import MCSettings


class ScriptedAgent:
    """A backend that plays a fixed policy: episode ``i`` of a run follows the gold path when
    ``wins(i)`` and otherwise looks around until the step limit. Its final rewards are known in advance."""

    def __init__(self, experts, wins):
        self.gold = {t.instruction: [s.action for s in t.steps] for t in experts}
        self.wins, self.calls, self.stats = wins, 0, {"context_drops": 0}

    def generate(self, conversations, temperature, seed, keys=None):
        self.calls += 1
        out = []
        for conv, (_, index) in zip(conversations, keys):
            done = sum(m["role"] == "assistant" for m in conv)
            gold = self.gold[conv[0]["content"].split("\n\n")[0]]
            action = gold[done] if self.wins(index) and done < len(gold) else "look"
            out.append(f"Thought: step {done}.\nAction: {action}")
        return out

    def forget(self, keys):
        pass


def _requests(experts, n_tasks=2):
    return [ScoreRequest(e.task_id, e.steps[:1]) for e in experts[:n_tasks] if len(e.steps) > 1 and not e.steps[0].done]


def _score(tw_env, experts, cache, reqs, n, wins, reuse=False):
    agent = ScriptedAgent(experts, wins)
    engine = RolloutEngine(agent, lambda: tw_env, max_live=1)  # one env: episodes run one at a time
    ests, counts = score(engine, cache, "scripted", "textworld:test", reqs, MCSettings(n=n, temperature=1.0, reuse=reuse),
                         progress=False)
    return ests, counts, agent


def test_estimate_and_spread_from_known_rewards():
    e = MCEstimate.from_rewards([1.0, 1.0, 1.0, 0.0], rollouts=[])
    assert e.mean == 0.75 and e.n == 4
    assert e.std == pytest.approx(0.5)  # sample standard deviation
    assert (e.ci_low, e.ci_high) == (pytest.approx(0.75 - 1.96 * 0.5 / 2), 1.0)  # clipped to [0, 1]
    one = MCEstimate.from_rewards([0.4], rollouts=[])
    assert (one.mean, one.std, one.ci_low, one.ci_high) == (0.4, 0.0, 0.4, 0.4)


def test_scored_rollouts_give_the_known_mean(tw_env, tw_experts, tmp_path):
    reqs = _requests(tw_experts)
    cache = MCCache(tmp_path / "mc.jsonl")
    # rollout r of request j is episode j * 4 + r: the first three of every four win, the fourth never does
    ests, counts, _ = _score(tw_env, tw_experts, cache, reqs, n=4, wins=lambda i: i % 4 < 3)
    assert counts == {"terminal": 0, "cached": 0, "computed": len(reqs), "rollouts": 4 * len(reqs),
                      "rollouts_without_reuse": 4 * len(reqs), "reused_samples": 0, "estimates_with_reused_samples": 0}
    for e in ests:
        assert e.mean == 0.75 and e.std == pytest.approx(0.5) and e.n == 4
        assert [r["success"] for r in e.rollouts] == [True, True, True, False]
        assert e.rollouts[3]["actions"] and set(e.rollouts[3]["actions"]) == {"look"}


def test_identical_requests_are_computed_once(tw_env, tw_experts, tmp_path):
    r = _requests(tw_experts, 1)[0]
    twin = ScoreRequest(r.task_id, [type(s)(**vars(s)) for s in r.steps])  # equal, not the same object
    ests, counts, _ = _score(tw_env, tw_experts, MCCache(tmp_path / "mc.jsonl"), [r, twin], n=3, wins=lambda i: True)
    assert counts["computed"] == 1 and counts["rollouts"] == 3 and ests[0] is ests[1] and ests[0].mean == 1.0


def test_terminal_steps_take_the_env_reward(tw_env, tw_experts, tmp_path):
    e = next(t for t in tw_experts if t.success)
    req = ScoreRequest(e.task_id, e.steps, terminal_reward=1.0)
    ests, counts, agent = _score(tw_env, tw_experts, MCCache(tmp_path / "mc.jsonl"), [req], n=3, wins=lambda i: False)
    assert ests[0].terminal and ests[0].mean == 1.0 and counts["rollouts"] == 0 and agent.calls == 0


def test_cache_survives_a_torn_last_line_and_keeps_appending(tw_env, tw_experts, tmp_path):
    path = tmp_path / "mc.jsonl"
    reqs = _requests(tw_experts)
    first, _, _ = _score(tw_env, tw_experts, MCCache(path), reqs[:1], n=2, wins=lambda i: i % 2 == 0)
    with path.open("a") as f:
        f.write('{"key": "abc", "estimate": {"mean": 0.5, "st')  # killed mid-write
    cache = MCCache(path)
    assert len(cache.data) == 1
    again, counts, agent = _score(tw_env, tw_experts, cache, reqs, n=2, wins=lambda i: True)
    assert counts["cached"] == 1 and counts["computed"] == len(reqs) - 1
    assert again[0].mean == first[0].mean == 0.5  # read back, not recomputed (this agent would win every rollout)
    reread = MCCache(path)  # the rows written after the torn line are readable
    assert len(reread.data) == len(reqs)
    assert all(json.loads(line)["key"] for line in path.read_text().splitlines()[-(len(reqs) - 1):])
    assert not math.isnan(reread.get(next(iter(reread.data))).mean)


# -- rollout reuse -------------------------------------------------------------------------------------------------

def _along_expert(experts, n_states=2):
    """The expert's states after 1, 2 ... actions of one task (none terminal)."""
    e = next(t for t in experts if len(t.steps) > n_states)
    return [ScoreRequest(e.task_id, e.steps[: t + 1]) for t in range(n_states)]


def test_reuse_rollouts_through_later_scored_states_replace_their_own(tw_env, tw_experts, tmp_path):
    """Every rollout follows the gold path: the 3 rollouts from the first state pass through the second, which
    then needs none of its own (3 rollouts instead of 6), with the same estimates."""
    reqs = _along_expert(tw_experts)
    plain, pc, _ = _score(tw_env, tw_experts, MCCache(tmp_path / "a.jsonl"), reqs, n=3, wins=lambda i: True)
    reused, rc, agent = _score(tw_env, tw_experts, MCCache(tmp_path / "b.jsonl"), reqs, n=3, wins=lambda i: True,
                               reuse=True)
    assert (pc["rollouts"], rc["rollouts"], rc["rollouts_without_reuse"]) == (6, 3, 6)
    assert rc["reused_samples"] == 3 and rc["estimates_with_reused_samples"] == 1
    assert [e.mean for e in reused] == [e.mean for e in plain] == [1.0, 1.0]
    assert [e.reused for e in reused] == [0, 3] and all(e.n == 3 for e in reused)
    assert all(r["reused"] for r in reused[1].rollouts) and len(agent.gold) and rc["computed"] == 2
    # a reused sample is the rest of the passing rollout: the state's prefix plus its actions is the source's
    first = reqs[0]
    for req, est in zip(reqs[1:], reused[1:]):
        gap = [s.action for s in req.steps[len(first.steps):]]
        assert all(r["actions"] == reused[0].rollouts[0]["actions"][len(gap):] for r in est.rollouts)


def test_reuse_takes_only_rollouts_that_pass_and_runs_the_rest(tw_env, tw_experts, tmp_path):
    """Half the rollouts leave the gold path at once ("look"): only the others count for the later states,
    which run what is missing of their N with their own seeds; a state no rollout passed is scored as without reuse."""
    reqs = _along_expert(tw_experts)
    wins = lambda i: i % 2 == 0
    plain, _, _ = _score(tw_env, tw_experts, MCCache(tmp_path / "a.jsonl"), reqs, n=4, wins=wins)
    reused, rc, _ = _score(tw_env, tw_experts, MCCache(tmp_path / "b.jsonl"), reqs, n=4, wins=wins, reuse=True)
    assert reused[0].mean == plain[0].mean == 0.5 and reused[0].reused == 0  # the shortest state: nothing to reuse
    # state 2 takes the 2 winning rollouts of state 1 and runs 2 of its own (episodes 4, 5: one wins)
    assert reused[1].reused == 2 and [r.get("reused") is not None for r in reused[1].rollouts] == [True, True, False, False]
    assert reused[1].mean == pytest.approx((1 + 1 + 1 + 0) / 4)
    for est in reused:
        assert est.n == 4 and est.mean == pytest.approx(sum(r["final_reward"] for r in est.rollouts) / 4)
        assert all(r["success"] for r in est.rollouts if r.get("reused"))  # only rollouts that went on along the path
    assert (rc["rollouts"], rc["rollouts_without_reuse"]) == (6, 8)
