"""Widgets: the heatmap's synced state and detail panel, the panels, static figures,
and one real-browser click (Playwright driving Debian's chromium)."""

import contextlib
import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from conftest import ARTIFACTS
from iprkit.layout import RunLayout
from iprkit.figures import heatmap_figure, iteration_figure, pairs_figure, step_curve_figure, timeline_figure
from iprkit.views import IterationView, load_iteration, load_pairs, to_json
from iprkit.widgets import StepRewardHeatmap, iteration_comparison, pair_browser, trajectory_timeline



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
    from iprkit.report import decided_by

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


HARNESS = """<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/heatmap.css"><style>%s</style></head>
<body><div id="root"></div><script type="module">
import widget from "/heatmap.js";
const data = %s;
data.scales = %s;
data.gap = data.expert_mc.map((row, r) => row.map((e, s) => (e === null || data.agent_mc[r][s] === null) ? null : e - data.agent_mc[r][s]));
const state = {...data, mode: "gap", selected: [], sort: "task", sorts: %s, query: "", pairs_only: false,
               rows: data.tasks.map((_, r) => r)};
const handlers = {};
const model = {get: (k) => state[k], set: (k, v) => { state[k] = v; (handlers["change:" + k] || []).forEach((f) => f()); },
               on: (ev, f) => { (handlers[ev] = handlers[ev] || []).push(f); }, save_changes: () => {}};
widget.render({model, el: document.getElementById("root")});
window.widgetState = state;
window.model = model;
</script></body></html>"""


# JupyterLab's dark theme sets these variables; the widget must read them, not hard-code light colours
DARK = """body { background: #111; } :root { --jp-layout-color0: #111; --jp-layout-color1: #1e1e1e; --jp-layout-color2: #2b2b2b;
--jp-layout-color3: #444; --jp-ui-font-color0: #fff; --jp-ui-font-color1: #e6e6e6; --jp-ui-font-color2: #aaa;
--jp-border-color1: #666; --jp-border-color2: #555; }"""


@contextlib.contextmanager
def _harness(view, tmp_path, theme="light"):
    """The heatmap's ESM and CSS in a bare page served on loopback, with a stand-in for the kernel's model (it keeps
    what the widget sends; ``window.widgetState``, ``window.model``); yields the Chromium page."""
    from playwright.sync_api import sync_playwright

    import iprkit.widgets.heatmap as h
    from iprkit.figures import MODES
    from iprkit.widgets.heatmap import SORTS

    site = tmp_path / "site"
    site.mkdir()
    for f in ("heatmap.js", "heatmap.css"):
        (site / f).write_text(Path(h.STATIC, f).read_text())
    (site / "index.html").write_text(HARNESS % (DARK if theme == "dark" else "", to_json(view),
                                                json.dumps({k: list(v) for k, v in MODES.items()}), json.dumps(SORTS)))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--disable-sync", "--no-first-run"])
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
                page.wait_for_selector("td.iprkit-cell")
                yield page
            finally:
                browser.close()
    finally:
        server.shutdown()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_heatmap_in_a_real_browser(view, tmp_path, theme):
    r, s = _first_cell(view)
    cell = view.cells[r][s]
    with _harness(view, tmp_path, theme) as page:
        assert "Click a cell" in page.inner_text(".iprkit-detail")
        legend = page.inner_text(".iprkit-legend")
        assert "expert − agent MC step reward" in legend and "not scored" in legend and "E / A" in legend
        assert "task \\ step" in page.inner_text("table")  # both axes are labelled
        # the colour of a scored cell is the Python scale's colour (the static twins use the same)
        from iprkit.figures import colour

        got = page.eval_on_selector(f'td.iprkit-cell[data-row="{r}"][data-col="{s}"]', "e => getComputedStyle(e).backgroundColor")
        assert got == "rgb(%d, %d, %d)" % colour(view.gap()[r][s], "gap")
        page.click('button.iprkit-mode[data-mode="expert"]')  # the mode is a button in the widget
        assert page.evaluate("window.widgetState.mode") == "expert"
        assert "expert's MC step reward" in page.inner_text(".iprkit-legend")
        assert page.inner_text("button.iprkit-active") == "expert"
        page.click(f'td.iprkit-cell[data-row="{r}"][data-col="{s}"]')
        text = page.inner_text(".iprkit-detail")
        assert f"{cell['task_id']}, step {s}" in text
        assert cell["expert"]["action"] in text and cell["agent"]["action"] in text and "MC step reward" in text
        assert page.evaluate("window.widgetState.selected") == [r, s]
        side_bg = page.eval_on_selector(".iprkit-side", "e => getComputedStyle(e).backgroundColor")
        side_ink = page.eval_on_selector(".iprkit-side", "e => getComputedStyle(e).color")
        light = lambda c: sum(int(x) for x in c[c.index("(") + 1:c.index(")")].split(",")[:3]) > 384
        assert light(side_bg) != light(side_ink)  # readable text in either theme
        assert light(side_bg) == (theme == "light")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"heatmap_{theme}.png"), full_page=True)
    assert (ARTIFACTS / f"heatmap_{theme}.png").stat().st_size > 5000


