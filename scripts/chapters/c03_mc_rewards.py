"""Chapter 3: exploration along the expert, and Monte Carlo step rewards."""

CELLS = [
    ("md", """
# 3. Exploration and Monte Carlo step rewards

## What this stage does, and why

An episode's final reward says whether the agent won, not *which step* went wrong. IPR estimates the value of
single actions. For every expert trajectory $e$ and every step $t$ (including $t = 0$) the current agent
$\\pi_{k-1}$ replays the expert's first $t$ steps, takes its own action $a_t$, and continues to the end
(**exploration**, greedy in the paper). Then the fixed SFT scorer $\\pi_0$ rates the expert's action $\\hat a_t$ and
the agent's action $a_t$ at that step by **Monte Carlo**: $N$ rollouts at temperature $\\tau$ from the state the
action leads to, and the mean of their final rewards,

$$\\hat r(s_t, a) = \\frac{1}{N} \\sum_{i=1}^{N} R\\big(\\text{rollout}_i \\sim \\pi_0^{\\tau}(\\cdot \\mid e_{<t}, a)\\big).$$

A step that ends the episode takes the environment's reward directly. The paper: $N = 5$, $\\tau = 1$, scorer = SFT.
"""),
    ("md", """
## Where it lives in the kit

- `iprkit/explore.py` (the branches), `iprkit/mc.py` (the estimates, their spread and 95% interval, the rollouts
  themselves, an on-disk cache keyed by scorer and state), `iprkit/rollout.py` (all live episodes in one batched
  decode).
- Settings: `mc.n` (paper 5), `mc.temperature` (1.0), `mc.scorer` (sft), `mc.score_same_action` (score steps where
  the agent took the expert's own action too; the demo skips them, they can never make a pair), `mc.reuse` (passing
  rollouts count for later states of the same task), `mc.estimator` (mc, or a learned step reward model: prm,
  hybrid), `explore_temperature` (0: greedy), `n_explore`, `explore_sample`.

## Run it
"""),
    ("code", """
run_until(layout.stage(seed, "ipr", 1, "score"))
from iprkit.views import load_iteration
from iprkit.figures import heatmap_figure, step_curve_figure

view = load_iteration(run_dir, seed, "ipr", 1)
heatmap_figure(view, "gap")
"""),
    ("md", """
## How to read it

One row per explored task (first task on top), one column per expert step. In `gap` mode a cell's colour is the
expert's estimate minus the agent's: **blue** where the expert's action scored higher, **red** where the agent's did,
white where they tie. A striped (or blank) cell was not scored: the agent took the expert's own action there, or its
branch ended before that step. **E** / **A** mark the steps that became step pairs (expert / agent chosen).

A healthy picture has blue cells where the agent's action differs from the expert's and few red ones; a heatmap
that is all white means the agent copies the expert everywhere (nothing to learn), all blue at step 0 means the
agent fails from the start. The curve below averages each column: how much an action is worth, step by step.
"""),
    ("code", """
step_curve_figure(view)
"""),
    ("md", """
The live widget: the buttons switch the colour between the gap and each side's estimate; click a cell to see the
instruction, the observation before the step, both actions with their thoughts, each estimate with its interval,
and the rollouts behind it.

With hundreds of explored tasks the grid scrolls (its step header and task column stay in view). The toolbar sorts
the rows (largest mean gap first: where the expert's actions are worth most over the agent's; most step pairs;
the agent's lowest step rewards), filters them by a piece of the task id or instruction, or keeps only tasks that
gave a step pair. The same from Python: `heatmap.sort = "gap"`, `heatmap.query = "kitchen"`,
`heatmap.pairs_only = True`; `heatmap.rows` is what it shows, in order.
"""),
    ("code", """
from iprkit.widgets import StepRewardHeatmap

heatmap = StepRewardHeatmap.from_view(view)
heatmap
"""),
    ("code", """
# one task along its steps: the expert's and the agent's step rewards, and each branch's continuation
from iprkit.widgets import trajectory_timeline

trajectory_timeline(view)
"""),
    ("md", """
## Exploring the run

**Close calls**: the steps where the two estimates are nearest, with different actions. A pair there hangs on the
margin (0.01) and on sampling noise: more rollouts (a larger `mc.n`) would decide it.
"""),
    ("code", """
from iprkit.views import close_calls, flips

close = close_calls(view, limit=8)
for c in close:
    print(f"{c['task_id']:>14} step {c['step']}: expert {c['expert']:.2f}, agent {c['agent']:.2f}, pair {c['pair']}")
if close:  # the widget shows the closest one
    heatmap.click(close[0]["row"], close[0]["step"])
    print("\\n" + heatmap.detail)
"""),
    ("md", """
**Flips**: steps where the step reward and the final reward disagree (the expert's action scored higher but the
agent's branch ended better, or the reverse). IPR makes no pair there: both rewards must agree.
"""),
    ("code", """
flipped = flips(view)
print(f"{len(flipped)} of {sum(c is not None for row in view.cells for c in row)} compared steps flip")
flipped[:8]
"""),
    ("code", """
# a step reward model beside Monte Carlo (mc.estimator=hybrid, from iteration 2): where both scored an action
from iprkit.views import prm_agreement

k_prm = max(layout.iterations(seed, "ipr"), default=1)
agreement = prm_agreement(load_iteration(run_dir, seed, "ipr", k_prm), cfg.pairs.step_margin)
agreement if agreement["estimates"] else print(
    "No step reward model scores in this run: run with mc.estimator=hybrid and iterations>=2 to see them here.")
"""),
    ("md", """
## What to try

- `overrides = ["mc.n=5", "mc.temperature=1.0"]`: the paper's settings (the demo uses 3 at 0.7 to stay fast).
  Expect intervals to narrow and fewer close calls; at higher temperatures the tiny scorer loses games it wins
  greedily, and every estimate drops (`benchmarks/scorer_temperature.py` measures this).
- `overrides = ["mc.reuse=true"]`: the same estimator with fewer rollouts (results.md says how many were saved).
- `overrides = ["mc.score_same_action=true"]`: score every step, as the paper; the heatmap fills in.

## Pitfalls

- **Estimates are win rates** on these games (reward = success): with $N = 3$ an estimate is 0, 1/3, 2/3 or 1.
- **The scorer is fixed.** Iteration 2 rescores nothing the cache already has: the same scorer, state and seeds
  give the same estimate (`mc_cache/`).
- **A memorised task is all white.** If the agent takes the expert's action everywhere, there is nothing to score.
"""),
    ("code", """
vals = [(c["expert"]["mc"], c["agent"]["mc"]) for row in view.cells for c in row if c]
sampled = [m for pair in vals for m in pair if m and not m["terminal"]]
write_metrics({"steps_scored": len(vals), "mean_expert_mc": sum(e["mean"] for e, _ in vals if e) / max(1, len(vals)),
               "mean_agent_mc": sum(a["mean"] for _, a in vals if a) / max(1, len(vals)),
               "mixed_outcome_estimates": sum(0 < m["mean"] < 1 for m in sampled), "sampled_estimates": len(sampled),
               "close_calls": len(close), "flips": len(flipped)})
"""),
]
