"""The science table: a preset's SFT / ETO / IPR over its seeds with paired statistics, run in pieces.

    python benchmarks/science_table.py --preset regime --minutes 50     # run (or resume) for at most 50 minutes
    python benchmarks/science_table.py --preset regime --report         # the table of what has finished, no work
    python benchmarks/science_table.py --preset demo seeds=[0,1,2]       # any preset, any KEY=VALUE overrides

The run is an ordinary ``iprkit run`` directory (``runs/science/<preset>`` by default), so each piece resumes
where the last one stopped: finished stages are skipped, a stage cut by the time limit (SIGINT, then SIGKILL a
minute later) left nothing that looks finished. After each piece the table over the seeds finished so far goes to
``benchmarks/results/science_table_<name>.json`` and ``.md``:

- per method and iteration, success on the held-out test games and on the explored train tasks (mean ± std over
  seeds): "generalises" and "learns what it explores", reported apart;
- paired comparisons, by (seed, task): each method's last iteration against SFT, IPR against ETO, with a 95%
  task-bootstrap interval and an exact McNemar p (:mod:`iprkit.stats`), on held-out and on explored tasks;
- the power the table has: at each comparison's measured discordance, the paired games a 3- and a 5-point
  difference need (80% power, 5% two-sided), against the pairs it has;
- CPU minutes spent per seed (``timings.json``).
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from iprkit.io import atomic_write_text, read_json, write_json  # noqa: E402
from iprkit.layout import RunLayout  # noqa: E402
from iprkit.presets import run_settings  # noqa: E402
from iprkit.results import format_table  # noqa: E402
from iprkit.stats import format_paired, mcnemar_pairs_needed  # noqa: E402


def run_piece(preset: str, out: Path, overrides: list[str], minutes: float) -> int | None:
    """``iprkit run`` for at most ``minutes`` (0: to the end); its exit code, or None when the time ran out."""
    cmd = [sys.executable, "-m", "iprkit", "run", "--preset", preset, "--out", str(out), *overrides]
    proc = subprocess.Popen(cmd, start_new_session=True)  # its own process group: the game pool goes with it
    try:
        return proc.wait(timeout=minutes * 60 if minutes else None)
    except subprocess.TimeoutExpired:
        print(f"science_table: {minutes} minutes up; stopping the run (a rerun resumes)", flush=True)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def finished_seeds(runner) -> list[int]:
    """Seeds whose every stage (SFT, each method's iterations, every evaluation) has its outputs."""
    stages = runner.plan()
    return [s for s in runner.cfg.seeds
            if all(p.exists() for st in stages if st.name.startswith(f"seed{s}/") for p in st.outputs)]


def power(rows: list[dict]) -> list[dict]:
    """The paired games a 3- and a 5-point difference need at each comparison's discordance, and the pairs it has."""
    out = []
    for r in rows:
        need = {}
        for d in (0.03, 0.05):
            need[f"pairs_for_{round(d * 100)}_points"] = (mcnemar_pairs_needed(d, r["discordance"])
                                                         if r["discordance"] > d else None)
        out.append({"a": r["a"], "b": r["b"], "pairs": r["pairs"], "discordance": r["discordance"], **need})
    return out


def report(preset: str, out: Path, overrides: list[str], name: str, res_dir: Path = ROOT / "benchmarks" / "results"
           ) -> dict | None:
    from iprkit.loop import Runner

    cfg = run_settings(preset, None, overrides)
    layout = RunLayout(out)
    if not layout.experts(cfg.train_split).exists():
        print("science_table: nothing finished yet")
        return None
    probe = Runner(cfg, out, progress=False, worker=True)  # a worker: no lock, no config written
    try:
        done = finished_seeds(probe)
    finally:
        probe.close()
    timings = read_json(layout.timings) if layout.timings.exists() else {}
    minutes = {s: round(sum(v for k, v in timings.items() if k.startswith(f"seed{s}/")) / 60, 1) for s in cfg.seeds}
    row = {"preset": preset, "overrides": overrides, "run": str(out), "seeds": cfg.seeds, "finished_seeds": done,
           "minutes_per_seed": minutes, "shared_minutes": round(sum(v for k, v in timings.items()
                                                                     if not k.startswith("seed")) / 60, 1)}
    if done:
        runner = Runner(replace(cfg, seeds=done), out, progress=False, worker=True)
        try:
            res = runner.results(write=False)
        finally:
            runner.close()
        row.update(table=res["table"], paired=res["paired"], paired_explored=res["paired_explored"],
                   power=power(res["paired"]))
    write_json(res_dir / f"science_table_{name}.json", row)
    md = [f"# Science table: preset {preset} {' '.join(overrides)}".rstrip(), "",
          f"Seeds finished: {done or 'none'} of {cfg.seeds}; minutes per seed so far {minutes} (shared stages "
          f"{row['shared_minutes']}). Run directory: `{out}`.", ""]
    if done:
        md += ["Success per method and iteration (held-out test games; explored train tasks apart):", "",
               format_table(res["table"]),
               "Paired by (seed, task) on the held-out games, each method's last iteration (95% bootstrap CI over "
               "tasks; exact McNemar test on success):", "", format_paired(res["paired"])]
        if res["paired_explored"]:
            md += ["The same on the explored train tasks:", "", format_paired(res["paired_explored"])]
        md += ["Power: paired games a difference needs at the measured discordance (80% power, 5% two-sided):", "",
               "| A vs B | pairs | discordance | for 3 points | for 5 points |", "|---|---|---|---|---|"]
        md += [f"| {p['a']} vs {p['b']} | {p['pairs']} | {p['discordance']:.3f} | {p['pairs_for_3_points'] or '-'} | "
               f"{p['pairs_for_5_points'] or '-'} |" for p in row["power"]]
    atomic_write_text(res_dir / f"science_table_{name}.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="regime", help="a run preset (regime: the paper's data regime)")
    ap.add_argument("--out", help="run directory (default runs/science/<name>)")
    ap.add_argument("--name", help="results file suffix (default: the preset)")
    ap.add_argument("--minutes", type=float, default=0, help="stop the run after this long (0: run to the end)")
    ap.add_argument("--report", action="store_true", help="only write the table of what has finished")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    a = ap.parse_args()
    name = a.name or a.preset
    out = Path(a.out or ROOT / "runs" / "science" / name)
    run_settings(a.preset, None, a.overrides)  # bad settings fail here, before any work
    code = 0
    if not a.report:
        t0 = time.time()
        code = run_piece(a.preset, out, a.overrides, a.minutes)
        print(f"science_table: piece ran {(time.time() - t0) / 60:.1f} minutes"
              + ("" if code is None else f", exit code {code}"), flush=True)
    report(a.preset, out, a.overrides, name)
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