def _many(view, n: int):
    """``view``'s rows repeated to ``n`` tasks (ids suffixed), as a run of that many explored tasks would give."""
    k = len(view.tasks)
    pick = lambda xs: [xs[i % k] for i in range(n)]
    cells = [[dict(c, task_id=f"{view.tasks[i % k]}#{i}") if c else None for c in view.cells[i % k]] for i in range(n)]
    return IterationView([f"{view.tasks[i % k]}#{i}" for i in range(n)], view.steps, pick(view.expert_mc),
                         pick(view.agent_mc), cells)


def test_rows_sort_and_filter_the_same_in_python_as_the_widget_shows(view):
    from iprkit.widgets.heatmap import SORTS, row_order

    many = _many(view, 60)
    w = StepRewardHeatmap.from_view(many)
    assert w.rows == list(range(60)) and w.sort == "task"
    pairs = lambda r: sum(1 for c in many.cells[r] if c and c.get("pair"))
    w.sort = "pairs"  # the kernel reorders as soon as the browser sends a sort
    assert [pairs(r) for r in w.rows] == sorted((pairs(r) for r in range(60)), reverse=True)
    w.sort = "gap"
    means = [sum(v for v in g if v is not None) / max(1, sum(v is not None for v in g)) if any(v is not None for v in g)
             else None for g in many.gap()]
    scored = [r for r in w.rows if means[r] is not None]
    assert [means[r] for r in scored] == sorted((means[r] for r in scored), reverse=True)
    assert all(means[r] is None for r in w.rows[len(scored):])  # unscored rows last
    w.sort, w.query = "task", "#1"  # a filter on the task id (any case)
    assert w.rows == [r for r in range(60) if "#1" in many.tasks[r]]
    w.query, w.pairs_only = "", True
    assert w.rows == [r for r in range(60) if pairs(r)]
    instruction = next(c for c in many.cells[0] if c)["instruction"]
    assert 0 in row_order(many.tasks, many.cells, many.gap(), many.agent_mc, query=instruction[:12].upper())
    with pytest.raises(ValueError, match="sort='size'.*task, gap, pairs, agent"):
        row_order(many.tasks, many.cells, many.gap(), many.agent_mc, sort="size")
    assert set(SORTS) == {"task", "gap", "pairs", "agent"}
    w.query = "#1"
    assert f"{len(w.rows)} of 60 tasks" in w._repr_mimebundle_()[0]["text/plain"] and len(w.rows) < 60
    from iprkit.widgets.heatmap import STATIC_ROWS, static_html

    big = StepRewardHeatmap.from_view(_many(view, STATIC_ROWS + 50), sort="pairs")
    static = static_html(big)  # the static twin: the widget's first rows in its order, and says so
    assert static.count("<tr>") == STATIC_ROWS + 1 and f"{STATIC_ROWS} of {STATIC_ROWS + 50} tasks" in static
    assert static.index(big.tasks[big.rows[0]] + "<") < static.index(big.tasks[big.rows[1]] + "<")


def test_the_heatmap_of_500_tasks_scrolls_sorts_and_filters_in_a_real_browser(view, tmp_path):
    many = _many(view, 500)
    with _harness(many, tmp_path) as page:
        assert page.inner_text(".iprkit-count") == "500 of 500 tasks"
        assert page.eval_on_selector_all("th.iprkit-task", "es => es.length") == 500
        box = page.eval_on_selector(".iprkit-scroll", "e => [e.clientHeight, e.scrollHeight]")
        assert box[0] <= 480 < box[1]  # it scrolls inside a screenful instead of pushing the page down
        header = lambda: page.eval_on_selector(".iprkit-scroll thead th", "e => e.getBoundingClientRect().top")
        top = header()
        page.eval_on_selector(".iprkit-scroll", "e => { e.scrollTop = 3000; }")
        assert header() == top  # the step header stays in view
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "heatmap_500_tasks.png"))
        order = list(range(499, -1, -1))
        page.evaluate(f"window.model.set('rows', {order})")  # what the kernel sends after a sort
        assert page.eval_on_selector_all("th.iprkit-task", "es => es.slice(0, 2).map(e => e.textContent)") == [
            many.tasks[499], many.tasks[498]]
        page.select_option("select.iprkit-sort", "pairs")
        assert page.evaluate("window.widgetState.sort") == "pairs"
        page.fill("input.iprkit-query", "#4")
        page.wait_for_function("window.widgetState.query === '#4'")
        page.check("input.iprkit-pairs-only")
        assert page.evaluate("window.widgetState.pairs_only") is True
        page.evaluate("window.model.set('rows', [])")
        assert "no task matches" in page.inner_text(".iprkit-scroll")
        assert page.input_value("input.iprkit-query") == "#4"  # a redraw keeps what was typed


