"""Static plotly figures of a run, for headless notebooks and the HTML report.

Each widget in ``iprkit.widgets`` has its static twin here; these need only plotly.
"""

import plotly.graph_objects as go

from iprkit.views import IterationView, step_curve


def heatmap_figure(view: IterationView, mode: str = "gap") -> go.Figure:
    """Tasks by steps, colour = MC step reward (``expert``, ``agent``, or their ``gap``)."""
    z = {"expert": view.expert_mc, "agent": view.agent_mc, "gap": view.gap()}[mode]
    text = [[("pair: " + c["pair"]) if c and c.get("pair") else "" for c in row] for row in view.cells]
    fig = go.Figure(go.Heatmap(z=z, x=[f"step {s}" for s in range(view.steps)], y=view.tasks, text=text,
                               colorscale="RdBu" if mode == "gap" else "Viridis", zmid=0 if mode == "gap" else None,
                               hovertemplate="%{y} %{x}<br>value %{z:.2f}<br>%{text}<extra></extra>"))
    fig.update_layout(title=f"MC step reward ({mode})", height=max(300, 22 * len(view.tasks) + 120))
    return fig


def step_curve_figure(view: IterationView) -> go.Figure:
    c = step_curve(view)
    fig = go.Figure()
    for side in ("expert", "agent"):
        fig.add_trace(go.Scatter(x=c["step"], y=c[side], mode="lines+markers", name=side))
    fig.update_layout(title="Mean MC step reward by step", xaxis_title="step", yaxis_title="MC step reward")
    return fig


def timeline_figure(cell_row: list[dict | None], task_id: str) -> go.Figure:
    """One task: expert and agent MC step rewards along the steps, with the actions as labels."""
    cells = [c for c in cell_row if c]
    fig = go.Figure()
    for side in ("expert", "agent"):
        ys = [c[side]["mc"]["mean"] if c[side]["mc"] else None for c in cells]
        err = [c[side]["mc"]["std"] if c[side]["mc"] else 0 for c in cells]
        fig.add_trace(go.Scatter(x=[c["step"] for c in cells], y=ys, error_y={"array": err}, mode="lines+markers+text",
                                 text=[c[side]["action"] for c in cells], textposition="top center", name=side))
    fig.update_layout(title=f"{task_id}: step rewards along the trajectory", xaxis_title="step", yaxis_title="MC step reward")
    return fig


def iteration_figure(table: list[dict], metric: str = "success") -> go.Figure:
    """Success (or reward) by iteration, one line per method, error bars = std over seeds."""
    fig = go.Figure()
    for method in dict.fromkeys(r["method"] for r in table):
        rows = [r for r in table if r["method"] == method]
        fig.add_trace(go.Scatter(x=[r["iteration"] for r in rows], y=[r[f"{metric}_mean"] for r in rows],
                                 error_y={"array": [r[f"{metric}_std"] for r in rows]}, mode="lines+markers", name=method))
    fig.update_layout(title=f"{metric} by iteration", xaxis_title="iteration", yaxis_title=metric)
    return fig


def learning_curves_figure(table: list[dict]) -> go.Figure:
    """Success by iteration per method on the held-out games (solid) and on the explored train tasks (dashed):
    "generalises" and "learns what it explores" side by side."""
    fig = go.Figure()
    for method in dict.fromkeys(r["method"] for r in table):
        rows = [r for r in table if r["method"] == method]
        for key, dash, where in (("success", "solid", "held-out"), ("explored_success", "dash", "explored")):
            if all(f"{key}_mean" in r for r in rows):
                fig.add_trace(go.Scatter(x=[r["iteration"] for r in rows], y=[r[f"{key}_mean"] for r in rows],
                                         error_y={"array": [r[f"{key}_std"] for r in rows]}, mode="lines+markers",
                                         line={"dash": dash}, name=f"{method}, {where}"))
    fig.update_layout(title="Success by iteration: held-out games and explored tasks", xaxis_title="iteration",
                      yaxis_title="success rate", xaxis={"dtick": 1})
    return fig


def pairs_figure(pairs: list[dict]) -> go.Figure:
    """Pairs per method and iteration, by kind and winner."""
    keys = sorted({(p["method"], p["iteration"]) for p in pairs})
    fig = go.Figure()
    for kind in ("step", "outcome"):
        for win in ("expert", "agent"):
            fig.add_trace(go.Bar(x=[f"{m} it{k}" for m, k in keys], name=f"{kind}/{win} chosen",
                                 y=[sum(p["kind"] == kind and p["winner"] == win and (p["method"], p["iteration"]) == key
                                        for p in pairs) for key in keys]))
    fig.update_layout(barmode="stack", title="Contrastive pairs")
    return fig
