"""Chapter 5: preference training, iterations and evaluation."""

CELLS = [
    ("md", """
# 5. Training on the pairs, iteration after iteration

## What this stage does, and why

Each iteration trains the policy on its pairs with DPO plus an NLL term on the chosen side. For a pair
$(x, y_w, y_l)$, with the reference $\\pi_{\\text{ref}} = \\pi_0$ (the SFT model) and the policy initialised from the
previous iteration,

$$\\mathcal{L} = -\\log \\sigma\\Big(\\beta \\log \\frac{\\pi_\\theta(y_w \\mid x)}{\\pi_{\\text{ref}}(y_w \\mid x)}
 - \\beta \\log \\frac{\\pi_\\theta(y_l \\mid x)}{\\pi_{\\text{ref}}(y_l \\mid x)}\\Big) - \\lambda \\log \\pi_\\theta(y_w \\mid x),$$

with $\\beta = 0.1$, $\\lambda = 1$, the log-probabilities summed over the agent's turns only (observation turns inside
a multi-turn side are masked). The new policy explores again (chapter 3), and so on: the paper runs up to 6
iterations and reports the best. Every model is evaluated greedily on held-out tasks.
"""),
    ("md", """
## Where it lives in the kit

- `iprkit/train.py`: TRL's `DPOTrainer`, subclassed for the masking and the summed NLL; `iprkit/loop.py`: the plan of
  stages per method, iteration and seed, resumable; `iprkit/evaluate.py`: success, reward, steps, invalid turns.
- Settings (`dpo.*`): `beta` 0.1, `nll_weight` 1, `nll` sum (the paper; `mean` is TRL's token mean), `learning_rate`
  3e-6, `epochs` 3, `reference` sft; `iterations` (IPR), `eto_iterations` (ETO: 3); `eval_explored` (also evaluate
  on the explored train tasks).

## Run it

This runs the rest of the job (the ETO iterations too) and prints `results.md`: the table over methods and
iterations, then the paired comparisons.
"""),
    ("code", """
result = run_until(None)
print(layout.results_md.read_text())
"""),
    ("md", """
## How to read it

Two curves per method: **solid**, success on the held-out test games (does it generalise?); **dashed**, success on
the train tasks the iterations explored (does it learn what it explores?). Error bars are the spread over seeds
(none with one seed). A method can gain on its explored tasks and not on held-out ones: that is learning without
generalisation, and on the tiny demo model that is what IPR does. The paired table under `results.md` is the honest
comparison: same tasks, same seeds, a bootstrap interval, and McNemar's exact test on the games where exactly one
of the two agents won.
"""),
    ("code", """
from iprkit.figures import learning_curves_figure
from iprkit.widgets import iteration_comparison

# solid: held-out test games (does it generalise?); dashed: the train tasks the iterations explored (does it learn them?)
learning_curves_figure(result["table"])
"""),
    ("code", """
iteration_comparison(result["table"])
"""),
    ("md", """
## Exploring the run

**What an iteration changed, task by task**: the held-out games SFT won and IPR's last iteration lost, and the
reverse, with both agents' actions. A handful of changed games is within noise; a pattern in the actions (a verb the
new policy stopped using, a longer detour) is a finding.
"""),
    ("code", """
from iprkit.views import changed_tasks

k_last = cfg.method_iterations("ipr")
split = layout.sft(seed).eval.splits()[0]
changed = changed_tasks(run_dir, seed, ("sft", 0), ("ipr", k_last), split)
print(f"of {changed['tasks']} {split} games, IPR@{k_last} lost {len(changed['lost'])} that SFT won and won "
      f"{len(changed['gained'])} that SFT lost")
for row in changed["lost"][:3]:
    print(f"\\n{row['task_id']}\\n  SFT (won):  {' | '.join(row['won_actions'])}\\n  IPR (lost): {' | '.join(row['lost_actions'])}")
"""),
    ("md", """
## What to try

- `overrides = ["iterations=3"]`: more iterations (a new `run_dir`, or the finished ones are reused and only the new
  ones run); watch whether the dashed curve keeps rising while the solid one stays flat.
- `overrides = ["dpo.nll=mean"]`: TRL's token-mean NLL; the summed NLL (about 12 nats a pair here) outweighs the DPO
  term, the mean does not.
- `overrides = ["dpo.learning_rate=2e-4"]`: too high; the margins explode and the agent writes more invalid turns.

## Pitfalls

- **100 test games see only large differences**: at the demo's disagreement rates a 3-point difference needs more than
  a thousand paired games (README, "Comparing methods"). Read the McNemar p-value, not the table's second decimal.
- **Learning curves on explored tasks are not held-out results**: the policy trained on pairs from those tasks.
"""),
    ("code", """
write_metrics({"table": result["table"], "lost_after_ipr": len(changed["lost"]), "gained_after_ipr": len(changed["gained"])})
"""),
]
