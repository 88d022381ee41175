"""Rollouts from real OpenAI-compatible LLM servers, started by the tests on loopback and stopped by PID:
``transformers serve`` (from this venv) and vLLM's CPU build (in a venv of its own, made on first use).

On the same tiny model and prompts, greedy turns from each server equal the in-process backend's; sampled
episodes repeat under their seeds; a replica that stops answering is dropped and its episodes finish
elsewhere; a whole IPR iteration runs with the kit launching a server for each stage."""

import pytest
import torch

from iprkit.backends import HFBackend
from iprkit.envs.textworld_env import TextWorldEnv
from iprkit.errors import IprkitError
from iprkit.models import load_model
from iprkit.rollout import EpisodeSpec, RolloutEngine
from iprkit.server import server_backend
from iprkit.serving import LaunchedServer, check_launcher
from iprkit.settings import GenerationSettings, ServerSettings

GEN = GenerationSettings(max_new_tokens=32)


def _prompts(experts, n=24):
    """Conversations at several points of expert trajectories (first turns and later ones)."""
    out = []
    for e in experts:
        msgs = e.messages()
        out += [msgs[:k] for k in range(1, len(msgs), 2)]
    return out[:n]


@pytest.fixture(scope="module")
def hf(smoke_model):
    torch.set_num_threads(2)
    model, tok = load_model(smoke_model)
    return HFBackend(model, tok, GEN)


def _episodes(backend, ids, **spec):
    engine = RolloutEngine(backend, lambda: TextWorldEnv(n_test=100), max_live=8, seed=11)
    try:
        return engine.run([EpisodeSpec(t, **spec) for t in ids], progress=False)
    finally:
        for e in engine._envs:
            e.close()


def _key(trajs):
    return [(t.task_id, [(s.thought, s.action) for s in t.steps], t.final_reward) for t in trajs]


def _server(smoke_model, kind, **kw):
    from servers import vllm_python

    python = str(vllm_python()) if kind == "vllm" else ""
    settings = ServerSettings(backend="server", kind=kind, launch=True, python=python,
                              prompt="text" if kind == "transformers" else "tokens", concurrency=8, **kw)
    return server_backend(smoke_model, GEN, settings, threads=1)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformers", "vllm"])
def test_greedy_turns_and_episodes_equal_the_in_process_backend(kind, smoke_model, hf, tw_env, tw_experts):
    backend = _server(smoke_model, kind)
    try:
        assert backend.owned.proc.poll() is None
        convs = _prompts(tw_experts)
        assert backend.generate(convs) == hf.generate(convs)  # turn by turn, from token ids where vLLM returns them
        ids = tw_env.task_ids("test")[:6]
        assert _key(_episodes(backend, ids, max_model_steps=4)) == _key(_episodes(hf, ids, max_model_steps=4))
        assert backend.stats["calls"] > len(convs) and backend.replicas.stats["retries"] == 0
        if kind == "vllm":  # seeds per request: sampled episodes repeat, another seed differs; n samples per request
            specs = dict(temperature=1.0, max_model_steps=3)
            a, b = _episodes(backend, ids[:4], **specs), _episodes(backend, ids[:4], **specs)
            assert _key(a) == _key(b)
            four = backend.complete(convs[0], temperature=1.0, seed=5, n=4)
            assert len(four) == 4 and len(set(four)) > 1 and four == backend.complete(convs[0], 1.0, 5, n=4)
        proc = backend.owned.proc
    finally:
        backend.close()
    assert proc.poll() is not None  # stopped with the backend


@pytest.mark.slow
def test_vllm_serves_a_lora_policy_by_name_over_its_base(smoke_model, tw_experts, tmp_path):
    """A LoRA policy folder: vLLM serves its base once with the adapter loaded by name; greedy turns equal the
    in-process backend's on the merged policy, and differ from the base's (the adapter is applied)."""
    from peft import LoraConfig, get_peft_model

    base, tok = load_model(smoke_model, trainable=True)
    torch.manual_seed(0)
    policy = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                             init_lora_weights=False, task_type="CAUSAL_LM"))
    policy.save_pretrained(tmp_path / "policy")
    tok.save_pretrained(tmp_path / "policy")
    convs = _prompts(tw_experts)
    merged = HFBackend(*load_model(tmp_path / "policy"), GEN).generate(convs)
    assert merged != HFBackend(*load_model(smoke_model), GEN).generate(convs)
    backend = _server(tmp_path / "policy", "vllm")
    try:
        assert backend.model == "policy"
        assert backend.generate(convs) == merged
    finally:
        backend.close()


