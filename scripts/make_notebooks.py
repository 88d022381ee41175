"""Writes notebooks/*.ipynb from the cell sources below (one source of truth, no outputs).

    python scripts/make_notebooks.py
"""

from pathlib import Path

import nbformat as nbf

PARAMS = '''# parameters (papermill injects its own values after this cell)
preset = "smoke"          # smoke | demo | paper
run_dir = "runs/notebooks" # the pipeline's run directory, shared by the whole sequence
out_dir = "runs/notebooks/nb"  # this notebook's outputs (metrics.json)
seed = 0
overrides = []            # RunConfig overrides, written as on the iprkit run command line
'''

SETUP = '''import json
from pathlib import Path

from iprkit.config import load_config
from iprkit.loop import RunConfig, Runner, StopRun
from iprkit.presets import RUN_PRESETS

cfg = load_config(RunConfig, None, ["methods=[sft,ipr,eto]", f"seeds=[{seed}]", *overrides], base=RUN_PRESETS[preset])
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
    (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
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
        '''runner = Runner(cfg, run_dir)
experts = runner.experts()
runner.close()
t = experts[0]
for s in t.steps:
    print(f"Thought: {s.thought}\\nAction: {s.action}\\n  -> {s.observation[:200]}\\n")''',
        '''report = json.loads((Path(run_dir) / "experts" / "replay_report.json").read_text())
write_metrics({"env": cfg.env, "tasks": report["tasks"], "replayed_to_success": report["replayed_to_success"],
               "replay_success_rate": report["replayed_to_success"] / max(1, report["tasks"]),
               "avg_expert_steps": sum(len(t.steps) for t in experts) / len(experts)})''']),
    "02_sft": ("# 2. The SFT base agent\n\nSupervised fine-tuning on the expert trajectories, then greedy evaluation on "
               "held-out tasks.", [
        '''run_until(f"seed{seed}/sft/eval")
sft_dir = Path(run_dir) / f"seed{seed}" / "sft"
metrics_path = sft_dir / "sft_metrics.json"  # absent when sft_model named a model trained elsewhere
sft = json.loads(metrics_path.read_text()) if metrics_path.exists() else {"log_history": [], "train_loss": None,
                                                                          "steps": None, "parameters": None}
evals = {p.name.split("_")[0]: json.loads(p.read_text()) for p in (sft_dir / "eval").glob("*_metrics.json")}
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
        '''run_until("ipr/iter1/score")
from iprkit.inspect import load_iteration
from iprkit.figures import heatmap_figure, step_curve_figure

view = load_iteration(run_dir, seed, "ipr", 1)
heatmap_figure(view, "gap")''',
        '''step_curve_figure(view)''',
        '''from iprkit.widgets import StepRewardHeatmap

heatmap = StepRewardHeatmap.from_view(view)
heatmap''',
        '''vals = [(c["expert"]["mc"], c["agent"]["mc"]) for row in view.cells for c in row if c]
sampled = [m for pair in vals for m in pair if m and not m["terminal"]]
write_metrics({"steps_scored": len(vals), "mean_expert_mc": sum(e["mean"] for e, _ in vals if e) / max(1, len(vals)),
               "mean_agent_mc": sum(a["mean"] for _, a in vals if a) / max(1, len(vals)),
               "mixed_outcome_estimates": sum(0 < m["mean"] < 1 for m in sampled), "sampled_estimates": len(sampled)})''']),
    "04_pairs": ("# 4. Contrastive pairs\n\nStep-level pairs (expert vs agent at the same step, both rewards must agree) "
                 "and outcome-level pairs (full rollout vs expert).", [
        '''run_until("ipr/iter1/pairs")
from iprkit.inspect import load_pairs
from iprkit.widgets import pair_browser

stats = json.loads((Path(run_dir) / f"seed{seed}" / "ipr" / "iter1" / "pair_stats.json").read_text())
pairs = load_pairs(run_dir, seed, ["ipr"])
stats''',
        '''pair_browser(pairs)''',
        '''write_metrics(stats)''']),
    "05_iterations": ("# 5. IPR iterations and baselines\n\nThe whole job: SFT, ETO and IPR iterations, evaluated on "
                      "held-out tasks.", [
        '''result = run_until(None)
print((Path(run_dir) / "results.md").read_text())''',
        '''from iprkit.figures import iteration_figure
from iprkit.widgets import iteration_comparison

iteration_figure(result["table"], "success")''',
        '''iteration_comparison(result["table"])''',
        '''write_metrics({"table": result["table"]})''']),
    "06_analysis": ("# 6. Analysis\n\nMethod comparison, per-step reward curves by iteration, and action efficiency "
                    "(steps to success, average step reward).", [
        '''from iprkit.inspect import load_iteration, load_results, step_curve
from iprkit.io import read_jsonl
import plotly.graph_objects as go

results = load_results(run_dir)
last = {}
for r in results["table"]:
    last[r["method"]] = r
go.Figure(go.Bar(x=list(last), y=[r["success_mean"] for r in last.values()],
                 error_y={"array": [r["success_std"] for r in last.values()]})).update_layout(
    title="Success rate, last iteration of each method")''',
        '''fig = go.Figure()
k = 1
while (Path(run_dir) / f"seed{seed}" / "ipr" / f"iter{k}" / "step_rewards.jsonl").exists():
    c = step_curve(load_iteration(run_dir, seed, "ipr", k))
    if any(v is not None for v in c["agent"]):
        fig.add_trace(go.Scatter(x=c["step"], y=c["agent"], name=f"agent, iteration {k}"))
    k += 1
fig.update_layout(title="Agent MC step reward by step, per iteration", xaxis_title="step")''',
        '''def efficiency(d):
    rows = [r for p in (d / "eval").glob("*_tasks.jsonl") for _, r in read_jsonl(p)]
    won = [r for r in rows if r["success"]]
    return {"steps_to_success": sum(r["steps"] for r in won) / len(won) if won else None,
            "avg_steps": sum(r["steps"] for r in rows) / max(1, len(rows)),
            "success": len(won) / max(1, len(rows))}

eff = {"sft": efficiency(Path(run_dir) / f"seed{seed}" / "sft")}
for method in ("eto", "ipr"):
    its = sorted((Path(run_dir) / f"seed{seed}" / method).glob("iter*"), key=lambda p: int(p.name[4:]))
    if its:
        eff[method] = efficiency(its[-1])
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
