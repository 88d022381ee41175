"""Rollout engine vs a one-episode-at-a-time loop, on the same model and tasks.

    python benchmarks/rollout_engine.py --model runs/sft/model --episodes 64

Both sides run greedy TextWorld episodes through the same backend; the loop side runs
the engine with one live episode (one generate call per episode-step, no batching).
Prints a table and writes JSON (episodes/s, generated tokens/s, and the ratio).
Target: >= 5x for 64 episodes on 2 CPU cores.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from iprkit.backends import GenerationConfig, HFBackend  # noqa: E402
from iprkit.envs.textworld_env import TextWorldEnv  # noqa: E402
from iprkit.models import load_model  # noqa: E402
from iprkit.rollout import EpisodeSpec, RolloutEngine  # noqa: E402


def measure(model, tok, ids, max_live, max_new_tokens):
    backend = HFBackend(model, tok, GenerationConfig(max_new_tokens=max_new_tokens, batch_size=max(1, max_live)))
    engine = RolloutEngine(backend, lambda: TextWorldEnv(n_test=len(ids)), max_live=max_live)
    t0 = time.perf_counter()
    trajs = engine.run([EpisodeSpec(t) for t in ids], progress=False)
    dt = time.perf_counter() - t0
    engine.close()
    return {"seconds": dt, "episodes_per_s": len(ids) / dt, "tokens_per_s": backend.stats["new_tokens"] / dt,
            "new_tokens": backend.stats["new_tokens"], "generate_calls": backend.stats["calls"],
            "success_rate": sum(t.success for t in trajs) / len(trajs), "actions": [t.actions for t in trajs]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (a trained SFT agent gives realistic episodes)")
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/rollout_engine.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    env = TextWorldEnv(n_test=args.episodes)
    env.prepare("test")
    ids = env.task_ids("test")
    batched = measure(model, tok, ids, args.episodes, args.max_new_tokens)
    single = measure(model, tok, ids, 1, args.max_new_tokens)
    same = batched.pop("actions") == single.pop("actions")
    ratio = batched["episodes_per_s"] / single["episodes_per_s"]
    print(f"{'':12}{'seconds':>10}{'episodes/s':>12}{'tokens/s':>10}{'calls':>8}{'success':>9}")
    for name, r in (("engine", batched), ("one-by-one", single)):
        print(f"{name:12}{r['seconds']:>10.1f}{r['episodes_per_s']:>12.3f}{r['tokens_per_s']:>10.1f}"
              f"{r['generate_calls']:>8}{r['success_rate']:>9.2f}")
    print(f"speed-up: {ratio:.1f}x episodes/s, {batched['tokens_per_s'] / single['tokens_per_s']:.1f}x tokens/s; "
          f"same actions on both sides: {same}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"episodes": args.episodes, "threads": args.threads, "engine": batched,
                                          "one_by_one": single, "speedup_episodes": ratio,
                                          "same_actions": same, "cpu_count": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
