"""Bring your own data: the paper's release format (SFT and preference items) imported, replayed with a
per-item report and exported back; presets whose env settings do not follow the user to another env;
expert paths longer than the step limit refused with the numbers."""

import json
import os

import pytest

from conftest import run_cli
from iprkit.errors import IprkitError
from iprkit.experts import expert_trajectories
from iprkit.release import (from_conversations, import_sft, pair_from_release, pair_to_release, read_items,
                            release_preamble, to_conversations)

PROMPT = ("Interact with a household to solve a task. You are an agent in a household; each turn, first think, then "
          "act. Your output must follow the format \"Thought: ...\\nAction: ...\".\n")
"""A release-style instruction (turn 0), the same for every item, as in the paper's files."""


def paper_item(i, game_file, actions, task, room):
    """One ALFWorld item laid out as the paper's SFT files are: the task sentence inside the first observation."""
    conv = [{"from": "human", "value": PROMPT}, {"from": "gpt", "value": "OK"},
            {"from": "human", "value": f"{room}\nYour task is to: {task}"}]
    for k, a in enumerate(actions):
        conv.append({"from": "gpt", "value": f"Thought: step {k} of the plan.\nAction: {a}"})
        if k < len(actions) - 1:
            conv.append({"from": "human", "value": f"Observation: (as the release recorded it, step {k})"})
    return {"id": f"alfworld_{i}", "game_file": game_file, "conversations": conv}


@pytest.fixture(scope="module")
def alf_release(alf_env, tmp_path_factory):
    """A release file in the paper's SFT layout: three train games (game_file with a foreign absolute prefix),
    one game the data does not hold, one whose actions are another game's."""
    tasks = [t for t in alf_env.task_ids("train") if len(alf_env.expert(t)) <= alf_env.max_steps][:3]
    items = []
    for i, t in enumerate(tasks):
        instruction, room = alf_env.reset(t)
        task = instruction.split("Your task is to: ")[-1]
        items.append(paper_item(i, f"/home/someone/alfworld/json_2.1.1/{t}/game.tw-pddl", alf_env.expert(t), task, room))
    items.append(paper_item(3, "json_2.1.1/train/no_such_task/trial_0/game.tw-pddl", ["look"], "nothing", "a room"))
    items.append({**items[1], "id": "alfworld_4", "conversations": items[0]["conversations"][:3] + items[2]["conversations"][3:]})
    path = tmp_path_factory.mktemp("release") / "alfworld_sft.json"
    path.write_text(json.dumps(items))
    return path, tasks


def test_alfworld_release_items_replay_with_a_report(alf_env, alf_release, alfworld_dir):
    from iprkit.envs.alfworld_env import ALFWorldEnv

    path, tasks = alf_release
    items = read_items(path)
    assert release_preamble(items) == PROMPT
    with ALFWorldEnv(data_dir=alfworld_dir, preamble=PROMPT) as env:
        trajs, report = import_sft(env, items, progress=False)
    assert [t.task_id for t in trajs] == tasks and all(t.success and t.final_reward == 1.0 for t in trajs)
    assert all(t.instruction.startswith(PROMPT + "Your task is to: ") for t in trajs)  # the paper's prompt, verbatim
    assert trajs[0].steps[0].thought == "step 0 of the plan." and "as the release recorded" not in trajs[0].steps[0].observation
    rows = {r["id"]: r for r in report}
    assert [rows[f"alfworld_{i}"]["replayed"] for i in range(5)] == [True, True, True, False, False]
    assert rows["alfworld_3"]["task_id"] is None and "names no alfworld task" in rows["alfworld_3"]["why"]
    assert rows["alfworld_4"]["task_id"] == tasks[1] and "not success" in rows["alfworld_4"]["why"]


