"""AgentGym env servers over HTTP: AgentGym's real TextCraft server, gold paths from its crafting
commands, clear errors for every way a server can fail, and a stage that fails cleanly when the
server dies and resumes after."""

import socket

import pytest

from conftest import run_cli
from iprkit.envs import make_env
from iprkit.errors import IprkitError
from iprkit.experts import expert_trajectories
from servers import TextCraftServer, free_port


def test_textcraft_experts_replay_to_success(textcraft):
    with make_env("agentgym", url=textcraft.url) as env:
        ids = env.task_ids("train")[:25] + env.task_ids("test")[:25]
        trajs, failures = expert_trajectories(env, ids, progress=False)
        assert not failures and len(trajs) == 50 and all(t.success and t.final_reward == 1.0 for t in trajs)
        t = trajs[0]
        assert t.instruction.startswith("You are in a Minecraft crafting world.") and "Goal: craft" in t.instruction
        assert t.observation.startswith("Crafting commands:") and t.steps[-1].action.startswith("craft ")
        # a wrong action gets the env's own answer, never an exception
        env.reset(ids[0])
        r = env.step("craft 1 diamond using 1 dirt")
        assert not r.done and "Could not" in r.observation and env.final_reward() == 0.0


def test_the_servers_extras_are_read_after_every_step(textcraft):
    """``actions_path`` reads a server extra into admissible_commands (a JSON list, or text one item a line).
    TextCraft has no list of actions (its /commands route is broken: HTTP 500, reported as such), so this reads
    its /observation extra, whose lines must be what reset and step answered."""
    with make_env("agentgym", url=textcraft.url, actions_path="/observation") as env:
        _, obs = env.reset("textcraft-3")
        assert env.admissible_commands == [line.strip() for line in obs.splitlines() if line.strip()]
        r = env.step("inventory")
        assert env.admissible_commands == [r.observation.strip()]
    with make_env("agentgym", url=textcraft.url, actions_path="/commands") as env:
        with pytest.raises(IprkitError, match="GET /commands answered HTTP 500"):
            env.reset("textcraft-3")


def test_experts_cli_over_http(textcraft, tmp_path):
    r = run_cli("experts", "--env", "agentgym", "--env-opt", f"url={textcraft.url}", "--split", "test",
                "--limit", "10", "--out", str(tmp_path / "tc.jsonl"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "agentgym test: 10/10 expert trajectories replay to success" in r.stdout


def test_server_errors_are_clear(textcraft):
    with pytest.raises(IprkitError, match="url=None; give the env server's base URL"):
        make_env("agentgym")
    with pytest.raises(IprkitError, match=r"train indices 0..99 and test indices 0..49 overlap"):
        make_env("agentgym", url=textcraft.url, train_start=0)
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(IprkitError, match=rf"agentgym server at {closed}: POST /create got no answer"):
        make_env("agentgym", url=closed).reset("textcraft-0")
    # the server answers {"error": ...}: an instance id it does not know
    env = make_env("agentgym", url=textcraft.url)
    env._id = 10_000
    with pytest.raises(IprkitError, match=r"POST /reset failed on the server: The id 10000 is not valid"):
        env.reset("textcraft-1")
    # a server that accepts the connection and never answers: the call times out with a message
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        stuck = make_env("agentgym", url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)
        with pytest.raises(IprkitError, match=r"got no answer .*timeout_s=0.5"):
            stuck.reset("textcraft-0")


@pytest.mark.slow
def test_smoke_run_over_http_fails_cleanly_when_the_server_dies_and_resumes(tmp_path):
    """The whole pipeline (SFT, ETO, IPR with Monte Carlo) on TextCraft over HTTP; the server is killed before
    the run evaluates: the stage fails naming the server, and after a restart the rerun resumes."""
    server = TextCraftServer().start()
    out = tmp_path / "run"
    args = ["run", "--preset", "smoke", "--out", str(out), "env=agentgym", f"env_kwargs.url={server.url}", "n_eval=4",
            "n_explore=3"]
    try:
        r = run_cli(*args, "--stop-after", "seed0/sft")
        assert r.returncode == 0, r.stderr[-3000:]
        server.stop()
        r = run_cli(*args)
        assert r.returncode == 2 and f"agentgym server at {server.url}" in r.stderr and "got no answer" in r.stderr
        assert "Traceback" not in r.stderr
        server.start()
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        server.stop()
    assert "| ipr | 1 |" in r.stdout and "| eto | 1 |" in r.stdout
    assert "experts:" not in r.stdout  # the expert stage was done: it did not run again
