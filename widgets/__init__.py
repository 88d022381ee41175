"""iprkit.widgets: the Jupyter UI (installed from widgets/ under this name).

- :class:`StepRewardHeatmap`: tasks by steps, colour = MC step reward; click a cell for its details.
- :func:`trajectory_timeline`, :func:`pair_browser`, :func:`iteration_comparison`: ipywidgets over plotly.

Each has a static plotly twin in :mod:`iprkit.figures` for headless runs and the HTML report.
"""

from iprkit.widgets.heatmap import StepRewardHeatmap, detail_text
from iprkit.widgets.panels import iteration_comparison, pair_browser, trajectory_timeline

__all__ = ["StepRewardHeatmap", "detail_text", "iteration_comparison", "pair_browser", "trajectory_timeline"]
