"""A short end-to-end run of the ``paper`` preset at small size on one GPU: does it run, how long, how much memory.

    bash benchmarks/gpu_check.sh                        # vLLM launched by the kit (pip install vllm first)
    bash benchmarks/gpu_check.sh --server transformers  # transformers serve (pip install 'iprkit[serve]')
    bash benchmarks/gpu_check.sh --model DIR            # your own model folder instead of a random one

The paper preset as it is (bf16 weights and mixed precision, LoRA adapters, gradient checkpointing, rollouts on a
server the kit starts for each stage, MC N=5 at temperature 1, DPO beta 0.1 + summed NLL), made small: TextWorld
easy games, ``--experts`` SFT trajectories, one ETO and one IPR iteration exploring ``--explore`` of them, and
evaluation on ``--test`` games. Everything the run writes is under ``--out``.

With no ``--model`` the model has Qwen2.5-0.5B's shape (24 layers, 896 wide, 14 query / 2 KV heads, about 0.36B
parameters with a 2,048-token vocabulary) and random weights, over a tokenizer trained on the games' text: nothing
is downloaded. It tests the machinery and measures time and memory, not the method: its turns are noise, so each
runs to ``max_new_tokens`` and every episode to its step limit (the slowest case).

While the run goes, the GPU memory of every process is sampled (nvidia-smi), so the table gives the peak of the
run's own process (training, and rollouts with ``--server hf``) and of its servers apart, beside each training
stage's own peak (``torch.cuda.max_memory_allocated``, in its metrics). Prints a table and writes JSON.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    "qwen2-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                       intermediate_size=4864, max_position_embeddings=4096, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, max_position_embeddings=2048),
}
"""Model shapes for ``--shape`` (``tiny``: a dry run of this script on a CPU)."""


def build_model(out: Path, shape: str, env_kwargs: dict, dtype: str) -> Path:
    """A random Qwen2 of ``shape`` over a tokenizer trained on the train games' expert text, saved to ``out``."""
    import torch

    from iprkit.envs.textworld_env import TextWorldEnv
    from iprkit.experts import expert_trajectories
    from iprkit.models import corpus, tiny_random, train_tokenizer

    if (out / "config.json").exists():
        return out
    env = TextWorldEnv(**env_kwargs)
    env.prepare("train")
    experts = expert_trajectories(env, env.task_ids("train"), progress=False)[0]
    tok = train_tokenizer(corpus(experts), 2048)
    model = tiny_random("qwen2", tok, **SHAPES[shape]).to(getattr(torch, dtype))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


class MemorySampler(threading.Thread):
    """Peak GPU memory (MiB) per process and in all, from ``nvidia-smi`` every ``every`` seconds."""

    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        self.every, self.stop, self.per_pid, self.total = every, threading.Event(), {}, 0
        self.works = subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0 if _which("nvidia-smi") else False

    def run(self):
        while self.works and not self.stop.is_set():
            apps = _smi("--query-compute-apps=pid,used_memory")
            for line in apps:
                pid, mib = (x.strip() for x in line.split(","))
                if mib.isdigit():
                    self.per_pid[int(pid)] = max(self.per_pid.get(int(pid), 0), int(mib))
            used = _smi("--query-gpu=memory.used")
            if used and used[0].strip().isdigit():
                self.total = max(self.total, int(used[0]))
            self.stop.wait(self.every)


def _which(cmd: str) -> bool:
    from shutil import which

    return which(cmd) is not None


