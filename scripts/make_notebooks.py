"""Writes notebooks/*.ipynb from the cell sources below (one source of truth, no outputs).

    python scripts/make_notebooks.py
"""

from pathlib import Path

import nbformat as nbf

PARAMS = '''# parameters (papermill injects its own values after this cell)
preset = "smoke"          # smoke | demo | regime | paper
run_dir = "runs/notebooks" # the pipeline's run directory, shared by the whole sequence
out_dir = "runs/notebooks/nb"  # this notebook's outputs (metrics.json)
seed = 0
overrides = []            # RunSettings overrides, written as on the iprkit run command line
'''

SETUP = '''import json
from pathlib import Path

import plotly.io as pio

# each figure also leaves HTML with plotly.js embedded (the first one), so an executed notebook shows its figures
# in viewers without plotly's extension (nbviewer, VS Code); widgets leave a static HTML copy of themselves
pio.renderers.default = "plotly_mimetype+notebook"

from iprkit.layout import RunLayout, notebook_metrics
from iprkit.loop import Runner, StopRun
from iprkit.presets import run_settings

cfg = run_settings(preset, None, ["methods=[sft,ipr,eto]", f"seeds=[{seed}]", *overrides])
layout = RunLayout(run_dir)  # every path of the run: layout.sft(seed).model, layout.iteration(seed, "ipr", 1).pairs, ...
Path(out_dir).mkdir(parents=True, exist_ok=True)


def run_until(stage=None):
    """Run the pipeline up to a stage (resuming whatever earlier notebooks already computed)."""
    runner = Runner(cfg, run_dir, stop_after=stage)
    try:
        return runner.run()
    except StopRun:
        return None
    finally:
        runner.close()


def write_metrics(metrics):
    notebook_metrics(out_dir).write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2)[:2000])
'''

