"""Widgets: the heatmap's synced state and detail panel, the panels, static figures,
and one real-browser click (Playwright driving Debian's chromium)."""

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from conftest import REPO
from iprkit.figures import heatmap_figure, iteration_figure, pairs_figure, step_curve_figure, timeline_figure
from iprkit.views import load_iteration, load_pairs, to_json
from iprkit.widgets import StepRewardHeatmap, iteration_comparison, pair_browser, trajectory_timeline

ARTIFACTS = Path(os.environ.get("IPRKIT_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture(scope="module")
def view(smoke_run):
    return load_iteration(smoke_run[0], 0, "ipr", 1)


def _first_cell(view):
    return next((r, s) for r, row in enumerate(view.cells) for s, c in enumerate(row) if c)


def test_view_joins_the_stages(view, smoke_run):
    assert view.tasks and view.steps >= 1
    r, s = _first_cell(view)
    cell = view.cells[r][s]
    assert cell["expert"]["mc"] is not None and cell["agent"]["mc"] is not None
    assert view.expert_mc[r][s] == cell["expert"]["mc"]["mean"]
    gap = view.gap()[r][s]
    assert gap == pytest.approx(cell["expert"]["mc"]["mean"] - cell["agent"]["mc"]["mean"])


def test_click_updates_synced_state_and_detail(view):
    w = StepRewardHeatmap.from_view(view)
    assert w.detail == "" and w.selected == []
    r, s = _first_cell(view)
    w.click(r, s)
    assert w.selected == [r, s]
    cell = view.cells[r][s]
    assert f"{cell['task_id']} step {s}" in w.detail
    assert cell["expert"]["action"] in w.detail and cell["agent"]["action"] in w.detail
    state = w.get_state()
    assert state["selected"] == [r, s] and state["mode"] == "gap" and "detail" not in state  # detail is Python-side
    w.mode = "expert"
    assert w.get_state()["mode"] == "expert"


def test_the_detail_and_the_pair_browser_say_which_estimator_made_a_step_reward():
    from iprkit.widgets.heatmap import estimate_text
    from iprkit.widgets.panels import decided_by

    mc = {"mean": 0.4, "std": 0.5, "n": 5, "terminal": False}
    assert estimate_text(mc) == "MC 0.40 ± 0.50 (n=5)"
    assert estimate_text({**mc, "estimator": "mc", "prm": 0.7}) == "MC 0.40 ± 0.50 (n=5), PRM 0.70"  # hybrid: both
    assert estimate_text({**mc, "mean": 0.7, "n": 0, "estimator": "prm", "prm": 0.7}) == "PRM 0.70 (no rollouts)"
    assert estimate_text({**mc, "mean": 1.0, "terminal": True}) == "env reward 1.00 (terminal)"
    assert decided_by({"estimators": {"expert": "mc", "agent": "prm"}}) == "; step rewards by expert: mc, agent: prm"
    assert decided_by({}) == ""


def test_widget_assets_ship_with_the_package():
    import iprkit.widgets.heatmap as h

    js = Path(h.STATIC, "heatmap.js").read_text()
    assert "export default" in js and "http" not in js.replace("https://", "")  # no CDN imports


def test_panels_and_static_figures(view, smoke_run):
    run, result = smoke_run
    pairs = load_pairs(run, 0)
    assert pair_browser(pairs).children and trajectory_timeline(view).children and iteration_comparison(result["table"]).children
    r, _ = _first_cell(view)
    for fig in (heatmap_figure(view), step_curve_figure(view), timeline_figure(view.cells[r], view.tasks[r]),
                iteration_figure(result["table"]), pairs_figure(pairs)):
        assert fig.to_dict()["data"]


HARNESS = """<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/heatmap.css"></head>
<body><div id="root"></div><script type="module">
import widget from "/heatmap.js";
const data = %s;
data.gap = data.expert_mc.map((row, r) => row.map((e, s) => (e === null || data.agent_mc[r][s] === null) ? null : e - data.agent_mc[r][s]));
const state = {...data, mode: "gap", selected: []};
const handlers = {};
const model = {get: (k) => state[k], set: (k, v) => { state[k] = v; (handlers["change:" + k] || []).forEach((f) => f()); },
               on: (ev, f) => { (handlers[ev] = handlers[ev] || []).push(f); }, save_changes: () => {}};
widget.render({model, el: document.getElementById("root")});
window.widgetState = state;
</script></body></html>"""


def test_heatmap_click_in_a_real_browser(view, tmp_path):
    from playwright.sync_api import sync_playwright

    import iprkit.widgets.heatmap as h

    site = tmp_path / "site"
    site.mkdir()
    for f in ("heatmap.js", "heatmap.css"):
        (site / f).write_text(Path(h.STATIC, f).read_text())
    (site / "index.html").write_text(HARNESS % to_json(view))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    r, s = _first_cell(view)
    cell = view.cells[r][s]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
            page.wait_for_selector("td.iprkit-cell")
            assert "Click a cell" in page.inner_text(".iprkit-detail")
            page.click(f'td.iprkit-cell[data-row="{r}"][data-col="{s}"]')
            text = page.inner_text(".iprkit-detail")
            assert f"{cell['task_id']}, step {s}" in text
            assert cell["expert"]["action"] in text and cell["agent"]["action"] in text and "MC step reward" in text
            assert page.evaluate("window.widgetState.selected") == [r, s]
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "heatmap.png"), full_page=True)
            browser.close()
    finally:
        server.shutdown()
    assert (ARTIFACTS / "heatmap.png").stat().st_size > 5000
