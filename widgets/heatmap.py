"""The step-reward heatmap widget (anywidget; ESM and CSS shipped in ``static/``, no CDN).

Synced state: the matrices, per-cell details, the colour ``mode`` and the ``selected``
cell. Clicking a cell in the browser sets ``selected``; the Python side keeps
``detail`` (plain text of the selected step) in step, for notebooks and tests.
"""

from pathlib import Path

import anywidget
import traitlets

from iprkit.views import IterationView

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
