"""Rollout engine vs a one-episode-at-a-time loop, on the same model and tasks.

    python benchmarks/rollout_engine.py --model runs/sft/model --episodes 64

All sides run the same greedy TextWorld episodes with the same model, in one run:
the engine (64 live episodes, kept KV caches), the engine without kept caches, the
engine one episode at a time, and the plain loop one writes without an engine
(``model.generate`` on the whole rendered chat, per episode and step). Prints a table
and writes JSON (episodes/s, generated tokens/s, ratios to the plain loop, and whether
every side took the same actions). Target: >= 5x for 64 episodes on 2 CPU cores.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from iprkit.backends import HFBackend  # noqa: E402
from iprkit.settings import GenerationSettings  # noqa: E402
from iprkit.envs.textworld_env import TextWorldEnv  # noqa: E402
from iprkit.models import load_model  # noqa: E402
from iprkit.prompts import parse_agent_turn  # noqa: E402
from iprkit.rollout import EpisodeSpec, RolloutEngine  # noqa: E402
from iprkit.trajectory import Step  # noqa: E402


def measure(model, tok, ids, max_live, max_new_tokens, keep_cache=True):
    gen = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=max(1, max_live), keep_cache=keep_cache)
    backend = HFBackend(model, tok, gen)
    engine = RolloutEngine(backend, lambda: TextWorldEnv(n_test=len(ids)), max_live=max_live)
    t0 = time.perf_counter()
    trajs = engine.run([EpisodeSpec(t) for t in ids], progress=False)
    dt = time.perf_counter() - t0
    engine.close()
    return {"seconds": dt, "episodes_per_s": len(ids) / dt, "tokens_per_s": backend.stats["new_tokens"] / dt,
            "new_tokens": backend.stats["new_tokens"], "generate_calls": backend.stats["calls"],
            "prefill_tokens": backend.stats["prefill_tokens"], "reused_tokens": backend.stats["reused_tokens"],
            "success_rate": sum(t.success for t in trajs) / len(trajs), "actions": [t.actions for t in trajs]}


def plain_loop(model, tok, ids, max_new_tokens):
    """What one writes without an engine: per episode, per step, render the whole chat and
    call ``model.generate`` (greedy) on it."""
    env = TextWorldEnv(n_test=len(ids))
    eos = [tok.convert_tokens_to_ids("<|end|>"), tok.eos_token_id]
    actions, wins, new_tokens, calls = [], 0, 0, 0
    t0 = time.perf_counter()
    for task in ids:
        instruction, obs = env.reset(task)
        msgs, acts = [{"role": "user", "content": f"{instruction}\n\n{obs}"}], []
        while not env.done:
            enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                     pad_token_id=tok.pad_token_id)
            row = out[0, enc["input_ids"].shape[1]:].tolist()
            cut = next((i for i, t in enumerate(row) if t in eos), len(row))
            new_tokens, calls = new_tokens + min(cut + 1, len(row)), calls + 1
            text = tok.decode(row[:cut], skip_special_tokens=True)
            thought, action = parse_agent_turn(text)
            r = env.step(action if action is not None else text.strip()[:200])
            acts.append(action if action is not None else text.strip()[:200])
            step = Step(action=action or "", observation=r.observation, thought=thought if action else text.strip())
            msgs += [{"role": "assistant", "content": step.turn() if action is not None else text.strip()},
                     {"role": "user", "content": r.observation}]
        actions.append(acts)
        wins += env.success()
    dt = time.perf_counter() - t0
    env.close()
    return {"seconds": dt, "episodes_per_s": len(ids) / dt, "tokens_per_s": new_tokens / dt, "new_tokens": new_tokens,
            "generate_calls": calls, "success_rate": wins / len(ids), "actions": actions}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (a trained SFT agent gives realistic episodes)")
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/rollout_engine.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    env = TextWorldEnv(n_test=args.episodes)
    env.prepare("test")
    ids = env.task_ids("test")
    sides = {
        "engine": measure(model, tok, ids, args.episodes, args.max_new_tokens),
        "engine, no kept cache": measure(model, tok, ids, args.episodes, args.max_new_tokens, keep_cache=False),
        "engine, 1 at a time": measure(model, tok, ids, 1, args.max_new_tokens),
        "plain generate loop": plain_loop(model, tok, ids, args.max_new_tokens),
    }
    ref = sides["engine"]["actions"]
    same = {k: v.pop("actions") == ref for k, v in sides.items()}
    base = sides["plain generate loop"]
    print(f"{'':24}{'seconds':>9}{'episodes/s':>12}{'tokens/s':>10}{'calls':>7}{'success':>9}{'speed-up':>10}{'same':>6}")
    for name, r in sides.items():
        r["speedup_vs_plain_loop"] = r["episodes_per_s"] / base["episodes_per_s"]
        print(f"{name:24}{r['seconds']:>9.1f}{r['episodes_per_s']:>12.3f}{r['tokens_per_s']:>10.1f}"
              f"{r['generate_calls']:>7}{r['success_rate']:>9.2f}{r['speedup_vs_plain_loop']:>9.1f}x{str(same[name]):>6}")
    print("speed-up = episodes/s over the plain generate loop; same = identical actions to the engine's")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"episodes": args.episodes, "threads": args.threads,
                                          "max_new_tokens": args.max_new_tokens, "sides": sides,
                                          "same_actions": same, "cpu_count": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