def test_widgets_leave_a_static_copy_for_viewers_without_a_kernel(view, smoke_run):
    run, result = smoke_run
    def bundle(obj) -> dict:  # anywidget answers (data, metadata), ipywidgets the data alone
        b = obj._repr_mimebundle_()
        return b[0] if isinstance(b, tuple) else b

    w = StepRewardHeatmap.from_view(view)
    data = bundle(w)
    assert "application/vnd.jupyter.widget-view+json" in data  # live where a widget manager is
    static = data["text/html"]
    assert "<script" not in static and static.count("<tr>") == len(view.tasks) + 1 and "not scored" in static
    assert "StepRewardHeatmap object at" not in data["text/plain"]
    pairs = load_pairs(run, 0)
    for panel in (pair_browser(pairs), trajectory_timeline(view), iteration_comparison(result["table"])):
        html = bundle(panel)["text/html"]
        assert "static copy" in html and "VBox(" not in html
    assert "Instruction:" in bundle(pair_browser(pairs))["text/html"]


def test_pair_browser_shows_the_whole_context_and_filters_outcome_pairs_by_their_own_gap():
    from iprkit.widgets.panels import gap_of

    prompt = [{"role": "user", "content": "Your task: open the box"}, {"role": "assistant", "content": "Action: go east"},
              {"role": "user", "content": "You are in the hall."}]
    step = {"kind": "step", "task_id": "t", "step": 1, "winner": "expert", "prompt": prompt, "method": "ipr", "iteration": 1,
            "chosen": [{"role": "assistant", "content": "Action: open box"}, {"role": "user", "content": "Opened."}],
            "rejected": [{"role": "assistant", "content": "Action: go west"}], "expert_final": 1.0, "agent_final": 0.0,
            "expert_mc": 0.8, "agent_mc": 0.2}
    outcome = {**step, "kind": "outcome", "step": 0, "expert_mc": None, "agent_mc": None}
    from iprkit.report import pair_html

    page = pair_html(step)
    for text in ("Your task: open the box", "the expert's first 1 steps", "Action: open box", "Action: go west",
                 "0.80", "0.20", "continuation (1 turns)", "<b>env</b>", "<b>agent</b>"):
        assert text in page, text
    assert gap_of(step) == pytest.approx(0.6) and gap_of(outcome) == 1.0  # outcome pairs: their final rewards
    panel = pair_browser([step, outcome])
    controls = {c.description: c for box in panel.children[:2] for c in box.children}
    controls["min gap"].value = 0.9
    assert "1 pairs match" in panel.children[-1].value and "outcome pair" in panel.children[-1].value


def test_finders_that_notebooks_explore_a_run_with(view, smoke_run):
    from iprkit.views import changed_tasks, close_calls, flips, fragile_pairs

    cells = [c for row in view.cells for c in row if c]
    close = close_calls(view, limit=100)
    differ = [c for c in cells if c["expert"]["mc"] and c["agent"]["mc"] and c["expert"]["action"] != c["agent"]["action"]]
    assert len(close) == len(differ)
    assert [abs(c["gap"]) for c in close] == sorted(abs(c["gap"]) for c in close)
    for c in close:
        cell = view.cells[c["row"]][c["step"]]
        assert cell["task_id"] == c["task_id"] and c["gap"] == cell["expert"]["mc"]["mean"] - cell["agent"]["mc"]["mean"]
    for f in flips(view):  # the step reward and the final reward point different ways
        assert f["step_gap"] * f["final_gap"] < 0
    for f in fragile_pairs(view):  # a chosen side whose interval reaches the rejected side's
        assert view.cells[f["row"]][f["step"]]["pair"] == f["chosen"] and f["chosen_ci"][0] <= f["rejected_ci"][1]
    run, _ = smoke_run
    got = changed_tasks(run, 0, ("sft", 0), ("ipr", 2), "test")
    rows = {k: {json.loads(l)["task_id"]: json.loads(l) for l in RunLayout(run).eval(0, m, i).tasks("test").read_text().splitlines()}
            for k, (m, i) in {"a": ("sft", 0), "b": ("ipr", 2)}.items()}
    assert got["tasks"] == len(rows["a"])
    assert {r["task_id"] for r in got["lost"]} == {t for t in rows["a"] if rows["a"][t]["success"] and not rows["b"][t]["success"]}
    assert {r["task_id"] for r in got["gained"]} == {t for t in rows["a"] if rows["b"][t]["success"] and not rows["a"][t]["success"]}