@pytest.mark.slow
def test_release_file_through_the_cli_and_a_run(alf_release, alfworld_dir, tmp_path):
    path, tasks = alf_release
    out = tmp_path / "experts.jsonl"
    r = run_cli("import", "--env", "alfworld", "--alfworld-data", str(alfworld_dir), str(path), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "3/5 release items replayed to success" in r.stdout and "item 3 (id 'alfworld_3'" in r.stdout
    assert len(out.read_text().splitlines()) == 3
    run = tmp_path / "run"
    r = run_cli("run", "--preset", "smoke", "--out", str(run), "env=alfworld", f"experts_file={path}", "methods=[sft]",
                "n_eval=1", "eval_splits=[valid_seen]", "sft.max_steps=5", "generation.max_new_tokens=8",
                env={**os.environ, "ALFWORLD_DATA": str(alfworld_dir)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "experts: 3 of 5 train tasks replayed to success; 2 skipped" in r.stdout and "| sft | 0 |" in r.stdout


def test_export_and_import_round_trip(tw_env, tw_experts):
    trajs = tw_experts[:4]
    items = [to_conversations(t, extra=tw_env.release_fields(t.task_id)) for t in trajs]
    back, report = import_sft(tw_env, json.loads(json.dumps(items)), progress=False)
    assert all(r["replayed"] for r in report)
    key = lambda t: (t.task_id, t.instruction, t.observation, [(s.thought, s.action, s.observation) for s in t.steps])
    assert [key(t) for t in back] == [key(t) for t in trajs]
    again = [to_conversations(t) for t in back]
    assert [a["conversations"] for a in again] == [i["conversations"] for i in items]


def test_preference_items_round_trip():
    item = {"id": "p1", "prompt": [{"from": "human", "value": "task"}],
            "chosen": [{"from": "gpt", "value": "Thought: a\nAction: go"}, {"from": "human", "value": "ok"},
                       {"from": "gpt", "value": "Thought: b\nAction: take"}],
            "rejected": [{"from": "gpt", "value": "Thought: c\nAction: look"}]}
    pair = pair_from_release(item)
    assert pair["prompt"] == [{"role": "user", "content": "task"}] and pair["chosen"][1]["role"] == "user"
    assert pair_to_release(pair) == item
    with pytest.raises(IprkitError, match="chosen turn 0"):
        pair_from_release({**item, "chosen": [{"from": "bot", "value": "x"}]})


def test_sql_items_map_by_their_question(sql_env):
    task = sql_env.task_ids("test")[3]
    question = sql_env.task(task)["query"]
    item = {"id": "intercode_sql_7", "conversations": [{"from": "human", "value": "You are a SQL agent."},
                                                       {"from": "gpt", "value": "OK"},
                                                       {"from": "human", "value": f"Question: {question}"}]}
    assert sql_env.release_task_id(item) == task
    assert sql_env.release_task_id({**item, "conversations": item["conversations"][:2]}) is None
    assert from_conversations(item, "sql", task_id=task).task_id == task


def test_a_preset_keeps_its_env_settings_to_its_env():
    from iprkit.presets import RUN_PRESETS, run_settings

    assert run_settings("smoke", None, ["env=alfworld"]).env_kwargs == {}
    tw = run_settings("smoke", None, ["env_kwargs.preset=hard"]).env_kwargs
    assert tw == {**RUN_PRESETS["smoke"]["env_kwargs"], "preset": "hard"}
    assert run_settings("smoke", None, ["env=tw"]).env_kwargs == RUN_PRESETS["smoke"]["env_kwargs"]  # an alias


def test_gold_paths_over_the_step_limit_are_refused_with_the_numbers(tw_env):
    from iprkit.envs.textworld_env import TextWorldEnv

    ids = tw_env.task_ids("test")[:6]
    longest = max(len(tw_env.expert(t)) for t in ids)
    with TextWorldEnv(n_test=100, max_steps=longest - 1) as short:
        with pytest.raises(IprkitError, match=rf"of 6 gold paths are longer than the step limit max_steps={longest - 1} "
                                              rf"\(the longest, task .*, has {longest} steps\).*max_steps={longest}"):
            expert_trajectories(short, ids, progress=False)
