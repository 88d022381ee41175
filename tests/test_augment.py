"""Entity renaming: consistent, case-preserving, article-fixing, deterministic, and loud
when a trajectory carries no entities."""

import re

import pytest

from iprkit.augment import name_pool, rename, renamed_copies
from iprkit.errors import IprkitError
from iprkit.trajectory import Step, Trajectory


def _traj(task="t0", ents=None):
    return Trajectory(
        env="textworld", task_id=task,
        instruction="Your task: take the apple from the Canadian style box, then put the apple on the table.",
        observation="-= Attic =-\nYou see a Canadian style box. The Canadian style box contains an apple and a box key.",
        steps=[Step(action="take apple from Canadian style box", observation="You take the apple from the Canadian style box.",
                    thought="I can see the apple in the Canadian style box."),
               Step(action="put apple on table", observation="Apple placed. Your score went up.", thought="Done.",
                    reward=1.0, done=True)],
        final_reward=1.0, success=True, source="expert",
        meta={"entities": ents or {"apple": "f", "Canadian style box": "c", "box key": "k", "table": "s", "attic": "r"}})


def test_rename_is_consistent_case_preserving_and_fixes_articles():
    t = _traj()
    r = rename(t, {"apple": "pear", "Canadian style box": "box", "table": "end table", "attic": "Spare Room"})
    assert r.steps[0].action == "take pear from box" and r.steps[1].action == "put pear on end table"
    assert "-= Spare Room =-" in r.observation and "contains a pear and a box key" in r.observation
    assert r.steps[1].observation.startswith("Pear placed")  # sentence case kept
    texts = [r.instruction, r.observation] + [x for s in r.steps for x in (s.action, s.observation, s.thought)]
    assert not any(re.search(r"\bapple\b|Canadian style", x, re.I) for x in texts)
    assert "box key" in r.observation  # a longer name that merely contains a renamed word is its own entity
    assert t.steps[0].action == "take apple from Canadian style box"  # the original is untouched
    assert r.meta["entities"]["pear"] == "f" and r.meta["renamed_from"] == "t0"


def test_renamed_copies_draw_same_kind_names_deterministically():
    trajs = [_traj("a"), _traj("b", {"banana": "f", "chest": "c", "box key": "k", "table": "s", "attic": "r"})]
    pool = name_pool(trajs)
    assert pool["f"] == ["apple", "banana"] and pool["c"] == ["Canadian style box", "chest"]
    one, two = renamed_copies(trajs, 2, seed=3), renamed_copies(trajs, 2, seed=3)
    assert [c.steps[0].action for c in one] == [c.steps[0].action for c in two] and len(one) == 4
    assert one[0].steps[0].action == "take banana from chest"  # each entity swapped for the other name of its kind
    assert renamed_copies(trajs, 0) == []


def test_renaming_without_entities_is_a_clear_error():
    t = _traj()
    t.meta = {}
    with pytest.raises(IprkitError, match="meta\\['entities'\\].*augment_copies=0"):
        renamed_copies([t], 1)


def test_copy_warmup_data_repeats_a_span_of_the_trajectories_words():
    from iprkit.sft import copy_dataset

    trajs = [_traj("a"), _traj("b")]
    words = {w for t in trajs for x in (t.instruction, t.observation, *(s.observation for s in t.steps)) for w in x.split()}
    ds = copy_dataset(trajs, 20, seed=1)
    assert len(ds) == 20 and ds[0]["text"] == copy_dataset(trajs, 20, seed=1)[0]["text"]
    for text in ds["text"]:
        first, second = text.split("\n")
        assert first == second and 8 <= len(first.split()) <= 24 and set(first.split()) <= words
