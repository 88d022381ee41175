"""Writes notebooks/*.ipynb from their chapters (one source of truth, no outputs).

    python scripts/make_notebooks.py

Each notebook is a chapter in ``scripts/chapters/`` (``cNN_name.py``: a ``CELLS`` list of ``("md", text)``
and ``("code", text)`` cells, the first its title). Every notebook starts with the same ``parameters`` cell (papermill injects its values after
it) and the same setup cell, which finds the run to read: the one papermill names, else the user's finished
``make demo`` run, else the smoke preset with a plain warning.
"""

import importlib.util
from pathlib import Path

import nbformat as nbf

PARAMS = '''# parameters (papermill injects its own values after this cell)
preset = "demo"           # smoke | demo | regime | paper
run_dir = "auto"          # the run directory the sequence shares; auto: your finished `make demo` run, else smoke
out_dir = "auto"          # this notebook's outputs (metrics.json); auto: beside the run
seed = 0
overrides = []            # RunSettings overrides, written as on the iprkit run command line
'''

SETUP = '''import json
from pathlib import Path

import plotly.io as pio

# each figure also leaves HTML with plotly.js embedded (the first one), so an executed notebook shows its figures
# in viewers without plotly's extension (nbviewer, VS Code); widgets leave a static HTML copy of themselves
pio.renderers.default = "plotly_mimetype+notebook"

from iprkit.layout import BatchLayout, RunLayout, finished_demo_run, notebook_metrics
from iprkit.loop import Runner, StopRun
from iprkit.presets import run_settings

if run_dir == "auto":  # opened by hand, not by papermill: read the finished demo run if there is one
    found = finished_demo_run()
    if found is not None:
        run_dir, preset = str(found.root), "demo"
        print(f"Reading your finished demo run in {run_dir} (nothing is recomputed).")
    else:
        run_dir, preset = "runs/notebooks", "smoke"
        print("No finished demo run found: `make demo` writes one to runs/demo (about 15 minutes on 2 cores).\\n"
              "WARNING: until then this notebook runs the smoke preset, whose model is barely trained (it writes '.' as\\n"
              "every action): every heatmap, pair and curve below is noise, not IPR.")
if out_dir == "auto":
    out_dir = str(BatchLayout.notebook_out(RunLayout(run_dir), NOTEBOOK))
cfg = run_settings(preset, None, ["methods=[sft,ipr,eto]", f"seeds=[{seed}]", *overrides])
layout = RunLayout(run_dir)  # every path of the run: layout.sft(seed).model, layout.iteration(seed, "ipr", 1).pairs, ...
Path(out_dir).mkdir(parents=True, exist_ok=True)


def run_until(stage=None):
    """Run the pipeline up to a stage (resuming whatever earlier notebooks already computed)."""
    runner = Runner(cfg, run_dir, stop_after=stage)
    try:
        return runner.run()
    except StopRun:
        return None
    finally:
        runner.close()


def write_metrics(metrics):
    notebook_metrics(out_dir).write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2)[:2000])
'''


def chapters() -> dict[str, list[tuple[str, str]]]:
    """Every chapter in ``scripts/chapters``, by notebook name (``c03_mc_rewards.py`` -> ``03_mc_rewards``)."""
    out = {}
    for path in sorted((Path(__file__).parent / "chapters").glob("c[0-9][0-9]_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out[path.stem[1:]] = mod.CELLS
    return out


def main():
    out = Path(__file__).resolve().parents[1] / "notebooks"
    out.mkdir(exist_ok=True)
    for name, cells in chapters().items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = nbf.v4.new_code_cell(PARAMS)
        params.metadata["tags"] = ["parameters"]
        cells = [(kind, text.strip("\n")) for kind, text in cells]
        nb.cells = [nbf.v4.new_markdown_cell(cells[0][1]), params, nbf.v4.new_code_cell(f'NOTEBOOK = "{name}"\n' + SETUP)]
        nb.cells += [nbf.v4.new_markdown_cell(t) if kind == "md" else nbf.v4.new_code_cell(t) for kind, t in cells[1:]]
        for i, c in enumerate(nb.cells):
            c["id"] = f"{name}-{i}"
        nbf.write(nb, out / f"{name}.ipynb")


if __name__ == "__main__":
    main()
