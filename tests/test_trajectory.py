"""Trajectories: JSONL, the IPR/ETO conversation format, datasets."""

import json

import pytest

from iprkit.errors import IprkitError
from iprkit.prompts import format_agent_turn, parse_agent_turn
from iprkit.release import from_conversations, to_conversations
from iprkit.trajectory import Step, Trajectory, load_trajectories, save_trajectories, to_dataset


def _traj(n=3):
    steps = [Step(action=f"go east {i}", observation=f"room {i}", thought=f"why {i}", reward=float(i == n - 1),
                  done=i == n - 1) for i in range(n)]
    return Trajectory(env="textworld", task_id="easy-7", instruction="Do it.", observation="You are here.",
                      steps=steps, final_reward=1.0, success=True, meta={"seed": 7})


def test_jsonl_round_trip(tmp_path):
    trajs = [_traj(3), _traj(1)]
    path = save_trajectories(tmp_path / "t.jsonl", trajs)
    assert load_trajectories(path) == trajs
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_traj().to_dict()) + "\n\n{not json\n")
    with pytest.raises(IprkitError, match=r"bad\.jsonl:3: not valid JSON"):
        load_trajectories(path)
    path.write_text(json.dumps({"env": "x"}) + "\n")
    with pytest.raises(IprkitError, match=r"bad\.jsonl:1: missing field"):
        load_trajectories(path)


def test_conversation_format_round_trip():
    t = _traj(3)
    item = to_conversations(t)
    conv = item["conversations"]
    assert [c["from"] for c in conv[:3]] == ["human", "gpt", "human"] and conv[1]["value"] == "OK"
    assert conv[3]["value"] == "Thought: why 0\nAction: go east 0"
    assert conv[4]["value"] == "Observation: room 0"
    back = from_conversations(json.loads(json.dumps(item)))
    assert (back.instruction, back.observation, back.final_reward, back.success) == (t.instruction, t.observation, 1.0, True)
    assert [(s.thought, s.action, s.observation) for s in back.steps] == [(s.thought, s.action, s.observation) for s in t.steps]


def test_reads_the_papers_release_format():
    item = {"id": "webshop_0", "conversations": [
        {"from": "human", "value": "You are web shopping. ..."}, {"from": "gpt", "value": "OK"},
        {"from": "human", "value": "Observation: WebShop [SEP] Instruction"},
        {"from": "gpt", "value": "Thought: I search.\nAction: search[shoes]"},
        {"from": "human", "value": "Observation: results"},
        {"from": "gpt", "value": "I click without a thought label\nAction: click[b01]"}]}
    t = from_conversations(item, env="webshop")
    assert t.task_id == "webshop_0" and t.env == "webshop" and t.final_reward is None
    assert [s.action for s in t.steps] == ["search[shoes]", "click[b01]"]
    assert t.steps[0].observation == "results" and t.steps[1].thought == "I click without a thought label"
    with pytest.raises(IprkitError, match="turn 1"):
        from_conversations({"conversations": [{"from": "human", "value": "x"}, {"from": "bot", "value": "y"}]})


def test_messages_and_dataset():
    t = _traj(2)
    msgs = t.messages()
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[0]["content"].startswith("Do it.") and "You are here." in msgs[0]["content"]
    ds = to_dataset([t, _traj(3)])
    assert len(ds) == 2 and ds[1]["n_steps"] == 3 and ds[0]["messages"][1]["content"].startswith("Thought:")


@pytest.mark.parametrize("text,expected", [
    ("Thought: a\nAction: go west", ("a", "go west")),
    ("Thought: multi\nline\nAction: take key\nAction: ignored", ("multi\nline", "take key")),
    ("just rambling", ("just rambling", None)),
    ("Action:   ", ("", None)),
])
def test_parse_agent_turn_never_crashes(text, expected):
    assert parse_agent_turn(text) == expected


def test_format_parse_inverse():
    assert parse_agent_turn(format_agent_turn(" x ", " y ")) == ("x", "y")
