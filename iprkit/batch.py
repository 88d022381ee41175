"""Headless batch runs: execute the notebook sequence with papermill, over a grid.

    iprkit batch --preset demo --out runs/demo
    iprkit batch --preset smoke --out runs/grid --grid mc.n=1,3,5 --grid dpo.beta=0.1,0.5

Each grid point gets its own run directory holding the pipeline's artifacts and the
executed notebooks (outputs kept, widget state not stored); :class:`~iprkit.layout.BatchLayout`
names every path. A failing notebook is reported with its cell and error, the rest of
that point's sequence is skipped (it depends on it), and the other points still run.
Every notebook's ``metrics.json`` and papermill metadata are collected into a
summary (JSON and Markdown), and an HTML report holds the plotly figures (plotly.js embedded
once: it opens offline).
"""

import itertools
import json
import os
import re
import time
import traceback
from pathlib import Path

import yaml

from iprkit.config import read_yaml_mapping
from iprkit.errors import IprkitError
from iprkit.io import atomic_write_text, read_json, write_json
from iprkit.layout import BatchLayout, notebook_metrics
from iprkit.report import write_report

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


KERNEL_ENV = {"IPRKIT_PROGRESS": "terminal", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
"""The notebook kernels' environment: the kit's progress bars go to this terminal as text (:mod:`iprkit.progress`);
the Hugging Face libraries' own bars (loading weights, preparing datasets) stay out of the executed notebooks, where
they would stay frozen at 0%."""


def split_values(text: str) -> list[str]:
    """``1,3,[0,1],{a: 1}`` -> the values, split on commas outside brackets and braces."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{(" and 1 or (-1 if ch in "]})" else 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def grid_points(grid: list[str]) -> list[dict]:
    """``["mc.n=1,3", "seeds=[0,1],[2]"]`` -> every combination as {key: value}."""
    axes = []
    for g in grid or []:
        key, sep, vals = g.partition("=")
        if not sep or not vals or not key.strip():
            raise IprkitError(f"--grid {g!r}: expected KEY=V1,V2,... (for example mc.n=1,3,5 or 'seeds=[0,1],[2]').")
        try:
            axes.append([(key.strip(), yaml.safe_load(v)) for v in split_values(vals)])
        except yaml.YAMLError as e:
            raise IprkitError(f"--grid {g!r}: a value is not valid YAML ({str(e).splitlines()[0]}).") from None
    return [dict(c) for c in itertools.product(*axes)] if axes else [{}]


def point_overrides(point: dict) -> list[str]:
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in point.items()]


def load_params(path: str | None) -> dict:
    """The notebook parameters of ``--params FILE`` (YAML), checked."""
    if not path:
        return {}
    p, params = Path(path), read_yaml_mapping(path, "--params")
    unknown = sorted(set(params) - {"seed", "overrides"})
    if unknown:
        raise IprkitError(f"--params {p}: unknown parameter(s) {unknown}; the notebooks take seed and overrides "
                          "(preset, run_dir and out_dir are set by the batch).")
    if not isinstance(params.get("overrides", []), list):
        raise IprkitError(f"--params {p}: overrides must be a list of KEY=VALUE strings.")
    return params


def point_name(point: dict) -> str:
    return "__".join(f"{k}={v}" for k, v in point.items()) or "default"


def run_notebook(src: Path, dst: Path, params: dict, timeout: int | None = None) -> dict:
    """Execute one notebook; returns {ok, duration, error: {cell, ename, evalue}}."""
    import papermill as pm
    from traitlets.config import Config

    start = time.time()
    dst.parent.mkdir(parents=True, exist_ok=True)
    local = Config()
    local.KernelManager.transport = "ipc"  # a local socket file, not TCP (ipykernel warns about unencrypted TCP)
    try:
        pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name="python3", progress_bar=False,
                            store_widget_state=False, execution_timeout=timeout, cwd=str(Path.cwd()), config=local)
        drop_frozen_bars(dst)
        return {"ok": True, "duration": time.time() - start, "error": None}
    except Exception as e:  # papermill's execution error names the cell; anything else is reported too
        cell = getattr(e, "exec_count", None)
        return {"ok": False, "duration": time.time() - start,
                "error": {"cell": cell, "ename": getattr(e, "ename", type(e).__name__),
                          "evalue": str(getattr(e, "evalue", e))[:2000], "trace": traceback.format_exc()[-2000:]}}


BAR = re.compile(r"^.{0,120}\d+%\|")
"""A tqdm bar's text (``Loading weights:   0%|   | 0/56``)."""


def drop_frozen_bars(path: Path) -> int:
    """Remove the progress-bar widgets a headless run left in a notebook (without the kernel, each would show its first
    frame, ``0%``, forever); the notebook is rewritten atomically. Returns how many were removed."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        keep = [o for o in cell.get("outputs", []) if not ("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                                                            and BAR.match(o["data"].get("text/plain", "")))]
        dropped += len(cell.get("outputs", [])) - len(keep)
        cell["outputs"] = keep
    if dropped:
        atomic_write_text(path, nbformat.writes(nb))
    return dropped


def batch(out: str | Path, preset: str = "smoke", params: dict | None = None, grid: list[str] | None = None,
          notebooks: list[str] | None = None, timeout: int | None = None) -> dict:
    """Run the notebook sequence for every grid point; write summary and report."""
    layout = BatchLayout(out)
    srcs = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if notebooks:
        srcs = [s for s in srcs if any(s.stem.startswith(n) for n in notebooks)]
    if not srcs:
        raise IprkitError(f"no notebooks found in {NOTEBOOK_DIR} (filter {notebooks}).")
    points = grid_points(grid)
    from iprkit.presets import run_settings

    for point in points:  # every grid point's settings are checked before any kernel starts
        try:
            run_settings(preset, None, point_overrides(point) + list((params or {}).get("overrides", [])))
        except IprkitError as e:
            raise IprkitError(f"grid point {point_name(point)}: {e}") from None
    rows = []
    before = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)  # the kernels inherit it
    try:
        for point in points:
            rows += _run_point(layout, srcs, point, preset, params, timeout)
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    summary = {"preset": preset, "grid": grid or [], "rows": rows}
    write_json(layout.summary_json, summary)
    atomic_write_text(layout.summary_md, _summary_md(rows))
    write_report(layout, rows)
    for point in points:  # the results, where a researcher reads them first
        if (results := layout.point(point_name(point)).results_md).exists():
            print(f"\n[{point_name(point)}] results ({results}):\n\n{results.read_text()}")
    return summary


def _run_point(layout: BatchLayout, srcs: list[Path], point: dict, preset: str, params: dict | None,
               timeout: int | None) -> list[dict]:
    """The notebook sequence on one grid point; after a failure the rest are skipped."""
    rows = []
    run = layout.point(point_name(point))
    overrides = point_overrides(point) + list((params or {}).get("overrides", []))
    failed = None
    for src in srcs:
        nb_out, dst = layout.notebook_out(run, src.stem), layout.notebook(run, src.stem)
        row = {"point": point_name(point), **point, "notebook": src.stem, "path": str(dst)}
        if failed:
            rows.append({**row, "ok": False, "skipped": f"earlier notebook {failed} failed"})
            continue
        p = {"preset": preset, "run_dir": str(run.root), "out_dir": str(nb_out), "seed": 0,
             **{k: v for k, v in (params or {}).items() if k != "overrides"}, "overrides": overrides}
        print(f"[{point_name(point)}] {src.stem} ...", flush=True)
        res = run_notebook(src, dst, p, timeout)
        print(f"[{point_name(point)}] {src.stem} {'done' if res['ok'] else 'FAILED'} in {res['duration']:.0f} s", flush=True)
        meta = _papermill_meta(dst)
        metrics = read_json(notebook_metrics(nb_out)) if notebook_metrics(nb_out).exists() else None
        rows.append({**row, **res, "papermill": meta, "metrics": metrics})
        if not res["ok"]:
            failed = src.stem
            print(f"  FAILED at cell {res['error']['cell']}: {res['error']['ename']}: {res['error']['evalue'][:300]}")
    return rows


def _papermill_meta(path: Path) -> dict | None:
    if not path.exists():
        return None
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    m = nb.metadata.get("papermill", {})
    return {k: m.get(k) for k in ("duration", "exception", "start_time", "end_time", "parameters")}


def _summary_md(rows: list[dict]) -> str:
    lines = ["| point | notebook | ok | seconds | key metrics |", "|---|---|---|---|---|"]
    for r in rows:
        m = r.get("metrics") or {}
        keys = {k: v for k, v in m.items() if isinstance(v, (int, float))}
        short = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(keys.items())[:5])
        status = "yes" if r.get("ok") else ("skipped" if r.get("skipped") else f"NO: {(r.get('error') or {}).get('ename')}")
        lines.append(f"| {r['point']} | {r['notebook']} | {status} | {r.get('duration', 0):.0f} | {short} |")
    return "\n".join(lines) + "\n"
