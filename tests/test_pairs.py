"""The pair rule on hand-made reward tables, and pair construction."""

import pytest

from iprkit.config import from_dict
from iprkit.errors import IprkitError
from iprkit.pairs import build_pairs, outcome_winner, pair_stats, step_winner
from iprkit.settings import PairSettings, RunSettings
from iprkit.trajectory import Step, Trajectory


@pytest.mark.parametrize("ef,af,em,am,expected", [
    (1.0, 0.0, 0.8, 0.2, "expert"),     # expert better on both
    (0.0, 1.0, 0.2, 0.8, "agent"),      # agent better on both
    (1.0, 0.0, 0.2, 0.8, None),         # split decision: no pair
    (1.0, 0.995, 0.8, 0.2, None),       # final rewards within the margin
    (1.0, 0.0, 0.505, 0.5, None),       # step rewards within the margin
    (1.0, 0.98, 0.52, 0.5, "expert"),   # just beyond both margins
    (0.5, 0.5, 1.0, 0.0, None),         # tie on final reward
])
def test_step_rule(ef, af, em, am, expected):
    assert step_winner(ef, af, em, am, 0.01, 0.01) == expected


def test_margins_are_config():
    assert step_winner(1.0, 0.9, 0.9, 0.85, final_margin=0.2, step_margin=0.01) is None
    assert step_winner(1.0, 0.9, 0.9, 0.85, final_margin=0.05, step_margin=0.01) == "expert"
    assert outcome_winner(1.0, 1.0) is None and outcome_winner(0.0, 1.0) == "agent"


def _traj(actions, final, source="expert"):
    steps = [Step(action=a, observation=f"obs after {a}", thought=f"t {a}", done=i == len(actions) - 1)
             for i, a in enumerate(actions)]
    return Trajectory(env="textworld", task_id="t1", instruction="do", observation="start", steps=steps,
                      final_reward=final, success=final == 1.0, source=source)


def test_build_pairs_entire_and_single():
    expert = _traj(["a", "b", "c"], 1.0)
    # the agent branches: at t=0 it goes x (fails), at t=1 it plays b like the expert, at t=2 it plays z and wins
    branches = {0: _traj(["x", "y"], 0.0, "agent"), 1: _traj(["a", "b", "q"], 0.0, "agent"),
                2: _traj(["a", "b", "z"], 1.0, "agent")}
    emc, amc = {0: 0.9, 1: 0.8, 2: 1.0}, {0: 0.1, 1: 0.3, 2: 1.0}
    pairs, rows = build_pairs(expert, branches, emc, amc, PairSettings(mode="entire"))
    kinds = sorted((p["kind"], p["step"], p["winner"]) for p in pairs)
    assert kinds == [("outcome", 0, "expert"), ("step", 0, "expert")]  # t=1 same action, t=2 tie
    step = next(p for p in pairs if p["kind"] == "step")
    assert step["prompt"] == expert.messages()[:1]
    assert [m["content"] for m in step["chosen"] if m["role"] == "assistant"] == [s.turn() for s in expert.steps]
    assert step["rejected"][0]["content"] == branches[0].steps[0].turn() and len(step["rejected"]) == 3
    single, _ = build_pairs(expert, branches, emc, amc, PairSettings(mode="single-step", outcome_pairs=False))
    assert len(single) == 1 and single[0]["chosen"] == [{"role": "assistant", "content": expert.steps[0].turn()}]
    stats = pair_stats(pairs, rows)
    assert stats == {"steps_compared": 3, "same_action_steps": 1, "step_pairs": 1, "outcome_pairs": 1,
                     "step_expert_won": 1, "step_agent_won": 0, "outcome_expert_won": 1, "outcome_agent_won": 0}


def test_agent_can_win_and_prompt_is_the_expert_prefix():
    expert = _traj(["a", "b", "c"], 0.5)
    branches = {1: _traj(["a", "k"], 1.0, "agent")}
    pairs, _ = build_pairs(expert, branches, {1: 0.4}, {1: 0.9}, PairSettings())
    (p,) = pairs
    assert p["winner"] == "agent" and p["prompt"] == expert.messages()[:3]
    assert p["chosen"][0]["content"] == branches[1].steps[1].turn()


def test_switches_turn_kinds_off():
    expert = _traj(["a", "b"], 1.0)
    branches = {0: _traj(["x"], 0.0, "agent")}
    assert build_pairs(expert, branches, {0: 1.0}, {0: 0.0}, PairSettings(step_pairs=False))[0][0]["kind"] == "outcome"
    assert build_pairs(expert, branches, {0: 1.0}, {0: 0.0}, PairSettings(outcome_pairs=False))[0][0]["kind"] == "step"


def test_score_requests_can_skip_steps_where_the_agent_took_the_experts_action():
    from iprkit.explore import score_requests

    expert = _traj(["a", "b", "c"], 1.0)
    branches = {"t1": {0: _traj(["a", "y", "w"], 0.0, "agent"), 1: _traj(["a", "q", "v"], 0.0, "agent"),
                       2: _traj(["a", "b", "c"], 1.0, "agent")}}
    every = [tag for _, tag in score_requests([expert], branches)]
    assert every == [("t1", t, side) for t in (0, 1, 2) for side in ("expert", "agent")]
    differing = [(tag, [s.action for s in r.steps]) for r, tag in score_requests([expert], branches, same_action=False)]
    assert differing == [(("t1", 1, "expert"), ["a", "b"]), (("t1", 1, "agent"), ["a", "q"])]


def test_unknown_mode_is_refused():
    """A typo must not silently fall back to the paper's ``entire`` mode."""
    with pytest.raises(IprkitError, match="pairs.mode='single'.*single-step"):
        PairSettings(mode="single")
    with pytest.raises(IprkitError, match="pairs.mode"):
        from_dict(RunSettings, {"pairs": {"mode": "whole"}})
