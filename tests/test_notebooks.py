"""Every notebook runs under papermill with the smoke preset, in sequence over one run
directory, and writes its metrics.json; the batch collects them into one table and an
HTML report, and a failing notebook is reported with its cell."""

import json

import nbformat
import papermill
import pytest

from conftest import ARTIFACTS, REPO
from iprkit.layout import BatchLayout
from iprkit.batch import batch

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_clean_and_parameterised():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.get("outputs") for c in code), f"{path.name} has outputs"
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell must be tagged parameters"
        assert "write_metrics(" in code[-1].source
        # papermill must read every parameter (a "=" in a comment made it skip `overrides` with a warning)
        names = [p["name"] for p in papermill.inspect_notebook(str(path)).values()]
        assert names == ["preset", "run_dir", "out_dir", "seed", "overrides"], f"{path.name}: {names}"


def test_notebooks_are_chapters():
    """Each stage's chapter has the sections a reader needs, with prose, not only code."""
    import re

    for path in NOTEBOOKS[1:]:
        nb = nbformat.read(path, as_version=4)
        md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for section in ("## What this stage does", "## Where it lives in the kit", "## Run it", "## How to read it",
                        "## What to try", "## Pitfalls"):
            assert section in md, f"{path.name}: no {section!r}"
        assert len(re.findall(r"\w+", md)) >= 350, path.name


def test_a_notebook_opened_by_hand_reads_the_finished_demo_run(tmp_path, monkeypatch):
    from iprkit.layout import BatchLayout, finished_demo_run

    monkeypatch.chdir(tmp_path)
    assert finished_demo_run() is None  # no demo run yet: the notebooks fall back to smoke, with a warning
    (tmp_path / "notebooks").mkdir()
    run = BatchLayout(tmp_path / "runs" / "demo").point("default")
    run.root.mkdir(parents=True)
    run.results_json.write_text("{}")
    assert finished_demo_run().root.resolve() == run.root.resolve()  # from the repo root
    monkeypatch.chdir(tmp_path / "notebooks")  # JupyterLab's working folder for notebooks/
    assert finished_demo_run().root.resolve() == run.root.resolve()
    setup = nbformat.read(NOTEBOOKS[3], as_version=4).cells[2].source
    assert 'if run_dir == "auto"' in setup and "finished_demo_run()" in setup and "WARNING" in setup


@pytest.fixture(scope="module")
def smoke_batch(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch")
    return out, batch(out, preset="smoke", timeout=600)


@pytest.mark.slow
def test_every_notebook_runs_and_writes_metrics(smoke_batch):
    out, summary = smoke_batch
    rows = summary["rows"]
    assert [r["notebook"] for r in rows] == [p.stem for p in NOTEBOOKS]
    bad = [(r["notebook"], r.get("error")) for r in rows if not r["ok"]]
    assert not bad, bad
    for r in rows:
        assert r["metrics"], r["notebook"]
        assert r["papermill"]["duration"] is not None and r["papermill"]["exception"] is None
        nb = nbformat.read(r["path"], as_version=4)
        assert "widgets" not in nb.metadata  # store_widget_state=False
    # executed notebooks read without a kernel: widgets leave static HTML, progress bars stay out of the outputs
    outputs = {r["notebook"]: [o for c in nbformat.read(r["path"], as_version=4).cells if c.cell_type == "code"
                               for o in c.get("outputs", [])] for r in rows}
    html = [o.get("data", {}).get("text/html", "") for o in outputs["03_mc_rewards"]]
    assert any("not scored" in h and "static copy" in h for h in html)  # the heatmap's static twin
    assert any("Instruction:" in o.get("data", {}).get("text/html", "") for o in outputs["04_pairs"])
    text = json.dumps(outputs)
    assert "object at 0x" not in text and "VBox(children" not in text and "0%|" not in text
    by = {r["notebook"]: r["metrics"] for r in rows}
    assert by["01_environments"]["replay_success_rate"] == 1.0
    assert by["00_overview"]["preset"] == "smoke" and by["03_mc_rewards"]["flips"] >= 0
    assert {"step_pairs", "outcome_pairs"} <= set(by["04_pairs"])
    assert [t["method"] for t in by["05_iterations"]["table"]][:1] == ["sft"]
    layout = BatchLayout(out)
    timings = json.loads(layout.point("default").timings.read_text())
    assert "seed0/eto/iter1/train" in timings and "seed0/ipr/iter1/score" in timings
    assert "seed0/eto/iter1/score" not in timings  # ETO needs no step rewards and times no scoring
    assert layout.report.stat().st_size > 100_000  # plotly.js embedded: opens offline
    assert "01_environments" in layout.summary_md.read_text()


@pytest.mark.slow
def test_report_is_a_research_report_that_opens_offline(smoke_batch):
    from playwright.sync_api import sync_playwright

    out, _ = smoke_batch
    report = BatchLayout(out).report
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        asked = []

        def no_network(route):  # only the file itself may load: everything else would need a network
            asked.append(route.request.url)
            route.abort()

        page.route(lambda url: not url.startswith("file://"), no_network)
        page.goto(report.resolve().as_uri())
        page.wait_for_selector(".plotly")  # plotly.js ran from the page itself
        text = page.inner_text("body")
        for section in ("Across grid points", "Notebooks", "Results", "Paired by (seed, task)", "explored tasks",
                        "Training", "Step rewards: ipr, iteration 1", "Pairs", "example step pair: ipr", "Stage timings",
                        "Resolved config"):
            assert section in text, section
        assert page.locator(".plotly").count() >= 5 and not asked, asked
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
        browser.close()


def test_failing_notebook_is_reported_and_the_grid_goes_on(tmp_path):
    summary = batch(tmp_path, preset="smoke", grid=["env_kwargs.preset=nonexistent,easy"], notebooks=["01"])
    rows = {r["point"]: r for r in summary["rows"]}
    bad, good = rows["env_kwargs.preset=nonexistent"], rows["env_kwargs.preset=easy"]
    assert not bad["ok"] and bad["error"]["ename"] == "IprkitError" and "unknown preset" in bad["error"]["evalue"]
    assert bad["error"]["cell"] is not None
    assert good["ok"] and good["metrics"]["replay_success_rate"] == 1.0
    assert "nonexistent" in json.loads(BatchLayout(tmp_path).summary_json.read_text())["rows"][0]["point"]
