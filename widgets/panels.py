"""Timeline, pair browser and iteration comparison: small ipywidgets over plotly."""

import html

import ipywidgets as W
import plotly.graph_objects as go

from iprkit.figures import iteration_figure, timeline_figure
from iprkit.views import IterationView


def trajectory_timeline(view: IterationView) -> W.VBox:
    """Pick a task: its expert and agent step rewards along the steps, and the branches."""
    pick = W.Dropdown(options=view.tasks, description="task")
    fig = go.FigureWidget()
    table = W.HTML()

    def show(*_):
        r = view.tasks.index(pick.value)
        new = timeline_figure(view.cells[r], pick.value)
        fig.data = []
        for tr in new.data:
            fig.add_trace(tr)
        fig.layout = new.layout
        rows = "".join(f"<tr><td>{c['step']}</td><td>{html.escape(c['expert']['action'])}</td>"
                       f"<td>{html.escape(c['agent']['action'])} → {html.escape(' → '.join(c['agent']['continuation']))}</td>"
                       f"<td>{c['agent']['final_reward']}</td></tr>" for c in view.cells[r] if c)
        table.value = f"<table><tr><th>step</th><th>expert</th><th>agent branch</th><th>agent final</th></tr>{rows}</table>"

    pick.observe(show, "value")
    show()
    return W.VBox([pick, fig, table])


def pair_browser(pairs: list[dict]) -> W.VBox:
    """Filter pairs by kind, iteration and MC gap; chosen and rejected side by side."""
    kind = W.Dropdown(options=["all", "step", "outcome"], description="kind")
    its = sorted({p["iteration"] for p in pairs}) or [1]
    it = W.Dropdown(options=["all"] + its, description="iteration")
    gap = W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="min gap")
    index = W.IntSlider(value=0, min=0, max=0, description="pair")
    out = W.HTML()

    def matches():
        return [p for p in pairs if (kind.value == "all" or p["kind"] == kind.value)
                and (it.value == "all" or p["iteration"] == it.value)
                and abs((p.get("expert_mc") or 0) - (p.get("agent_mc") or 0)) >= gap.value]

    def turns(msgs):
        return "".join(f"<div><b>{m['role']}</b>: {html.escape(m['content'])}</div>" for m in msgs)

    def show(*_):
        ms = matches()
        index.max = max(0, len(ms) - 1)
        if not ms:
            out.value = "<i>no pair matches</i>"
            return
        p = ms[min(index.value, len(ms) - 1)]
        out.value = (f"<div>{len(ms)} pairs; {p['method']} iteration {p['iteration']}, {p['kind']} pair at step {p['step']} of "
                     f"{html.escape(p['task_id'])}, {p['winner']} chosen{decided_by(p)}</div><div style='display:flex;gap:12px'>"
                     f"<div style='flex:1'><h4>chosen</h4>{turns(p['chosen'])}</div>"
                     f"<div style='flex:1'><h4>rejected</h4>{turns(p['rejected'])}</div></div>")

    for w in (kind, it, gap, index):
        w.observe(show, "value")
    show()
    return W.VBox([W.HBox([kind, it, gap]), index, out])


def decided_by(pair: dict) -> str:
    """Which estimators made the step rewards that decided a step pair (``mc.estimator``), as a clause."""
    est = pair.get("estimators")
    return f"; step rewards by {', '.join(f'{side}: {e}' for side, e in est.items())}" if est else ""


def iteration_comparison(table: list[dict]) -> W.VBox:
    """Success or reward by iteration and method."""
    metric = W.ToggleButtons(options=["success", "reward"])
    fig = go.FigureWidget(iteration_figure(table, "success"))

    def show(*_):
        new = iteration_figure(table, metric.value)
        with fig.batch_update():
            for tr, nt in zip(fig.data, new.data):
                tr.y, tr.error_y = nt.y, nt.error_y
            fig.layout.title = new.layout.title
            fig.layout.yaxis.title = new.layout.yaxis.title

    metric.observe(show, "value")
    return W.VBox([metric, fig])
