"""The run layout: one module spells every run-directory path, and it lists what is on disk."""

import ast
import json
import re

from conftest import REPO
from iprkit.layout import BatchLayout, RunLayout

ARTIFACTS = ("explore.jsonl", "step_rewards.jsonl", "pairs.jsonl", "comparisons.jsonl", "pair_stats.json",
             "mc_counts.json", "train_metrics.json", "sft_metrics.json", "sft_config.json", "replay_report.json",
             "order.json", "results.json", "results.md", "timings.json", "metrics.json", "summary.json", "summary.md",
             "report.html", "run.lock", "eval_config.json", "source.json", "mc_cache", "_metrics.json", "_tasks.jsonl")
"""File and folder names only a run directory has."""
FOLDERS = ("sft", "eval", "experts", "mc_cache")
"""A path built as ``something / "sft"``, ``/ "seed0"`` or ``/ f"iter{k}"`` spells the run's folders."""


def _spellings(path) -> list[str]:
    """Where a Python file (or a notebook's code cells) spells a run-directory path: a string naming a run
    artifact, or a path joined with one of the run's folder names."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    else:
        text = path.read_text()
    tree = ast.parse(text, str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                any(a in node.value for a in ARTIFACTS) and not any(c.isspace() for c in node.value):  # not prose
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            text = right.value if isinstance(right, ast.Constant) and isinstance(right.value, str) else \
                right.values[0].value if isinstance(right, ast.JoinedStr) and right.values and \
                isinstance(right.values[0], ast.Constant) else None
            first = (text or "").split("/")[0]
            if text is not None and (first in FOLDERS or re.fullmatch(r"(seed|iter)\d*", first)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: / {text!r}")
    return found


def test_only_the_layout_spells_run_paths():
    files = [p for d in ("iprkit", "widgets", "scripts", "benchmarks", "tests") for p in (REPO / d).rglob("*.py")
             if p.name not in ("layout.py", "test_layout.py")] + sorted((REPO / "notebooks").glob("*.ipynb"))
    found = [s for p in files for s in _spellings(p)]
    assert not found, "run-directory paths spelled outside iprkit/layout.py:\n" + "\n".join(found)
    assert _spellings(REPO / "iprkit" / "layout.py")  # the check does see spellings where they are


def test_layout_lists_what_a_run_left(smoke_run):
    run = RunLayout(smoke_run[0])
    assert run.seeds() == [0] and run.methods(0) == ["ipr"] and run.iterations(0, "ipr") == [1, 2]
    assert [(s, m, k) for s, m, k, _ in run.iteration_dirs()] == [(0, "ipr", 1), (0, "ipr", 2)]
    assert run.sft(0).eval.splits() == ["test"] and run.model(0, "ipr", 0) == run.sft(0).model
    assert run.eval(0, "ipr", 2) == run.iteration(0, "ipr", 2).eval
    assert run.model(0, "ipr", 2).parent == run.iteration(0, "ipr", 2).dir


def test_stage_names():
    assert RunLayout.stage(None, None, None, "experts") == "experts"
    assert RunLayout.stage(0, "sft", 0) == "seed0/sft"
    assert RunLayout.stage(1, "ipr", 0, "eval", "test") == "seed1/sft/eval/test"  # iteration 0 is the SFT model
    assert RunLayout.stage(2, "eto", 3, "score") == "seed2/eto/iter3/score"


def test_batch_layout(tmp_path):
    b = BatchLayout(tmp_path)
    run = b.point("mc.n=3")
    assert run.root == tmp_path / "mc.n=3" and b.notebook(run, "02_sft").suffix == ".ipynb"
    assert b.notebook_out(run, "02_sft") != b.notebook(run, "02_sft")
