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


SORTS = {"task": "task id", "gap": "mean gap, largest first", "pairs": "step pairs, most first",
         "agent": "agent's step reward, lowest first"}
"""How the heatmap can order its rows (the widget's "sort" menu): key -> what it means."""

STATIC_ROWS = 100
"""The static twin draws at most this many rows (in the widget's order and filter); the live widget scrolls."""


def _mean(values) -> float | None:
    vs = [v for v in values if v is not None]
    return sum(vs) / len(vs) if vs else None


def row_order(tasks: list[str], cells: list[list], gap: list[list], agent_mc: list[list], sort: str = "task",
              query: str = "", pairs_only: bool = False) -> list[int]:
    """The rows the heatmap shows, in order: tasks whose id or instruction contains ``query`` (any case), only those
    with a step pair when ``pairs_only``, sorted by ``sort`` (:data:`SORTS`; ties and rows without values keep the
    task order, rows without values last)."""
    q = query.strip().lower()

    def keep(r: int) -> bool:
        row = [c for c in (cells[r] if r < len(cells) else []) if c]
        if pairs_only and not any(c.get("pair") for c in row):
            return False
        return not q or q in tasks[r].lower() or any(q in str(c.get("instruction", "")).lower() for c in row[:1])

    def key(r: int):
        if sort == "task":
            return (0, 0.0)
        if sort == "pairs":
            return (0, -sum(1 for c in cells[r] if c and c.get("pair")))
        m = _mean(gap[r] if sort == "gap" else agent_mc[r])
        return (1, 0.0) if m is None else (0, -m if sort == "gap" else m)

    if sort not in SORTS:
        raise ValueError(f"sort={sort!r}: choose one of {', '.join(SORTS)}")
    return sorted((r for r in range(len(tasks)) if keep(r)), key=lambda r: (key(r), r))


class StepRewardHeatmap(anywidget.AnyWidget):
    """Tasks by steps, colour = MC step reward (expert, agent, or their gap). Rows can be sorted (``sort``, one of
    :data:`SORTS`), filtered by text (``query``) and to tasks with a step pair (``pairs_only``); ``rows`` is what the
    widget shows, in order (kept by Python, so the browser and the kernel agree). The grid scrolls past a screenful."""

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
    sort = traitlets.Enum(list(SORTS), default_value="task").tag(sync=True)
    sorts = traitlets.Dict(SORTS).tag(sync=True)
    query = traitlets.Unicode("").tag(sync=True)
    pairs_only = traitlets.Bool(False).tag(sync=True)
    rows = traitlets.List(traitlets.Int()).tag(sync=True)
    detail = traitlets.Unicode("")

    @traitlets.observe("sort", "query", "pairs_only", "tasks", "cells", "gap", "agent_mc")  # also at construction
    def _reorder(self, change=None):
        self.rows = row_order(self.tasks, self.cells, self.gap, self.agent_mc, self.sort, self.query, self.pairs_only)

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
            f"StepRewardHeatmap: {len(self.rows)} of {len(self.tasks)} tasks x {self.steps} steps, colour {self.mode}, "
            f"sorted by {SORTS[self.sort]}")
        return bundle


def static_html(w: StepRewardHeatmap) -> str:
    """The heatmap as plain HTML (inline styles, no script): its grid, legend and marks, and a note that clicking
    needs a live kernel."""
    title, lo, hi, _ = MODES[w.mode]
    m = {"gap": w.gap, "expert": w.expert_mc, "agent": w.agent_mc}[w.mode]
    rows, shown = [], w.rows[:STATIC_ROWS]
    for r in shown:
        task = w.tasks[r]
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
            f"cells and see each step.</i> {len(shown)} of {len(w.tasks)} tasks, sorted by {SORTS[w.sort]}"
            f"{f', matching {w.query!r}' if w.query else ''}{', with a step pair' if w.pairs_only else ''}.</p>"
            "<div style='max-height:600px;overflow:auto'><table style='border-collapse:collapse'><tr><th><i>task \\ step"
            f"</i></th>{head}</tr>{''.join(rows)}</table></div></div>")
