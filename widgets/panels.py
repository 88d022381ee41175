"""Timeline, pair browser and iteration comparison: small ipywidgets over plotly.

Each returns a :class:`Panel` (a VBox) whose output also carries a static HTML copy, shown
where no widget can run (an executed notebook on GitHub or nbviewer).
"""

import html

import ipywidgets as W
import plotly.graph_objects as go

from iprkit.figures import iteration_figure, timeline_figure
from iprkit.report import html_table, pair_html
from iprkit.views import IterationView

class Panel(W.VBox):
    """A VBox that leaves a static HTML copy beside the live widget in a notebook's output."""

    def __init__(self, children, static, **kw):
        super().__init__(children, **kw)
        self._static = static  # () -> HTML of the panel's current state

    def _repr_mimebundle_(self, **kwargs):
        return with_static_html(super()._repr_mimebundle_(**kwargs),
                                self._static() + "<p><i>A static copy: run the notebook to use the controls.</i></p>")


def with_static_html(bundle, static: str):
    """A widget's output bundle (anywidget: (data, metadata); ipywidgets: data) with a static HTML copy added, shown
    where the live widget cannot be."""
    (bundle[0] if isinstance(bundle, tuple) else bundle)["text/html"] = static
    return bundle


def trajectory_timeline(view: IterationView) -> Panel:
    """Pick a task: its expert and agent step rewards along the steps, and each step's branch in a table."""
    pick = W.Dropdown(options=view.tasks, description="task")
    fig = go.FigureWidget()
    table = W.HTML()

    def rows_html(r: int) -> str:
        est = lambda m: "-" if not m else f"{m['mean']:.2f}"
        return html_table(["step", "expert action", "expert MC", "agent action → continuation", "agent MC", "agent final"],
                      [[str(c["step"]), html.escape(c["expert"]["action"]), est(c["expert"]["mc"]),
                        html.escape(" → ".join([c["agent"]["action"], *c["agent"]["continuation"]])), est(c["agent"]["mc"]),
                        str(c["agent"]["final_reward"])] for c in view.cells[r] if c])

    def show(*_):
        r = view.tasks.index(pick.value)
        new = timeline_figure(view.cells[r], pick.value)
        fig.data = []
        for tr in new.data:
            fig.add_trace(tr)
        fig.layout = new.layout
        table.value = rows_html(r)

    pick.observe(show, "value")
    if view.tasks:
        show()
    return Panel([pick, fig, table], lambda: f"<p><b>{html.escape(str(pick.value))}</b></p>" + table.value)


def gap_of(p: dict) -> float | None:
    """How far apart a pair's two sides are: the MC step rewards for a step pair, the final rewards for an outcome
    pair (whose MC values may be missing)."""
    a, b = ("expert_mc", "agent_mc") if p["kind"] == "step" else ("expert_final", "agent_final")
    return None if p.get(a) is None or p.get(b) is None else abs(p[a] - p[b])


def pair_browser(pairs: list[dict]) -> Panel:
    """Filter pairs by method, kind, iteration and gap; each with its whole context, chosen and rejected side by side."""
    method = W.Dropdown(options=["all"] + sorted({p.get("method", "") for p in pairs}), description="method")
    kind = W.Dropdown(options=["all", "step", "outcome"], description="kind")
    its = sorted({p["iteration"] for p in pairs}) or [1]
    it = W.Dropdown(options=["all"] + its, description="iteration")
    gap = W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="min gap",
                        tooltip="step pairs: MC step rewards apart; outcome pairs: final rewards apart")
    index = W.IntSlider(value=0, min=0, max=0, description="pair")
    out = W.HTML()

    def matches():
        return [p for p in pairs if (method.value == "all" or p.get("method") == method.value)
                and (kind.value == "all" or p["kind"] == kind.value)
                and (it.value == "all" or p["iteration"] == it.value)
                and (gap.value == 0 or (gap_of(p) or 0) >= gap.value)]

    def show(*_):
        ms = matches()
        index.max = max(0, len(ms) - 1)
        if not ms:
            out.value = "<i>no pair matches</i>"
            return
        out.value = f"<div>{len(ms)} pairs match; pair {min(index.value, len(ms) - 1)}</div>" + pair_html(
            ms[min(index.value, len(ms) - 1)])

    for w in (method, kind, it, gap, index):
        w.observe(show, "value")
    show()
    return Panel([W.HBox([method, kind]), W.HBox([it, gap]), index, out], lambda: out.value)


def iteration_comparison(table: list[dict]) -> Panel:
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
    static = lambda: html_table(["method", "iteration", "success", "reward", "seeds"], [
        [r["method"], str(r["iteration"]), f"{r['success_mean']:.3f} ± {r['success_std']:.3f}",
         f"{r['reward_mean']:.3f} ± {r['reward_std']:.3f}", str(r["seeds"])] for r in table])
    return Panel([metric, fig], static)
