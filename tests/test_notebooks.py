"""Every notebook runs under papermill with the smoke preset, in sequence over one run
directory, and writes its metrics.json; the batch collects them into one table and an
HTML report, and a failing notebook is reported with its cell."""

import json

import nbformat
import papermill
import pytest

from conftest import REPO
from iprkit.layout import BatchLayout
from iprkit.batch import batch

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_clean_and_parameterised():
    assert len(NOTEBOOKS) == 6
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.get("outputs") for c in code), f"{path.name} has outputs"
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell must be tagged parameters"
        assert "write_metrics(" in code[-1].source
        # papermill must read every parameter (a "=" in a comment made it skip `overrides` with a warning)
        names = [p["name"] for p in papermill.inspect_notebook(str(path)).values()]
        assert names == ["preset", "run_dir", "out_dir", "seed", "overrides"], f"{path.name}: {names}"


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
    by = {r["notebook"]: r["metrics"] for r in rows}
    assert by["01_environments"]["replay_success_rate"] == 1.0
    assert {"step_pairs", "outcome_pairs"} <= set(by["04_pairs"])
    assert [t["method"] for t in by["05_iterations"]["table"]][:1] == ["sft"]
    layout = BatchLayout(out)
    timings = json.loads(layout.point("default").timings.read_text())
    assert "seed0/eto/iter1/train" in timings and "seed0/ipr/iter1/score" in timings
    assert "seed0/eto/iter1/score" not in timings  # ETO needs no step rewards and times no scoring
    assert layout.report.stat().st_size > 100_000  # plotly.js embedded: opens offline
    assert "01_environments" in layout.summary_md.read_text()


def test_failing_notebook_is_reported_and_the_grid_goes_on(tmp_path):
    summary = batch(tmp_path, preset="smoke", grid=["env_kwargs.preset=nonexistent,easy"], notebooks=["01"])
    rows = {r["point"]: r for r in summary["rows"]}
    bad, good = rows["env_kwargs.preset=nonexistent"], rows["env_kwargs.preset=easy"]
    assert not bad["ok"] and bad["error"]["ename"] == "IprkitError" and "unknown preset" in bad["error"]["evalue"]
    assert bad["error"]["cell"] is not None
    assert good["ok"] and good["metrics"]["replay_success_rate"] == 1.0
    assert "nonexistent" in json.loads(BatchLayout(tmp_path).summary_json.read_text())["rows"][0]["point"]
