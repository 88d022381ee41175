"""Faults a long run meets, injected into real smoke runs of the CLI (each in a process of its own):

- kill -9 at ten moments (at random times, and inside artifact writes), rerunning after each: the run ends with
  the artifacts of an uninterrupted run, byte for byte; no half-written file is ever taken as complete;
- the same config with two workers: the same artifacts (determinism across worker counts, and across runs);
- a full disk (a small tmpfs): the stage fails with a clear message, nothing earlier is damaged, and after space is
  freed the rerun resumes and ends as the uninterrupted run;
- the MariaDB server or the LLM server killed in the middle of a stage: the stage fails naming what died, and
  after a restart the rerun resumes. (An AgentGym env server dying: ``test_agentgym``.)

Every run reads the TextWorld games from the shared cache; every server is started and stopped here, by PID."""

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO
from iprkit.layout import RunLayout

pytestmark = pytest.mark.slow

SMOKE = ["run", "--preset", "smoke"]
_RUN = RunLayout(".")
VOLATILE = {_RUN.timings.name, _RUN.lock.name, _RUN.iteration(0, "ipr", 1).mc_counts.name}
"""Files that differ between equal runs by design: wall times, the lock holder's PID, and the Monte Carlo work
accounting (rollouts run vs estimates taken from the cache: after a kill in the scoring stage, the rerun finds
the estimates the killed piece cached, which is the cache's purpose; the estimates themselves are compared).
Logs (``*.log``) are not artifacts."""
TIMING_KEY = re.compile(r"runtime|per_second|seconds|wall|minutes|_s$|^mc_counts$")


def launch(out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """``iprkit run --preset smoke --out OUT EXTRA`` through the fault launcher, in a process group of its own."""
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "faults.py"), *SMOKE, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})


def finish(p: subprocess.Popen, timeout: float = 900) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _normal(obj, root: str):
    """A JSON value with wall times dropped and the run's own folder written as <run>."""
    if isinstance(obj, dict):
        return {k: _normal(v, root) for k, v in obj.items() if not TIMING_KEY.search(k)}
    if isinstance(obj, list):
        return [_normal(v, root) for v in obj]
    return obj.replace(root, "<run>") if isinstance(obj, str) else obj


def artifacts(root: Path) -> dict[str, str]:
    """{path: digest} of every artifact of a run: bytes (JSONL, weights, tokenizers), JSON without wall times."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if not p.is_file() or p.name in VOLATILE or p.name.endswith(".log") or \
                any(part.endswith(".tmp") for part in p.relative_to(root).parts):  # temp files, staging folders
            continue
        data = p.read_bytes()
        if p.parent.name == _RUN.mc_cache("x").parent.name:  # an append-only cache: workers append as they finish
            data = b"".join(sorted(data.splitlines(keepends=True)))
        if p.suffix == ".json":
            data = json.dumps(_normal(json.loads(data), str(root)), sort_keys=True).encode()
        elif p.suffix in (".md", ".html"):
            data = data.replace(str(root).encode(), b"<run>")
            data = re.sub(rb"\d+(\.\d+)? ?(s|min)\b", b"<t>", data)  # stage times in the tables
            data = re.sub(rb"\d+ rollouts run; \d+ estimates computed, \d+ cached", b"<mc work>", data)
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def diff(a: dict, b: dict) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def complete_files_parse(root: Path) -> int:
    """Every artifact that is not a temporary file reads whole: JSON parses, every JSONL line parses, every
    weights file's header matches its size. Returns how many files were checked."""
    from safetensors import safe_open

    n = 0
    for p in root.rglob("*"):
        if not p.is_file() or p.name.endswith(".tmp") or ".tmp" in p.parent.name or p.name in VOLATILE:
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        elif p.suffix == ".safetensors":
            with safe_open(str(p), "pt") as f:
                f.keys()
        else:
            continue
        n += 1
    return n


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted smoke run: (its folder, its stages' seconds, how many atomic writes it made, its stdout,
    seconds outside its stages: imports, start-up, the report)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    count = out.parent / "writes"
    t0 = time.perf_counter()
    rc, stdout, err = finish(launch(out, env={"IPRKIT_FAULT_COUNT": str(count)}))
    assert rc == 0, err[-3000:]
    stages = json.loads(RunLayout(out).timings.read_text())  # stage -> seconds, in the order they ran
    return out, stages, int(count.read_text()), stdout, time.perf_counter() - t0 - sum(stages.values())


