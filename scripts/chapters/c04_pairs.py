"""Chapter 4: step-level and outcome-level contrastive pairs."""

CELLS = [
    ("md", """
# 4. Contrastive pairs

## What this stage does, and why

The step rewards of chapter 3 become training data as *pairs*: a chosen and a rejected continuation of the same
prompt. At step $t$ of task $e$, with final rewards $R_e, R_a$ (the expert's trajectory, the agent's branch) and
step rewards $\\hat r_e, \\hat r_a$, IPR makes a **step pair**

$$\\text{expert chosen} \\iff R_e > R_a + \\delta_f \\;\\wedge\\; \\hat r_e > \\hat r_a + \\delta_s,$$

and the agent chosen on the reverse; otherwise no pair. Both rewards must agree: a step reward alone is noisy, a final
reward alone says nothing about the step. The prompt is the expert's prefix up to step $t$; in the paper's `entire`
mode the chosen and rejected sides are the step *and its continuation* (multi-turn, observations masked from the
loss). **Outcome pairs** (ETO's) compare the agent's whole rollout from step 0 with the expert's trajectory, on the
final reward alone. The paper: $\\delta_f = \\delta_s = 0.01$; both kinds are merged into one training set.
"""),
    ("md", """
## Where it lives in the kit

- `iprkit/pairs.py` (`step_winner`, `outcome_winner`, `build_pairs`); every compared step is also written to
  `comparisons.jsonl`, pair or not, so the heatmap can say why a step made no pair.
- Settings: `pairs.final_margin` and `pairs.step_margin` (0.01; the paper's code calls them `traj_threshold` and
  `step_threshold`), `pairs.mode` (`entire`, the paper's; `single-step`: the one action), and the method table
  (ETO: outcome pairs only; `ipr-no-step`, `ipr-no-outcome`: the ablations).

## Run it
"""),
    ("code", """
run_until(layout.stage(seed, "ipr", 1, "pairs"))
from iprkit.views import load_pairs
from iprkit.widgets import pair_browser

stats = json.loads(layout.iteration(seed, "ipr", 1).pair_stats.read_text())
pairs = load_pairs(run_dir, seed)  # every method's pairs so far (IPR's step and outcome pairs, ETO's outcome pairs)
stats
"""),
    ("md", """
## How to read it

`pair_stats` counts the steps compared, the steps where the agent took the expert's own action (never a pair), and
the pairs by kind and winner. On a small model nearly every step pair is won by the expert: the agent rarely finds a
better action than the gold path. In the browser, a pair shows the task's instruction, the shared prefix (folded),
then the chosen and rejected sides from the branch step on; the highlighted turn is the action that differs, the
table gives both step rewards and both final rewards. Filter by method, kind and iteration; `min gap` keeps step pairs
whose step rewards are at least that far apart (outcome pairs: their final rewards).
"""),
    ("code", """
pair_browser(pairs)
"""),
    ("md", """
## Exploring the run

**Fragile pairs**: step pairs whose two Monte Carlo estimates overlap in their 95% intervals. The chosen side won
barely more often in its rollouts than the rejected one; with more rollouts the pair might vanish or flip. Many
fragile pairs mean `mc.n` is too small for the margins.
"""),
    ("code", """
from iprkit.views import fragile_pairs, load_iteration

fragile = fragile_pairs(load_iteration(run_dir, seed, "ipr", 1))
print(f"{len(fragile)} of {stats['step_pairs']} step pairs are fragile")
keys = {(f["task_id"], f["step"]) for f in fragile}
pair_browser([p for p in pairs if p["kind"] == "step" and (p["task_id"], p["step"]) in keys] or pairs[:0])
"""),
    ("md", """
## What to try

- `overrides = ["pairs.step_margin=0.2"]`: only clear step wins make pairs; expect fewer, sturdier pairs.
- `overrides = ["pairs.mode=single-step"]`: the chosen and rejected sides shrink to one action each.
- `overrides = ["methods=[sft,ipr-no-step]"]`: IPR without step pairs (outcome pairs only, plus NLL).

## Pitfalls

- **Reward equals success** here, so $R_e > R_a + 0.01$ means "the expert won and the branch lost": step pairs only
  arise on steps whose branch failed.
- **No pairs, no learning**: an iteration without pairs carries the policy over unchanged (train_metrics says so).
"""),
    ("code", """
write_metrics({**stats, "fragile_step_pairs": len(fragile)})
"""),
]