@pytest.mark.slow
def test_a_replica_that_stops_answering_is_dropped_and_every_episode_finishes(smoke_model, hf, tw_env, capsys):
    a = LaunchedServer("transformers", smoke_model).start()
    b = LaunchedServer("transformers", smoke_model).start()
    try:
        settings = ServerSettings(backend="server", kind="transformers", prompt="text", urls=[a.url, b.url],
                                  concurrency=4, retries=2, backoff_s=0.05)
        backend = server_backend(smoke_model, GEN, settings)
        b.stop()  # the second replica dies before the stage sends its first request
        ids = tw_env.task_ids("test")[:6]
        got = _episodes(backend, ids, max_model_steps=3)
        assert _key(got) == _key(_episodes(hf, ids, max_model_steps=3))
        assert list(backend.replicas.dropped) == [b.url] and backend.replicas.alive == [a.url]
        assert backend.replicas.stats["retries"] >= 3
        assert f"LLM server {b.url} dropped after 3 failed tries" in capsys.readouterr().out
        a.stop()  # the last one too: the stage fails, naming both and how to go on
        with pytest.raises(IprkitError, match="every LLM server replica stopped answering.*rerun"):
            _episodes(backend, ids[:1], max_model_steps=1)
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
def test_an_ipr_iteration_on_launched_servers_explores_and_evaluates_as_in_process(smoke_model, tmp_path):
    """Greedy stages (exploration, evaluation) give the same artifacts whichever backend runs them; Monte Carlo
    scoring runs on a server launched on the SFT scorer, then stopped."""
    from iprkit.config import from_dict
    from iprkit.io import read_jsonl
    from iprkit.layout import RunLayout
    from iprkit.loop import Runner
    from iprkit.presets import RUN_PRESETS
    from iprkit.settings import RunSettings

    def run(out, **server):
        cfg = from_dict(RunSettings, {**RUN_PRESETS["smoke"], "methods": ["ipr"], "sft_model": str(smoke_model),
                                      "server": server})
        runner = Runner(cfg, out, progress=False)
        try:
            runner.run()
        finally:
            runner.close()
        return RunLayout(out)

    local = run(tmp_path / "hf")
    served = run(tmp_path / "server", backend="server", kind="transformers", launch=True, prompt="text")
    for lay in (local, served):
        assert lay.iteration(0, "ipr", 1).step_rewards.exists()
    rows = lambda p: [r for _, r in read_jsonl(p)]
    for paths in (lambda l: l.iteration(0, "ipr", 1).explore, lambda l: l.eval(0, "ipr", 1).tasks("test"),
                  lambda l: l.eval(0, "sft", 0).tasks("test"), lambda l: l.eval(0, "ipr", 1).tasks("explored")):
        assert rows(paths(served)) == rows(paths(local))
    logs = sorted(served.servers.glob("*/server.log"))
    # one server per stage that rolls out: SFT eval (test, explored), exploration, scoring, IPR eval (test, explored)
    assert len(logs) == 6
    assert not (local.servers).exists()


def test_launch_refuses_a_missing_interpreter_or_package_and_a_taken_port(tmp_path, smoke_model):
    with pytest.raises(IprkitError, match="server.python='/no/python': no such interpreter"):
        check_launcher("vllm", "/no/python")
    with pytest.raises(IprkitError, match="vllm is not installed for .*pip install vllm"):
        check_launcher("vllm")  # the kit's own venv has no vLLM (it pins another transformers)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        server = LaunchedServer("transformers", smoke_model, port=s.getsockname()[1], log_dir=tmp_path)
        with pytest.raises(IprkitError, match=f"port {server.port} on 127.0.0.1 is taken"):
            server.start()
    assert server.proc is None


def test_server_settings_are_checked_when_read():
    with pytest.raises(IprkitError, match="server.urls=\\[\\]: give one or more base URLs"):
        ServerSettings(backend="server")
    with pytest.raises(IprkitError, match="server.prompt='tokens': transformers serve takes text prompts only"):
        ServerSettings(kind="transformers")
    with pytest.raises(IprkitError, match="server.urls=\\['localhost:8000'\\]: each must start with http"):
        ServerSettings(backend="server", urls=["localhost:8000"])
    with pytest.raises(IprkitError, match="server.launch=True: the kit launches server.kind=vllm or transformers"):
        ServerSettings(backend="server", launch=True)


def test_a_replica_that_dies_mid_answer_is_retried_then_dropped_with_a_clear_error():
    """A server killed while it writes its answer leaves a torn body (``http.client.IncompleteRead``, not an
    OSError): that is one failed try like a refused connection, and after the retries the stage fails with the
    kit's message (CI once saw the raw traceback instead)."""
    import socket
    import threading

    from iprkit.server import Replicas

    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    served = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            request = b""  # read the whole request first: a close with unread bytes resets the connection instead
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, body = request.split(b"\r\n\r\n", 1)
            length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 369\r\n\r\n")
            conn.close()  # the body never comes
            served.append(1)

    threading.Thread(target=serve, daemon=True).start()
    try:
        replicas = Replicas([url], retries=2, backoff_s=0.01, timeout_s=5)
        with pytest.raises(IprkitError, match=r"every LLM server replica stopped answering.*IncompleteRead.*rerun"):
            replicas.post("/v1/completions", {"prompt": "x"})
        assert len(served) == 3 and replicas.stats["retries"] == 3 and replicas.dropped
    finally:
        listener.close()


def test_an_answer_without_choices_is_named():
    """A server that answers 200 with something other than a completion (an error object, another API) fails the
    turn with what it said, not a KeyError."""
    import http.server
    import threading

    from iprkit.models import train_tokenizer
    from iprkit.server import OpenAIBackend

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"error": "model not loaded"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        tok = train_tokenizer(["go north", "take the key", "open the door"], vocab_size=300)
        backend = OpenAIBackend(tok, GEN, ServerSettings(backend="server", prompt="tokens", urls=[url]), [url], "m")
        with pytest.raises(IprkitError, match="without choices.*model not loaded"):
            backend.complete([{"role": "user", "content": "go"}])
    finally:
        server.shutdown()