def test_kill_9_at_ten_moments_then_rerun_ends_as_the_uninterrupted_run(reference, tmp_path):
    ref, stages, writes, ref_stdout, startup = reference
    out = tmp_path / "run"
    rng = random.Random(18)
    kills = []
    for i in range(10):
        if i in (1, 4, 7):  # inside a write: the n-th artifact this piece writes, cut short
            n = rng.randint(1, 3)
            p = launch(out, env={"IPRKIT_FAULT_KILL_AT_WRITE": str(n)})
            rc, _, err = finish(p)
            what = f"inside its write #{n}"
        else:  # at a random moment
            # inside one of the next three stages still to do (a piece resumes where the last stopped, and a killed
            # stage starts over): kills spread over the run, and ten of them never finish it, on a fast machine or
            # a slow one (windows of a fixed share of the run did both, as the rollouts got faster)
            timings = RunLayout(out).timings
            done = json.loads(timings.read_text()) if timings.exists() else {}
            todo = [d for k, d in stages.items() if k not in done]
            j = rng.randrange(min(3, len(todo)))
            t = startup + sum(todo[:j]) + rng.uniform(0, todo[j])
            p = launch(out)
            try:
                p.wait(timeout=t)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
            rc, _, err = finish(p)
            what = f"after {t:.1f} s"
        assert rc == -signal.SIGKILL, f"kill {i + 1} ({what}): the run ended first (rc {rc}): {err[-2000:]}"
        checked = complete_files_parse(out)  # nothing half-written passes for a finished artifact
        timings = RunLayout(out).timings
        done = sorted(json.loads(timings.read_text())) if timings.exists() else []
        kills.append({"kill": i + 1, "when": what, "files_checked": checked, "stages_done": len(done)})
    rc, stdout, err = finish(launch(out))
    assert rc == 0, err[-3000:]
    print(json.dumps(kills, indent=1))
    assert kills[-1]["stages_done"] > kills[0]["stages_done"]  # the kills fell at moments spread over the run
    assert not diff(artifacts(ref), artifacts(out)), diff(artifacts(ref), artifacts(out))
    assert not [p for p in out.rglob("*.tmp")]  # what killed writes left was swept
    table = lambda text: [line for line in text.splitlines() if line.startswith("|")]
    assert table(stdout) == table(ref_stdout) and table(stdout)  # the same results table


def test_two_workers_give_the_artifacts_of_one(reference, tmp_path):
    ref = reference[0]
    rc, _, err = finish(launch(tmp_path / "run", "--workers", "2"))
    assert rc == 0, err[-3000:]
    assert not diff(artifacts(ref), artifacts(tmp_path / "run")), diff(artifacts(ref), artifacts(tmp_path / "run"))


def _mount_tmpfs(path: Path, size_bytes: int) -> None:
    if os.geteuid() != 0:
        pytest.fail("the disk-full test mounts a small tmpfs: run the suite as root (as CI does), or give the user "
                    "the right to mount (e.g. in a container with CAP_SYS_ADMIN).")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], check=True)


def test_a_full_disk_fails_the_stage_then_resumes_after_space_is_freed(reference, tmp_path):
    ref = reference[0]
    size = sum(p.stat().st_size for p in ref.rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 2 * size)
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * int(1.6 * size))  # about 40% of the run fits
        out = disk / "run"
        rc, _, err = finish(launch(out))
        assert rc == 2 and "no space left on the device" in err and "rerun" in err, err[-3000:]
        assert re.search(r"iprkit: error: stage seed0/\S+: no space left", err), err[-1000:]
        assert "Traceback" not in err
        before = {k: v for k, v in artifacts(out).items()}
        complete_files_parse(out)
        filler.unlink()  # space freed
        rc, _, err = finish(launch(out))
        assert rc == 0, err[-3000:]
        after = artifacts(out)
        assert {k: after.get(k) for k in before} == before  # nothing finished before the failure changed
        assert not diff(artifacts(ref), after), diff(artifacts(ref), after)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    print(json.dumps({"run_bytes": size, "artifacts_kept_over_the_failure": len(before)}))


