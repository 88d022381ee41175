"""The same SFT and evaluation code on ALFWorld and InterCode-SQL, at smoke scale."""

import json

import pytest
import torch

from conftest import run_cli
from iprkit.backends import HFBackend
from iprkit.config import from_dict
from iprkit.evaluate import evaluate_model
from iprkit.experts import expert_trajectories
from iprkit.layout import EvalPaths
from iprkit.models import load_model
from iprkit.presets import SFT_PRESETS
from iprkit.settings import GenerationSettings, SFTSettings
from iprkit.sft import train_sft


def _sft(trajs, out):
    torch.set_num_threads(2)
    cfg = from_dict(SFTSettings, {**SFT_PRESETS["smoke"], "max_steps": 4, "batch_size": 2})
    return train_sft(trajs, cfg, out, progress=False)


@pytest.mark.slow
def test_alfworld_sft_and_eval_seen_unseen_apart(alf_env, alfworld_dir, tmp_path):
    trajs, _ = expert_trajectories(alf_env, alf_env.task_ids("train")[:6], progress=False)
    model_dir = _sft(trajs, tmp_path / "trained")
    r = run_cli("eval", "--model", str(model_dir), "--env", "alfworld", "--alfworld-data", str(alfworld_dir),
                "--limit", "2", "--env-opt", "max_steps=2", "--out", str(tmp_path / "evaluated"), "max_new_tokens=16")
    assert r.returncode == 0, r.stderr[-2000:]
    ev = EvalPaths(tmp_path / "evaluated")
    report = json.loads(ev.summary.read_text())
    assert set(report) >= {"valid_seen", "valid_unseen"}
    assert all(report[s]["episodes"] == 2 and report[s]["avg_steps"] <= 2 for s in ("valid_seen", "valid_unseen"))
    assert "alfworld valid_seen: success" in r.stdout and "alfworld valid_unseen: success" in r.stdout
    rows = ev.tasks("valid_unseen").read_text().splitlines()
    assert len(rows) == 2 and json.loads(rows[0])["task_id"].startswith("valid_unseen/")


def test_sql_sft_and_eval(sql_env, sql_server, intercode_dir, tmp_path):
    from iprkit.envs.sql_env import SqlEnv

    trajs, _ = expert_trajectories(sql_env, sql_env.task_ids("train")[:8], progress=False)
    model_dir = _sft(trajs, tmp_path / "trained")
    model, tok = load_model(model_dir)
    make = lambda: SqlEnv(data_dir=intercode_dir, url=sql_server[0], timeout_s=2.0, max_steps=2)
    metrics, out = evaluate_model(HFBackend(model, tok, GenerationSettings(max_new_tokens=24)), make,
                                  sql_env.task_ids("test")[:3], progress=False)
    assert metrics["episodes"] == 3 and 0.0 <= metrics["avg_reward"] <= 1.0
    assert all(1 <= len(t.steps) <= 2 for t in out) and all(t.env == "sql" for t in out)
