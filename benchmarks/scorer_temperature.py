"""At which temperature are a scorer's Monte Carlo rollouts still meaningful? Sampled episodes of one model.

    python benchmarks/scorer_temperature.py --model runs/demo/seed0/sft/model --tasks 64 --n 5

For each temperature: N sampled episodes per task (from the start, as a Monte Carlo rollout from step 0 is), on
the env's first test tasks. Prints and writes (``benchmarks/results/scorer_temperature.json``):

- the success rate of the samples (the greedy agent's at temperature 0);
- the share of tasks whose N samples are mixed (some won, some lost): only those give a Monte Carlo estimate
  strictly between 0 and 1, the estimates that can tell two actions apart by less than a whole win;
- the invalid-turn rate (turns with no ``Action:`` line): where sampling turns into noise.

Too low a temperature and every estimate is 0 or 1 (the scorer is as sure as its greedy self); too high and the
samples lose even the games the greedy agent wins. The paper samples at 1.0 with a 7B model.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from iprkit.backends import HFBackend  # noqa: E402
from iprkit.envs import env_factory, make_env  # noqa: E402
from iprkit.io import write_json  # noqa: E402
from iprkit.models import load_model  # noqa: E402
from iprkit.rollout import EpisodeSpec, RolloutEngine  # noqa: E402
from iprkit.settings import GenerationSettings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model folder (e.g. a run's seed0/sft/model)")
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--n", type=int, default=5, help="samples per task (the paper's N)")
    ap.add_argument("--temperatures", default="0,0.5,0.7,1.0,1.3")
    ap.add_argument("--max-steps", type=int, default=10)
    ap.add_argument("--name", default="scorer_temperature")
    a = ap.parse_args()
    torch.set_num_threads(2)
    kwargs = {"preset": "easy", "n_train": 1, "n_test": a.tasks, "max_steps": a.max_steps}
    env = make_env("textworld", **kwargs)
    env.prepare("test")
    ids = env.task_ids("test")[: a.tasks]
    gen = GenerationSettings(max_new_tokens=48, batch_size=128, max_context=512)
    backend = HFBackend(*load_model(a.model), gen)
    rows = []
    for temp in [float(t) for t in a.temperatures.split(",")]:
        n = 1 if temp == 0 else a.n
        engine = RolloutEngine(backend, env_factory("textworld", kwargs, env), seed=0, max_live=gen.batch_size)
        t0 = time.perf_counter()
        trajs = engine.run([EpisodeSpec(t, temperature=temp, sample=i) for t in ids for i in range(n)],
                           desc=f"T={temp}", progress=True)
        engine.close()
        wins: dict[str, list[bool]] = {}
        for tr in trajs:
            wins.setdefault(tr.task_id, []).append(bool(tr.success))
        turns = [s for tr in trajs for s in tr.steps]
        row = {"temperature": temp, "samples_per_task": n, "episodes": len(trajs),
               "success": sum(w for ws in wins.values() for w in ws) / len(trajs),
               "mixed_tasks": sum(0 < sum(ws) < len(ws) for ws in wins.values()) / len(wins) if n > 1 else None,
               "invalid_turns": sum(not s.valid for s in turns) / max(1, len(turns)),
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| temperature | success | tasks with mixed samples | invalid turns |\n|---|---|---|---|")
    for r in rows:
        mixed = "-" if r["mixed_tasks"] is None else f"{r['mixed_tasks']:.0%}"
        print(f"| {r['temperature']} | {r['success']:.1%} | {mixed} | {r['invalid_turns']:.1%} |")
    write_json(ROOT / "benchmarks" / "results" / f"{a.name}.json", {"model": a.model, "tasks": len(ids), "rows": rows})


if __name__ == "__main__":
    main()