# -- external processes dying ---------------------------------------------------------------------------


def _kill_when(predicate, pid_of, timeout: float = 600) -> threading.Thread:
    """A thread that SIGKILLs ``pid_of()`` as soon as ``predicate()`` holds; ``.killed`` records the moment."""

    def watch():
        end = time.time() + timeout
        while time.time() < end:
            if predicate():
                os.kill(pid_of(), signal.SIGKILL)
                t.killed = time.time()
                return
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.killed = None
    t.start()
    return t


def _failed_mid_stage(p: subprocess.Popen, watcher, out: Path, message: str, never: str) -> None:
    """The run ``p`` whose server ``watcher`` killed ended with one error line naming a stage that did not finish
    and then ``message`` (a regex)."""
    rc, _, err = finish(p)
    assert watcher.killed is not None, never
    assert rc == 2 and "Traceback" not in err, err[-3000:]
    m = re.search(rf"iprkit: error: stage (seed0/\S+): {message}", err)
    assert m, err[-2000:]
    assert m[1] not in json.loads(RunLayout(out).timings.read_text())  # the stage it names did not finish


def test_mariadb_killed_mid_stage_fails_the_stage_then_a_rerun_resumes(intercode_dir, tmp_path):
    from iprkit.envs.mariadb import LocalMariaDB

    db = LocalMariaDB(workdir=tmp_path / "mariadb").start()
    try:
        db.load_dump(intercode_dir / "spider" / "ic_spider_dbs.sql")
        tasks = json.loads((intercode_dir / "spider" / "ic_spider_dev.json").read_text())
        url = db.grant_read_only([t["db"] for t in tasks])
        out = tmp_path / "run"
        args = ["env=sql", f"env_kwargs.url={url}", f"env_kwargs.data_dir={intercode_dir}", "n_experts=40",
                "n_eval=12", "n_explore=3", "methods=[ipr]"]
        rc, _, err = finish(launch(out, *args, "--stop-after", "seed0/sft"))
        assert rc == 0, err[-3000:]

        def selects() -> int:
            r = db._sql("SHOW GLOBAL STATUS LIKE 'Com_select'")
            return int(r.stdout.split()[-1])

        base = selects()
        p = launch(out, *args)
        watcher = _kill_when(lambda: selects() > base + 15, lambda: db.proc.pid)  # SFT's evaluation is querying
        _failed_mid_stage(p, watcher, out, rf"sql: .*server at 127.0.0.1:{db.port}.*rerun", "the run never queried the server")
        db.start()  # the same data folder and port: the server recovers
        rc, stdout, err = finish(launch(out, *args, "--stop-after", "seed0/ipr/iter1/explore"))
        assert rc == 0, err[-3000:]
        assert not RunLayout(out).sft_staging(0).exists()
        assert "experts:" not in stdout  # done before the failure: not redone
    finally:
        db.stop()


def test_llm_server_killed_mid_stage_fails_the_stage_then_a_rerun_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["server.backend=server", "server.kind=transformers", "server.launch=true", "server.prompt=text",
            "server.retries=1", "server.backoff_s=0.1", "methods=[ipr]"]
    rc, _, err = finish(launch(out, *args, "--stop-after", "seed0/sft"))
    assert rc == 0, err[-3000:]

    def served() -> list[Path]:  # pid files of servers that have answered a completion
        return [log.parent / "server.pid" for log in RunLayout(out).servers.glob("*/server.log")
                if "/v1/" in log.read_text(errors="replace") and (log.parent / "server.pid").exists()]

    p = launch(out, *args)
    watcher = _kill_when(lambda: bool(served()), lambda: int(served()[0].read_text()))
    _failed_mid_stage(p, watcher, out, r"every LLM server replica stopped answering", "no server answered a request")
    rc, _, err = finish(launch(out, *args, "--stop-after", "seed0/sft/eval"))
    assert rc == 0, err[-3000:]
    assert RunLayout(out).eval(0, "sft", 0).metrics("test").exists()
