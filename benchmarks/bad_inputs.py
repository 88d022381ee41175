"""Every bad input of ``tests/test_validation.py`` through the real CLI: exit code, wall time and the message.

    python benchmarks/bad_inputs.py          # prints a table, writes benchmarks/results/bad_inputs.json

The test asserts each message and that torch was never imported; this measures what a user sees and waits for
(goal: an answer in under 2 s, idle machine), plus ``iprkit run --help`` for the start-up itself.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_validation import CASES  # noqa: E402


def one(argv: list[str], cwd: Path) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "iprkit", *argv], capture_output=True, text=True, cwd=cwd)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    return {"argv": argv, "rc": r.returncode, "seconds": round(time.perf_counter() - t0, 2),
            "message": lines[-1] if lines else "", "traceback": "Traceback" in r.stderr}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bad.yaml").write_text("a: [1\n")
        for argv, _ in CASES:
            rows.append(one([a.replace("{tmp}", tmp) for a in argv], Path(tmp)))
            rows[-1]["argv"] = [a.replace(tmp, "TMP") for a in rows[-1]["argv"]]
            rows[-1]["message"] = rows[-1]["message"].replace(tmp, "TMP")
        helps = [one(["run", "--help"], Path(tmp))["seconds"] for _ in range(3)]
    print("| input | rc | s | message |\n|---|---|---|---|")
    for r in rows:
        print(f"| `{' '.join(r['argv'])}` | {r['rc']} | {r['seconds']} | {r['message'][:160]} |")
    slowest = max(r["seconds"] for r in rows)
    print(f"\n{len(rows)} bad inputs: {sum(r['rc'] == 2 for r in rows)} refused with rc 2, "
          f"{sum(r['traceback'] for r in rows)} tracebacks, slowest {slowest} s; `iprkit run --help`: {helps} s")
    out = ROOT / "benchmarks" / "results" / "bad_inputs.json"
    out.write_text(json.dumps({"cases": rows, "help_seconds": helps, "slowest_seconds": slowest}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
