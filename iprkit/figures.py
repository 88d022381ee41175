"""Static plotly figures of a run, for headless notebooks and the HTML report.

Each widget in ``iprkit.widgets`` has its static twin here; these need only plotly.
"""

import plotly.graph_objects as go

from iprkit.views import IterationView, step_curve


GAP_SCALE = [(0.0, (178, 24, 43)), (0.5, (247, 247, 247)), (1.0, (33, 102, 172))]
"""Expert minus agent MC step reward, -1..1: red where the agent's action scored higher, blue where the expert's did."""
VALUE_SCALE = [(0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
               (1.0, (253, 231, 37))]
"""One side's MC step reward, 0..1 (Viridis)."""
MODES = {"gap": ("expert − agent MC step reward", -1.0, 1.0, GAP_SCALE),
         "expert": ("expert's MC step reward", 0.0, 1.0, VALUE_SCALE),
         "agent": ("agent's MC step reward", 0.0, 1.0, VALUE_SCALE)}
"""Heatmap modes: what the colour means, its range and scale (the widget and its static twins share these)."""


def colour(v: float | None, mode: str = "gap") -> tuple[int, int, int] | None:
    """The heatmap's colour of a value in ``mode`` (None: not scored)."""
    if v is None:
        return None
    _, lo, hi, scale = MODES[mode]
    t = min(1.0, max(0.0, (v - lo) / (hi - lo)))
    for (p0, c0), (p1, c1) in zip(scale, scale[1:]):
        if t <= p1:
            f = (t - p0) / (p1 - p0) if p1 > p0 else 0.0
            return tuple(round(a + (b - a) * f) for a, b in zip(c0, c1))
    return scale[-1][1]


def heatmap_figure(view: IterationView, mode: str = "gap") -> go.Figure:
    """Tasks by steps, colour = MC step reward (``expert``, ``agent``, or their ``gap``); first task on top, as in
    the widget; E / A where a step pair formed (expert / agent chosen)."""
    z = {"expert": view.expert_mc, "agent": view.agent_mc, "gap": view.gap()}[mode]
    title, lo, hi, scale = MODES[mode]
    marks = [[{"expert": "E", "agent": "A"}.get(c.get("pair"), "") if c else "" for c in row] for row in view.cells]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(view.steps)), y=view.tasks, text=marks, texttemplate="%{text}",
                               colorscale=[[p, f"rgb{c}"] for p, c in scale], zmin=lo, zmax=hi,
                               colorbar={"title": {"text": title, "side": "right"}}, xgap=1, ygap=1,
                               hovertemplate="%{y}, step %{x}<br>value %{z:.2f}<br>%{text}<extra></extra>"))
    fig.update_layout(title=f"{title} (blank: not scored; E / A: step pair, expert / agent chosen)",
                      height=max(320, 24 * len(view.tasks) + 140), plot_bgcolor="rgba(0,0,0,0)",
                      xaxis={"title": "step", "dtick": 1, "side": "top"}, yaxis={"title": "task", "autorange": "reversed"})
    return fig


def step_curve_figure(view: IterationView) -> go.Figure:
    c = step_curve(view)
    fig = go.Figure()
    for side in ("expert", "agent"):
        fig.add_trace(go.Scatter(x=c["step"], y=c[side], mode="lines+markers", name=side))
    fig.update_layout(title="Mean MC step reward by step", xaxis_title="step", yaxis_title="MC step reward",
                      xaxis={"dtick": 1}, yaxis={"range": [-0.05, 1.05]})
    return fig


def timeline_figure(cell_row: list[dict | None], task_id: str) -> go.Figure:
    """One task: expert and agent MC step rewards along the steps (error bars: std of the rollouts); the actions
    are in the hover text and in the table under the widget, so labels never clip or overlap."""
    cells = [c for c in cell_row if c]
    fig = go.Figure()
    for side, symbol in (("expert", "circle"), ("agent", "diamond")):
        ys = [c[side]["mc"]["mean"] if c[side]["mc"] else None for c in cells]
        err = [c[side]["mc"]["std"] if c[side]["mc"] else 0 for c in cells]
        fig.add_trace(go.Scatter(x=[c["step"] for c in cells], y=ys, error_y={"array": err}, mode="lines+markers",
                                 marker={"symbol": symbol, "size": 9}, name=side, customdata=[c[side]["action"] for c in cells],
                                 hovertemplate=f"{side}, step %{{x}}: %{{customdata}}<br>MC %{{y:.2f}}<extra></extra>"))
    fig.update_layout(title=f"{task_id}: MC step rewards along the expert's trajectory", xaxis_title="step",
                      yaxis_title="MC step reward", xaxis={"dtick": 1}, yaxis={"range": [-0.05, 1.05]},
                      margin={"l": 60, "r": 30}, legend={"orientation": "h", "y": -0.2})
    return fig


_DASHES = ["solid", "dash", "dot", "dashdot", "longdash"]
_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x"]


def iteration_figure(table: list[dict], metric: str = "success") -> go.Figure:
    """Success (or reward) by iteration, one line per method, error bars = std over seeds. Each method has its own
    dash and marker, and lines sit a little apart, so methods with equal values stay visible."""
    fig = go.Figure()
    methods = list(dict.fromkeys(r["method"] for r in table))
    for i, method in enumerate(methods):
        rows = [r for r in table if r["method"] == method]
        shift = (i - (len(methods) - 1) / 2) * 0.04
        fig.add_trace(go.Scatter(x=[r["iteration"] + shift for r in rows], y=[r[f"{metric}_mean"] for r in rows],
                                 error_y={"array": [r[f"{metric}_std"] for r in rows]}, mode="lines+markers", name=method,
                                 line={"dash": _DASHES[i % 5]}, marker={"symbol": _SYMBOLS[i % 5], "size": 9},
                                 hovertemplate=f"{method}, iteration %{{x:.0f}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=f"{metric} by iteration (mean ± std over seeds)", xaxis_title="iteration",
                      yaxis_title=f"{metric} rate" if metric == "success" else "average final reward",
                      xaxis={"dtick": 1}, yaxis={"range": [0, 1.02]}, autosize=True)
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
                      yaxis_title="success rate", xaxis={"dtick": 1}, yaxis={"range": [0, 1.02]})
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
    fig.update_layout(barmode="stack", title="Contrastive pairs by method and iteration", xaxis_title="method, iteration",
                      yaxis_title="pairs")
    return fig
