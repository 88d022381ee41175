"""Shared fixtures: real envs over real data, never mocks.

- TextWorld games are generated into ``.cache/iprkit`` in the repo (reused across runs).
- ALFWorld and InterCode data come from ``$ALFWORLD_DATA`` / ``$INTERCODE_DATA`` or
  ``../shared/data`` beside the checkout.
- The SQL server is ``$IPRKIT_SQL_URL`` if set, else a private MariaDB on loopback,
  started once for the session (its data in a temp folder) and stopped afterwards.
"""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("IPRKIT_TEST_ARTIFACTS", REPO / "test-artifacts"))
"""Screenshots the browser tests leave (ignored by git)."""
SHARED = REPO.parent / "shared" / "data"
os.environ.setdefault("IPRKIT_CACHE", str(REPO / ".cache" / "iprkit"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _data(var: str, sub: str) -> Path:
    path = Path(os.environ.get(var) or SHARED / sub)
    if not path.exists():
        pytest.fail(f"{var} is unset and {SHARED / sub} is missing: point {var} at the data (see shared/data/README.md).")
    return path


@pytest.fixture(scope="session")
def alfworld_dir() -> Path:
    return _data("ALFWORLD_DATA", "alfworld")


@pytest.fixture(scope="session")
def intercode_dir() -> Path:
    return _data("INTERCODE_DATA", "intercode")


@pytest.fixture(scope="session")
def tw_env():
    from iprkit.envs.textworld_env import TextWorldEnv

    env = TextWorldEnv(preset="easy", n_train=20, n_test=100)
    env.prepare("test", limit=40)  # the rest is generated on first use (the slow tier replays all 100)
    yield env
    env.close()


@pytest.fixture(scope="session")
def alf_env(alfworld_dir):
    from iprkit.envs.alfworld_env import ALFWorldEnv

    env = ALFWorldEnv(data_dir=alfworld_dir)
    yield env
    env.close()


@pytest.fixture(scope="session")
def sql_server(intercode_dir):
    """(url, root-access server or None)."""
    if os.environ.get("IPRKIT_SQL_URL"):
        yield os.environ["IPRKIT_SQL_URL"], None
        return
    from iprkit.envs.mariadb import LocalMariaDB
    import json

    server = LocalMariaDB().start()
    try:
        server.load_dump(intercode_dir / "spider" / "ic_spider_dbs.sql")
        dbs = [t["db"] for t in json.loads((intercode_dir / "spider" / "ic_spider_dev.json").read_text())]
        yield server.grant_read_only(dbs), server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sql_env(sql_server, intercode_dir):
    from iprkit.envs.sql_env import SqlEnv

    env = SqlEnv(data_dir=intercode_dir, url=sql_server[0], timeout_s=2.0)
    yield env
    env.close()


def run_cli(*args, **kw):
    import subprocess

    return subprocess.run([sys.executable, "-m", "iprkit.cli", *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def tw_experts(tw_env):
    from iprkit.experts import expert_trajectories

    return expert_trajectories(tw_env, tw_env.task_ids("test")[:40], progress=False)[0]


@pytest.fixture(scope="session")
def smoke_model(tmp_path_factory, tw_experts):
    """A tiny model briefly trained on TextWorld experts (the test-scale SFT)."""
    import torch

    from iprkit.config import from_dict
    from iprkit.presets import SFT_PRESETS
    from iprkit.settings import SFTSettings
    from iprkit.sft import train_sft

    torch.set_num_threads(2)
    cfg = from_dict(SFTSettings, {**SFT_PRESETS["smoke"], "max_steps": 60, "batch_size": 8})
    return train_sft(tw_experts, cfg, tmp_path_factory.mktemp("sft"), progress=False)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """A finished smoke-preset IPR run (2 iterations): (run dir, Runner.run() result)."""
    from iprkit.config import from_dict
    from iprkit.loop import Runner
    from iprkit.settings import RunSettings
    from iprkit.presets import RUN_PRESETS

    out = tmp_path_factory.mktemp("smoke_run")
    runner = Runner(from_dict(RunSettings, {**RUN_PRESETS["smoke"], "methods": ["ipr"], "iterations": 2}), out, progress=False)
    try:
        return out, runner.run()
    finally:
        runner.close()


@pytest.fixture(scope="session")
def textcraft():
    """AgentGym's real TextCraft env server (unmodified), on loopback for the session."""
    from servers import TextCraftServer

    server = TextCraftServer().start()
    yield server
    server.stop()
