"""Env plug-ins: a package outside the kit adds an env through the ``iprkit.envs`` entry-point group,
with no change to the kit; the built-in envs register the same way."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from iprkit.envs import canonical, describe, env_class, installed, make_env
from iprkit.errors import IprkitError

PLUGIN = REPO / "tests" / "plugin_env"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """The test package, installed by pip into a folder of its own (put on PYTHONPATH by the tests)."""
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(PLUGIN)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(target.glob("iprkit_lights-*.dist-info/entry_points.txt"))
    return target


def _cli(plugin_path, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "iprkit.cli", *args], capture_output=True, text=True, env=env)


def test_builtin_envs_register_as_entry_points():
    eps = installed()
    assert {"textworld", "alfworld", "sql"} <= set(eps)
    assert all(eps[n].dist.name == "iprkit" for n in ("textworld", "alfworld", "sql"))
    assert canonical("intercode-sql") == "sql" and canonical("tw") == "textworld"
    rows = {r["name"]: r for r in describe()}
    assert "intercode-sql" in rows["sql"]["aliases"] and rows["textworld"]["options"]["preset"][0] == "easy"
    assert rows["alfworld"]["test_splits"] == ["valid_seen", "valid_unseen"]


def test_an_env_from_outside_is_listed_and_runs_through_experts(plugin_path, tmp_path):
    r = _cli(plugin_path, "envs")
    assert r.returncode == 0, r.stderr
    assert "lights: Lamps to switch on in a given order" in r.stdout and "from iprkit-lights" in r.stdout
    assert "n_lamps = 3  lamps per task" in r.stdout and "textworld (aliases: tw)" in r.stdout
    out = tmp_path / "lights.jsonl"
    r = _cli(plugin_path, "experts", "--env", "lights", "--split", "train", "--limit", "5", "--env-opt", "n_lamps=4",
             "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "lights train: 5/5 expert trajectories replay to success" in r.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(len(t["steps"]) == 4 and t["final_reward"] == 1.0 for t in rows)
    r = _cli(plugin_path, "experts", "--env", "lights", "--env-opt", "n_bulbs=2", "--out", str(out))
    assert r.returncode == 2 and "env 'lights': bad setting" in r.stderr and "n_lamps" in r.stderr


def test_a_plugin_is_loaded_in_process(plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_path))
    installed.cache_clear()
    try:
        env = make_env("lights", n_lamps=2)
        instruction, _ = env.reset(env.task_ids("test")[0])
        for a in env.expert(env.task_ids("test")[0]):
            env.step(a)
        assert env.success() and env.final_reward() == 1.0 and instruction.startswith("Switch on")
    finally:
        installed.cache_clear()


def test_not_an_env_class_is_refused(monkeypatch):
    from importlib.metadata import EntryPoint

    fake = EntryPoint("notanenv", "json:dumps", "iprkit.envs")
    monkeypatch.setattr("iprkit.envs.installed", lambda: {**installed(), "notanenv": fake})
    with pytest.raises(IprkitError, match="json:dumps is not a subclass of iprkit.envs.Env"):
        env_class("notanenv")
