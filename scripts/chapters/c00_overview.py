"""Chapter 0: the method in one picture, the map of the sequence, and which run the notebooks read."""

CELLS = [
    ("md", """
# 0. IPR in one page

**IPR** (Iterative step-level Process Refinement, Xiong et al. 2024, arXiv 2406.11176) trains an LLM agent with
feedback on each *step*, not only on whole episodes. This sequence of notebooks walks through it stage by stage,
on a real run of the kit. Each chapter says what the stage does in the paper and why, where it lives in the kit,
runs it, shows how to read what you see, suggests what to try, and lists the pitfalls met while building the kit.
"""),
    ("md", """
## The method in one picture

```
expert trajectories ──SFT──▶ base agent π₀ (also the fixed scorer)
                                   │
        ┌──────────────────────────┴───────────── iteration k = 1, 2, ... ─────────────────┐
        │ explore:  at every expert step t, replay the expert's first t steps,              │
        │           let π_{k-1} act, and continue to the end                                │
        │ score:    Monte Carlo step reward of the expert's and the agent's action at t     │
        │           = mean final reward of N rollouts by π₀ from (prefix, action)           │
        │ pair:     step pair where expert beats agent on BOTH final and step reward        │
        │           (or the reverse), by a margin; outcome pairs from whole rollouts (ETO)  │
        │ train:    DPO (β = 0.1) + NLL on the chosen side, reference π₀, start from π_{k-1}│
        │ evaluate: greedy episodes on held-out tasks (and on the explored ones)            │
        └───────────────────────────────────────────────────────────────────────────────────┘
```

ETO (Song et al. 2024) is the same loop with outcome pairs only; it is IPR's main baseline, and the kit runs both
(and the ablations) on the same tasks, seeds and SFT model, so they can be compared task by task.
"""),
    ("md", """
## The sequence

| notebook | stage | module | what you look at |
|---|---|---|---|
| 01_environments | envs and expert trajectories | `iprkit/envs/`, `iprkit/experts.py` | a task, a gold path with its thoughts, how many gold paths replay |
| 02_sft | the base agent | `iprkit/sft.py` | the SFT loss, held-out success |
| 03_mc_rewards | exploration and Monte Carlo step rewards | `iprkit/explore.py`, `iprkit/mc.py` | the step-reward heatmap, close calls |
| 04_pairs | step and outcome pairs | `iprkit/pairs.py` | the pair browser, fragile pairs |
| 05_iterations | DPO + NLL, iterations, evaluation | `iprkit/train.py`, `iprkit/loop.py` | learning curves, what an iteration changed |
| 06_analysis | comparing methods | `iprkit/stats.py`, `iprkit/views.py` | paired differences, efficiency |

## Which run the notebooks read

Every notebook starts with a `parameters` cell. Opened by hand, `run_dir = "auto"` finds your finished demo run:

```bash
make demo     # about 15 minutes on 2 CPU cores; writes runs/demo/default and runs/demo/report.html
```

Nothing is recomputed then: each stage of the run is on disk, and a notebook only reads it. Without a demo run,
the notebooks fall back to the `smoke` preset (a minute of training) and say so: its untrained model writes "." as
every action, so its pictures show the machinery, not the method. `iprkit batch` and papermill set `run_dir`
themselves (CI runs the whole sequence headless on the smoke preset).
"""),
    ("code", """
from iprkit.io import read_json

status = {"run_dir": run_dir, "preset": preset, "finished": layout.results_json.exists()}
if layout.results_json.exists():
    print(layout.results_md.read_text())
    status["methods"] = sorted({r["method"] for r in read_json(layout.results_json)["table"]})
else:
    print(f"{run_dir} has no results yet: the chapters below run its stages as they need them.")
status
"""),
    ("md", """
## Pitfalls to keep in mind throughout

- **A tiny model memorises its SFT tasks.** The demo's 2M-parameter model, trained 2,500 steps on 800 games, takes
  the expert's every action on them: exploring those games finds nothing to contrast. The demo therefore explores
  64 train games SFT never saw (`explore_held_out`); the paper explores its own SFT tasks after 3 epochs (the
  `regime` preset reproduces that shape).
- **Reward equals success** on the generated TextWorld games (they score only the win), so a final-reward margin is
  a success difference and a Monte Carlo estimate is a win rate. The paper's WebShop and InterCode rewards are graded.
- **The context budget.** `generation.max_context` cuts old turns from long prompts; a model asked to act past the
  length it trained on writes invalid turns.
"""),
    ("code", """
write_metrics(status)
"""),
]
