"""The step-reward heatmap widget (anywidget; ESM and CSS shipped in ``static/``, no CDN).

Synced state: the matrices, per-cell details, the colour ``mode`` (buttons in the widget),
its colour ``scales`` (from :data:`iprkit.figures.MODES`, shared with the static twins) and
the ``selected`` cell. Clicking a cell in the browser sets ``selected``; the Python side keeps
``detail`` (plain text of the selected step) in step, for notebooks and tests.

Where no widget can run (an executed notebook opened on GitHub, nbviewer, a viewer without
the widget manager) the output carries a static HTML twin: the same grid, legend and marks.
"""

import html

from pathlib import Path

import anywidget
import traitlets

from iprkit.figures import MODES, colour
from iprkit.views import IterationView
from iprkit.widgets.panels import with_static_html

STATIC = Path(__file__).parent / "static"


def detail_text(cell: dict | None) -> str:
    """What the detail panel says about a step, as plain text."""
    if not cell:
        return ""
    pair = f"became a step pair ({cell['pair']} chosen)" if cell.get("pair") else "no step pair"
    lines = [f"{cell['task_id']} step {cell['step']}: {pair}"]
    for side in ("expert", "agent"):
        s, mc = cell[side], cell[side]["mc"]
        lines.append(f"{side}: {s['action']} | {estimate_text(mc)} | final {s['final_reward']}")
    return "\n".join(lines)


def estimate_text(mc: dict | None) -> str:
    """A step reward and who made it: Monte Carlo (mean ± std, n), the env (terminal) or the step reward model,
    with the model's score beside a Monte Carlo mean where it scored the step too (``mc.estimator=hybrid``)."""
    if not mc:
        return "MC n/a"
    if mc["terminal"]:
        return f"env reward {mc['mean']:.2f} (terminal)"
    if mc.get("estimator") == "prm":
        return f"PRM {mc['mean']:.2f} (no rollouts)"
    prm = f", PRM {mc['prm']:.2f}" if mc.get("prm") is not None else ""
    return f"MC {mc['mean']:.2f} ± {mc['std']:.2f} (n={mc['n']}){prm}"


class StepRewardHeatmap(anywidget.AnyWidget):
    """Tasks by steps, colour = MC step reward (expert, agent, or their gap)."""

    _esm = STATIC / "heatmap.js"
    _css = STATIC / "heatmap.css"
    tasks = traitlets.List(traitlets.Unicode()).tag(sync=True)
    steps = traitlets.Int(0).tag(sync=True)
    expert_mc = traitlets.List().tag(sync=True)
    agent_mc = traitlets.List().tag(sync=True)
    gap = traitlets.List().tag(sync=True)
    cells = traitlets.List().tag(sync=True)
    mode = traitlets.Enum(["gap", "expert", "agent"], default_value="gap").tag(sync=True)
    scales = traitlets.Dict({k: list(v) for k, v in MODES.items()}).tag(sync=True)
    selected = traitlets.List(traitlets.Int(), default_value=[]).tag(sync=True)
    detail = traitlets.Unicode("")

    @classmethod
    def from_view(cls, view: IterationView, **kw) -> "StepRewardHeatmap":
        return cls(tasks=view.tasks, steps=view.steps, expert_mc=view.expert_mc, agent_mc=view.agent_mc,
                   gap=view.gap(), cells=view.cells, **kw)

    @traitlets.observe("selected")
    def _on_select(self, change):
        sel = change["new"]
        cell = self.cells[sel[0]][sel[1]] if len(sel) == 2 and sel[0] < len(self.cells) and sel[1] < len(self.cells[sel[0]]) else None
        self.detail = detail_text(cell)

    def click(self, row: int, col: int) -> None:
        """What a click in the browser does: select that cell."""
        self.selected = [row, col]

    def _repr_mimebundle_(self, **kwargs):
        bundle = with_static_html(super()._repr_mimebundle_(**kwargs), static_html(self))
        (bundle[0] if isinstance(bundle, tuple) else bundle)["text/plain"] = (
            f"StepRewardHeatmap: {len(self.tasks)} tasks x {self.steps} steps, colour {self.mode}")
        return bundle


def static_html(w: StepRewardHeatmap) -> str:
    """The heatmap as plain HTML (inline styles, no script): its grid, legend and marks, and a note that clicking
    needs a live kernel."""
    title, lo, hi, _ = MODES[w.mode]
    m = {"gap": w.gap, "expert": w.expert_mc, "agent": w.agent_mc}[w.mode]
    rows = []
    for r, task in enumerate(w.tasks):
        tds = []
        for s in range(w.steps):
            v = m[r][s] if s < len(m[r]) else None
            c = w.cells[r][s] if s < len(w.cells[r]) else None
            mark = {"expert": "E", "agent": "A"}.get((c or {}).get("pair"), "")
            col = colour(v, w.mode)
            style = (f"background:rgb{col};color:{'#111' if 0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2] > 140 else '#fff'}"
                     if col else "background:repeating-linear-gradient(45deg,#ccc 0 2px,transparent 2px 6px)")
            tip = f"{v:.2f}" if v is not None else "not scored"
            tds.append(f"<td title='{tip}' style='{style};width:30px;height:22px;text-align:center;font-weight:bold;"
                       f"border:1px solid #fff'>{mark}</td>")
        rows.append(f"<tr><th style='text-align:right;font-weight:normal;padding:0 6px'>{html.escape(task)}</th>{''.join(tds)}</tr>")
    head = "".join(f"<th style='font-weight:normal'>{s}</th>" for s in range(w.steps))
    return (f"<div><p><b>{html.escape(title)}</b> ({lo} to {hi}{'; red: agent better, blue: expert better' if w.mode == 'gap' else ''}); "
            "striped: not scored; E / A: step pair, expert / agent chosen. <i>A static copy: run the notebook to click "
            "cells and see each step.</i></p><table style='border-collapse:collapse'><tr><th><i>task \\ step</i></th>"
            f"{head}</tr>{''.join(rows)}</table></div>")
