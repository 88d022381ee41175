"""Every widget in JupyterLab itself (light and dark theme), driven by Chromium: the step-reward heatmap (legend,
a click updates the detail, a filter round-trips through the kernel), the trajectory timeline, the pair browser and the iteration comparison (a toggle
redraws the figure). A notebook made here on a finished smoke run; screenshots under ``test-artifacts/``."""

import json
import sys

import pytest

from conftest import ARTIFACTS, REPO

sys.path.insert(0, str(REPO / "scripts"))
from screenshots import THEMES, chromium, jupyterlab, run_notebook  # noqa: E402

pytestmark = pytest.mark.slow

CELLS = [
    "RUN = {run!r}\nfrom iprkit.views import load_iteration, load_pairs, load_results\n"
    "from iprkit.widgets import StepRewardHeatmap, iteration_comparison, pair_browser, trajectory_timeline\n"
    "view = load_iteration(RUN, 0, 'ipr', 1)",
    "StepRewardHeatmap.from_view(view)",
    "trajectory_timeline(view)",
    "pair_browser(load_pairs(RUN, 0))",
    "iteration_comparison(load_results(RUN)['table'])",
]


def _notebook(run) -> dict:
    cell = lambda src: {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": src}
    return {"cells": [cell(c.format(run=str(run))) for c in CELLS], "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}, "nbformat": 4,
        "nbformat_minor": 5}


@pytest.fixture(scope="module")
def lab(smoke_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    (root / "widgets.ipynb").write_text(json.dumps(_notebook(smoke_run[0])))
    with jupyterlab(root) as base:
        yield base


@pytest.mark.parametrize("theme", list(THEMES))
def test_every_widget_renders_and_answers_clicks_in_jupyterlab(lab, theme):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = chromium(p)
        try:
            page = run_notebook(browser, lab, "widgets.ipynb", theme, "text=Instruction:", timeout_s=300)
            page.wait_for_selector(".iprkit-legend")
            # the heatmap: its legend, then a click on a scored cell fills the detail panel
            legend = page.inner_text(".iprkit-legend")
            assert "MC step reward" in legend and "not scored" in legend
            assert "Click a cell" in page.inner_text(".iprkit-detail")
            page.click("td.iprkit-cell:not(.iprkit-missing) >> nth=0")
            page.wait_for_function("!document.querySelector('.iprkit-detail').innerText.includes('Click a cell')")
            assert ", step " in page.inner_text(".iprkit-detail")
            # a filter goes to the kernel, which sends back the rows to show (no kernel, no change)
            shown = page.inner_text(".iprkit-count")
            page.fill("input.iprkit-query", "no-such-task")
            page.wait_for_function("document.querySelector('.iprkit-count').textContent.startsWith('0 of')")
            assert "no task matches" in page.inner_text(".iprkit-scroll")
            page.fill("input.iprkit-query", "")
            page.select_option("select.iprkit-sort", "pairs")
            page.wait_for_function(f"document.querySelector('.iprkit-count').textContent === {shown!r}")
            # the timeline and the iteration comparison are plotly figures; the pair browser shows a pair
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=60_000)
            assert "pairs match" in page.inner_text("body")
            titles = lambda: page.eval_on_selector_all(".gtitle", "es => es.map(e => e.textContent)")
            assert any("uccess" in t for t in titles()), titles()
            page.click("button:has-text('reward')")  # the comparison's toggle redraws its figure
            page.wait_for_function("[...document.querySelectorAll('.gtitle')].some(e => /eward/.test(e.textContent))")
            # the theme: JupyterLab's own, and the widgets follow it
            assert page.get_attribute("body", "data-jp-theme-light") == ("true" if theme == "light" else "false")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"jupyterlab_widgets_{theme}.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / f"jupyterlab_widgets_{theme}.png").stat().st_size > 10_000
