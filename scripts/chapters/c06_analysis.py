"""Chapter 6: comparing methods."""

CELLS = [
    ("md", """
# 6. Comparing methods

## What this stage does, and why

The paper's claim is an ordering: IPR > ETO > SFT in final reward on held-out tasks. With one seed and a hundred
test games, a table of means cannot show that: two agents that disagree on only a few games differ by a few points
by chance. Every method here is evaluated on **the same tasks with the same seeds**, so the kit compares them task by
task: for A against B, the paired difference in success and in reward, a 95% bootstrap interval over tasks (a drawn
task keeps all its seeds), and McNemar's exact test on the discordant games (only A won / only B won): under "no
difference", each discordant game is a fair coin,

$$p = \\min\\Big(1,\\; 2 \\sum_{i \\le \\min(n_A, n_B)} \\binom{n_A + n_B}{i} 2^{-(n_A + n_B)}\\Big).$$

## Where it lives in the kit

`iprkit/stats.py` (`compare`, `mcnemar_p`, `bootstrap_ci`, `mcnemar_pairs_needed`), `results.json` (`paired`,
`paired_explored`), `benchmarks/science_table.py` (the same over seeds, run in pieces, with the power each comparison
has).

## Run it
"""),
    ("code", """
from iprkit.views import load_iteration, load_results, step_curve
from iprkit.io import read_jsonl
from iprkit.stats import format_paired
import plotly.graph_objects as go

results = load_results(run_dir)
# task by task: the same games, the same seeds (95% bootstrap CI over tasks; McNemar's exact test on success)
print(format_paired(results["paired"]))
if results.get("paired_explored"):
    print("On the explored train tasks:\\n" + format_paired(results["paired_explored"]))
last = {}
for r in results["table"]:
    last[r["method"]] = r
go.Figure(go.Bar(x=list(last), y=[r["success_mean"] for r in last.values()],
                 error_y={"array": [r["success_std"] for r in last.values()]})).update_layout(
    title="Success rate, last iteration of each method", xaxis_title="method", yaxis_title="success rate",
    yaxis={"range": [0, 1]})
"""),
    ("md", """
## How to read it

A row `ipr@1 vs sft@0` reads: over these (seed, task) pairs, IPR's last iteration won this much more often than SFT
(negative: less), with this interval; only-A / only-B are the discordant games. With very few discordant games the
bootstrap interval is too narrow (it can exclude 0 on 4 games): trust the McNemar p-value there. How many paired
games a difference needs depends on the discordance: at 20% discordance, a 3-point difference needs about 1,700
paired games, a 10-point one about 155 (`mcnemar_pairs_needed`).
"""),
    ("code", """
from iprkit.stats import mcnemar_pairs_needed

for r in results["paired"]:
    d = r["discordance"]
    need = {pts: mcnemar_pairs_needed(pts / 100, d) if d > pts / 100 else None for pts in (3, 5, 10)}
    print(f"{r['a']} vs {r['b']}: {r['pairs']} pairs at discordance {d:.2f}; pairs needed for 3 / 5 / 10 points: "
          f"{need[3]} / {need[5]} / {need[10]}")
"""),
    ("md", """
Per-step reward curves, iteration by iteration: the agent's Monte Carlo step reward at each step index. If IPR
works, later iterations' agents take better actions, and their curve rises toward the expert's.
"""),
    ("code", """
fig = go.Figure()
for k in layout.iterations(seed, "ipr"):
    c = step_curve(load_iteration(run_dir, seed, "ipr", k))
    if any(v is not None for v in c["agent"]):
        fig.add_trace(go.Scatter(x=c["step"], y=c["agent"], name=f"agent, iteration {k}"))
fig.update_layout(title="Agent MC step reward by step, per iteration", xaxis_title="step", yaxis_title="MC step reward",
                  xaxis={"dtick": 1})
"""),
    ("md", """
Action efficiency (the paper's third measure): steps to success on the games won, and success overall.
"""),
    ("code", """
def efficiency(ev):
    rows = [r for split in ev.splits() for _, r in read_jsonl(ev.tasks(split))]
    won = [r for r in rows if r["success"]]
    return {"steps_to_success": sum(r["steps"] for r in won) / len(won) if won else None,
            "avg_steps": sum(r["steps"] for r in rows) / max(1, len(rows)),
            "success": len(won) / max(1, len(rows))}

eff = {"sft": efficiency(layout.sft(seed).eval)}
for method in ("eto", "ipr"):
    if its := layout.iterations(seed, method):
        eff[method] = efficiency(layout.iteration(seed, method, its[-1]).eval)
eff
"""),
    ("md", """
## What to try

- `seeds=[0,1,2]` and more test games (`env_kwargs.n_test=500`): the intervals narrow roughly with the square root of
  the pairs. Evaluation is cheap (about 20 s per 100 games on 2 cores).
- `python benchmarks/science_table.py --preset regime`: the paper's data regime (3,000 games, 3 SFT epochs,
  exploring the agent's own SFT tasks), 3 seeds, in resumable pieces.

## Pitfalls

- **Read across seeds and tasks together**: a seed that is 10 points better for every method says nothing about the
  methods; the paired difference removes it.
- **The explored tasks are not held out**: gains there show learning, not generalisation.
"""),
    ("code", """
write_metrics({"last_iteration": last, "efficiency": eff, "paired": results["paired"]})
"""),
]
