"""The tiny SFT agent against an untrained model and a random-admissible agent, on
held-out TextWorld games, over several seeds.

    python benchmarks/agent_baselines.py --experts .cache/tw-train-800.jsonl --seeds 0 1 2

Each seed trains the tiny preset from scratch (about 10 minutes on 2 cores), then
evaluates greedily on the test games. Prints a table (mean +- std over seeds) and
writes JSON with per-seed figures and where the SFT agent fails.
"""

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from iprkit.backends import HFBackend  # noqa: E402
from iprkit.settings import GenerationSettings  # noqa: E402
from iprkit.augment import attach_entities  # noqa: E402
from iprkit.config import load_config  # noqa: E402
from iprkit.envs.textworld_env import TextWorldEnv  # noqa: E402
from iprkit.evaluate import evaluate_model, random_agent, save_eval  # noqa: E402
from iprkit.models import corpus, create_tiny, load_model  # noqa: E402
from iprkit.layout import EvalPaths, RunLayout  # noqa: E402
from iprkit.presets import SFT_PRESETS  # noqa: E402
from iprkit.settings import SFTSettings  # noqa: E402
from iprkit.sft import train_sft  # noqa: E402
from iprkit.trajectory import load_trajectories  # noqa: E402


def failure_kinds(rows):
    """Why unsolved episodes ended (from the per-task rows): with invalid turns, or out of steps acting validly."""
    kinds = Counter()
    for r in rows:
        if not r["success"]:
            kinds["had invalid turns" if r["invalid_steps"] else "ran out of steps (valid actions)"] += 1
    return dict(kinds)


def evaluated(out: EvalPaths, name, run):
    """Metrics of one agent on one seed: read back when a rerun finds them, else ``run()`` and saved."""
    if not out.metrics(name).exists():
        save_eval(out, name, *run())
    return json.loads(out.metrics(name).read_text()), [json.loads(x) for x in out.tasks(name).read_text().splitlines()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experts", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--out", default="runs/agent_baselines")
    ap.add_argument("--sft-preset", default="tiny")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--n-train", type=int, default=None, help="use only the first N expert trajectories")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="SFT settings over the preset, e.g. augment_copies=3")
    args = ap.parse_args()
    torch.set_num_threads(2)
    env = TextWorldEnv(n_test=args.n_test)
    trajs = attach_entities(env, [t for t in load_trajectories(args.experts) if t.success][:args.n_train])
    env.prepare("test")
    ids = env.task_ids("test")
    rows = {"sft": [], "untrained": [], "random": []}
    detail = {}
    layout = RunLayout(args.out)
    for seed in args.seeds:
        out, sft = EvalPaths(layout.seed_dir(seed)), layout.sft(seed)
        cfg = load_config(SFTSettings, None, args.overrides, base=SFT_PRESETS[args.sft_preset])
        model_dir = sft.model
        if not model_dir.exists():  # resume: a finished seed is not retrained
            model_dir = train_sft(trajs, cfg, sft.dir, seed=seed)
        sft_s = json.loads(sft.metrics.read_text())["runtime_s"]
        for name, path in (("sft", model_dir), ("untrained", None)):
            def run(name=name, path=path):
                path = path or create_tiny(corpus(trajs), layout.seed_dir(seed) / "untrained", seed=seed)
                model, tok = load_model(path)
                backend = HFBackend(model, tok, GenerationSettings(max_new_tokens=args.max_new_tokens))
                return evaluate_model(backend, lambda: TextWorldEnv(n_test=args.n_test), ids, seed=seed,
                                      desc=f"{name} seed {seed}")
            m, tasks = evaluated(out, name, run)
            rows[name].append(m)
            if name == "sft":
                detail[seed] = {"sft_seconds": sft_s, "failures": failure_kinds(tasks)}
        m, _ = evaluated(out, "random", lambda: random_agent(env, ids, seed=seed))
        rows["random"].append(m)
        print(f"seed {seed}: sft {rows['sft'][-1]['success_rate']:.2f} (trained {sft_s:.0f}s), "
              f"untrained {rows['untrained'][-1]['success_rate']:.2f}, random {rows['random'][-1]['success_rate']:.2f}")
    table = {}
    print(f"\n{'agent':12}{'success':>18}{'reward':>18}{'steps':>8}{'invalid':>9}")
    for name, ms in rows.items():
        sr = [m["success_rate"] for m in ms]
        rw = [m["avg_reward"] for m in ms]
        sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0
        table[name] = {"success_mean": statistics.mean(sr), "success_std": sd(sr), "reward_mean": statistics.mean(rw),
                       "reward_std": sd(rw), "avg_steps": statistics.mean(m["avg_steps"] for m in ms),
                       "invalid_rate": statistics.mean(m["invalid_action_rate"] for m in ms), "per_seed": ms}
        t = table[name]
        print(f"{name:12}{t['success_mean']:>11.3f} ± {t['success_std']:.3f}{t['reward_mean']:>11.3f} ± "
              f"{t['reward_std']:.3f}{t['avg_steps']:>8.2f}{t['invalid_rate']:>9.3f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    settings = json.loads(layout.sft(args.seeds[0]).config.read_text())
    (Path(args.out) / "baselines.json").write_text(json.dumps({"table": table, "detail": detail, "seeds": args.seeds,
                                                               "n_test": args.n_test, "sft_settings": settings}, indent=2))


if __name__ == "__main__":
    main()