NOTEBOOKS = {
    "01_environments": ("# 1. Environments and expert trajectories\n\nThe env adapters, one expert trajectory, and how many "
                        "gold paths replay to success.", [
        '''from iprkit.envs import make_env

env = make_env(cfg.env, **cfg.env_kwargs)
task = env.task_ids(cfg.train_split)[0]
instruction, obs = env.reset(task)
print(instruction, "\\n\\n", obs)''',
        '''from iprkit.trajectory import load_trajectories

run_until("experts")
experts = load_trajectories(layout.experts(cfg.train_split))
t = experts[0]
for s in t.steps:
    print(f"Thought: {s.thought}\\nAction: {s.action}\\n  -> {s.observation[:200]}\\n")''',
        '''report = json.loads(layout.replay_report.read_text())
write_metrics({"env": cfg.env, "tasks": report["tasks"], "replayed_to_success": report["replayed_to_success"],
               "replay_success_rate": report["replayed_to_success"] / max(1, report["tasks"]),
               "avg_expert_steps": sum(len(t.steps) for t in experts) / len(experts)})''']),
    "02_sft": ("# 2. The SFT base agent\n\nSupervised fine-tuning on the expert trajectories, then greedy evaluation on "
               "held-out tasks.", [
        '''run_until(layout.stage(seed, "sft", 0, "eval"))
sft_paths = layout.sft(seed)
# absent when sft_model named a model trained elsewhere
sft = json.loads(sft_paths.metrics.read_text()) if sft_paths.metrics.exists() else {
    "log_history": [], "train_loss": None, "steps": None, "parameters": None}
evals = {split: json.loads(sft_paths.eval.metrics(split).read_text()) for split in sft_paths.eval.splits()}
evals''',
        '''import plotly.graph_objects as go

hist = [h for h in sft["log_history"] if "loss" in h]
go.Figure(go.Scatter(x=[h["step"] for h in hist], y=[h["loss"] for h in hist], mode="lines")).update_layout(
    title="SFT loss", xaxis_title="step", yaxis_title="loss")''',
        '''write_metrics({"train_loss": sft["train_loss"], "steps": sft["steps"], "parameters": sft["parameters"],
               **{f"{split}_success": m["success_rate"] for split, m in evals.items()},
               **{f"{split}_reward": m["avg_reward"] for split, m in evals.items()}})''']),
    "03_mc_rewards": ("# 3. Monte Carlo step rewards\n\nThe agent explores along each expert trajectory; the fixed SFT "
                      "scorer rates the expert's and the agent's action at every step. Click a cell of the heatmap.", [
        '''run_until(layout.stage(seed, "ipr", 1, "score"))
from iprkit.views import load_iteration
from iprkit.figures import heatmap_figure, step_curve_figure

view = load_iteration(run_dir, seed, "ipr", 1)
heatmap_figure(view, "gap")''',
        '''step_curve_figure(view)''',
        '''# a step reward model beside Monte Carlo (mc.estimator=hybrid, from iteration 2): where both scored an action
from iprkit.views import prm_agreement

k_prm = max(layout.iterations(seed, "ipr"), default=1)
agreement = prm_agreement(load_iteration(run_dir, seed, "ipr", k_prm), cfg.pairs.step_margin)
agreement if agreement["estimates"] else print(
    "No step reward model scores in this run: run with mc.estimator=hybrid and iterations>=2 to see them here.")''',
        '''from iprkit.widgets import StepRewardHeatmap

heatmap = StepRewardHeatmap.from_view(view)
heatmap''',
        '''# one task along its steps: the expert's and the agent's step rewards, and each branch's continuation
from iprkit.widgets import trajectory_timeline

trajectory_timeline(view)''',
        '''vals = [(c["expert"]["mc"], c["agent"]["mc"]) for row in view.cells for c in row if c]
sampled = [m for pair in vals for m in pair if m and not m["terminal"]]
write_metrics({"steps_scored": len(vals), "mean_expert_mc": sum(e["mean"] for e, _ in vals if e) / max(1, len(vals)),
               "mean_agent_mc": sum(a["mean"] for _, a in vals if a) / max(1, len(vals)),
               "mixed_outcome_estimates": sum(0 < m["mean"] < 1 for m in sampled), "sampled_estimates": len(sampled)})''']),
    "04_pairs": ("# 4. Contrastive pairs\n\nStep-level pairs (expert vs agent at the same step, both rewards must agree) "
                 "and outcome-level pairs (full rollout vs expert).", [
        '''run_until(layout.stage(seed, "ipr", 1, "pairs"))
from iprkit.views import load_pairs
from iprkit.widgets import pair_browser

stats = json.loads(layout.iteration(seed, "ipr", 1).pair_stats.read_text())
pairs = load_pairs(run_dir, seed)  # every method's pairs so far (IPR's step and outcome pairs, ETO's outcome pairs)
stats''',
        '''pair_browser(pairs)''',
        '''write_metrics(stats)''']),
    "05_iterations": ("# 5. IPR iterations and baselines\n\nThe whole job: SFT, ETO and IPR iterations, evaluated on "
                      "held-out tasks.", [
        '''result = run_until(None)
print(layout.results_md.read_text())''',
        '''from iprkit.figures import learning_curves_figure
from iprkit.widgets import iteration_comparison

# solid: held-out test games (does it generalise?); dashed: the train tasks the iterations explored (does it learn them?)
learning_curves_figure(result["table"])''',
        '''iteration_comparison(result["table"])''',
        '''write_metrics({"table": result["table"]})''']),
    "06_analysis": ("# 6. Analysis\n\nMethod comparison, per-step reward curves by iteration, and action efficiency "
                    "(steps to success, average step reward).", [
        '''from iprkit.views import load_iteration, load_results, step_curve
from iprkit.io import read_jsonl
import plotly.graph_objects as go

from iprkit.stats import format_paired

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
    title="Success rate, last iteration of each method")''',
        '''fig = go.Figure()
for k in layout.iterations(seed, "ipr"):
    c = step_curve(load_iteration(run_dir, seed, "ipr", k))
    if any(v is not None for v in c["agent"]):
        fig.add_trace(go.Scatter(x=c["step"], y=c["agent"], name=f"agent, iteration {k}"))
fig.update_layout(title="Agent MC step reward by step, per iteration", xaxis_title="step")''',
        '''def efficiency(ev):
    rows = [r for split in ev.splits() for _, r in read_jsonl(ev.tasks(split))]
    won = [r for r in rows if r["success"]]
    return {"steps_to_success": sum(r["steps"] for r in won) / len(won) if won else None,
            "avg_steps": sum(r["steps"] for r in rows) / max(1, len(rows)),
            "success": len(won) / max(1, len(rows))}

eff = {"sft": efficiency(layout.sft(seed).eval)}
for method in ("eto", "ipr"):
    if its := layout.iterations(seed, method):
        eff[method] = efficiency(layout.iteration(seed, method, its[-1]).eval)
eff''',
        '''write_metrics({"last_iteration": last, "efficiency": eff})''']),
}


def main():
    out = Path(__file__).resolve().parents[1] / "notebooks"
    out.mkdir(exist_ok=True)
    for name, (title, cells) in NOTEBOOKS.items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = nbf.v4.new_code_cell(PARAMS)
        params.metadata["tags"] = ["parameters"]
        nb.cells = [nbf.v4.new_markdown_cell(title), params, nbf.v4.new_code_cell(SETUP)]
        nb.cells += [nbf.v4.new_code_cell(c) for c in cells]
        for i, c in enumerate(nb.cells):
            c["id"] = f"{name}-{i}"
        nbf.write(nb, out / f"{name}.ipynb")


if __name__ == "__main__":
    main()