def _smi(query: str) -> list[str]:
    r = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True, text=True)
    return [x for x in r.stdout.splitlines() if x.strip()] if r.returncode == 0 else []


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="vllm", choices=["vllm", "transformers", "hf"],
                    help="rollouts on a launched vLLM or transformers server, or in this process (hf)")
    ap.add_argument("--python", default="", help="the interpreter of the server's venv (default: this one)")
    ap.add_argument("--model", default="", help="a model folder (default: a random model of --shape)")
    ap.add_argument("--shape", default="qwen2-0.5b", choices=list(SHAPES))
    ap.add_argument("--experts", type=int, default=8, help="SFT trajectories (TextWorld easy games)")
    ap.add_argument("--explore", type=int, default=2, help="of them explored per iteration")
    ap.add_argument("--test", type=int, default=4, help="test games per evaluation")
    ap.add_argument("--steps", type=int, default=4, help="the env's step limit")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--cpu", action="store_true", help="a dry run on a CPU: float32, no bf16")
    ap.add_argument("--timeout", type=float, default=0, help="stop the run after this many seconds and report what "
                    "it finished (0: no limit)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "gpu_check"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    ap.add_argument("overrides", nargs="*", help="more KEY=VALUE settings for the run")
    a = ap.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env_kwargs = {"preset": "easy", "n_train": a.experts, "n_test": a.test, "max_steps": a.steps}
    dtype = "float32" if a.cpu else "bfloat16"
    t0 = time.perf_counter()
    model = Path(a.model) if a.model else build_model(out / "base-model", a.shape, env_kwargs, dtype)
    build_s = time.perf_counter() - t0
    settings = [f"env_kwargs={json.dumps(env_kwargs)}", "env=textworld", f"n_experts={a.experts}",
                f"n_explore={a.explore}", "iterations=1", "eto_iterations=1", f"sft.model.name_or_path={model}",
                f"sft.model.dtype={dtype}", "sft.batch_size=4", "sft.grad_accum=1", "sft.max_length=1024",
                "dpo.batch_size=2", "dpo.grad_accum=1", "dpo.epochs=1", "dpo.max_length=1024",
                f"generation.max_new_tokens={a.max_new_tokens}", "generation.max_context=768", "threads=4"]
    if a.cpu:
        settings += ["sft.bf16=false", "dpo.bf16=false", "sft.gradient_checkpointing=false", "dpo.gradient_checkpointing=false",
                     "threads=2"]
    if a.server == "hf":
        settings += ["server.backend=hf"]
    else:
        settings += [f"server.kind={a.server}", *([f"server.python={a.python}"] if a.python else []), "server.concurrency=32",
                     f"server.prompt={'text' if a.server == 'transformers' else 'tokens'}"]
    run_dir = out / f"run-{a.server}"
    cmd = [sys.executable, "-m", "iprkit.cli", "run", "--preset", "paper", "--out", str(run_dir), *settings, *a.overrides]
    print("running:", " ".join(cmd), flush=True)
    sampler = MemorySampler()
    sampler.start()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])})
    try:
        rc = proc.wait(timeout=a.timeout or None)
    except subprocess.TimeoutExpired:
        print(f"gpu_check: stopped the run after {a.timeout:.0f} s (--timeout); the table has the stages it finished")
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: the run stops the servers it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        rc = "timeout"
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()

    from iprkit.layout import RunLayout

    layout = RunLayout(run_dir)
    read = lambda p: json.loads(p.read_text()) if p.exists() else {}
    timings = read(layout.timings)
    trainings = {"sft": read(layout.sft(0).metrics)}
    for method in ("eto", "ipr"):
        trainings[f"{method} dpo"] = read(layout.iteration(0, method, 1).train_metrics)
    mib = lambda m: round(m / 1024, 2)
    servers = {pid: m for pid, m in sampler.per_pid.items() if pid != proc.pid}
    report = {
        "device": _device(), "server": a.server, "model": str(model), "shape": None if a.model else a.shape,
        "parameters": _parameters(model), "returncode": rc, "wall_s": round(wall, 1), "build_model_s": round(build_s, 1),
        "stages_s": timings,
        "peak_gib": {"all processes (nvidia-smi)": mib(sampler.total) if sampler.works else None,
                     "the run's process (nvidia-smi)": mib(sampler.per_pid.get(proc.pid, 0)) if sampler.works else None,
                     "largest server (nvidia-smi)": mib(max(servers.values(), default=0)) if sampler.works else None,
                     **{f"{k} (torch allocated)": v.get("peak_gpu_memory_gib") for k, v in trainings.items()}},
        "trainable_parameters": trainings["sft"].get("trainable_parameters"),
        "results": read(layout.results_json).get("table"),
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(report, indent=1))
    print(f"\n{report['device']}; server: {a.server}; model: {report['parameters'] or '?'} parameters "
          f"({report['trainable_parameters'] or '?'} trainable in LoRA); exit {rc}; {wall:.0f} s in all")
    print(f"{'stage':44s} {'seconds':>8s}")
    for name, s in timings.items():
        print(f"{name:44s} {s:8.1f}")
    print(f"{'peak GPU memory':44s} {'GiB':>8s}")
    for name, g in report["peak_gib"].items():
        print(f"{name:44s} {'-' if g is None else f'{g:8.2f}':>8s}")
    print(f"wrote {a.json}")
    sys.exit(rc if isinstance(rc, int) else 124)


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"


def _parameters(model: Path) -> int | None:
    try:
        from safetensors import safe_open

        n = 0
        for f in model.glob("*.safetensors"):
            with safe_open(str(f), "pt") as st:
                n += sum(_prod(st.get_slice(k).get_shape()) for k in st.keys())
        return n or None
    except Exception:
        return None


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
