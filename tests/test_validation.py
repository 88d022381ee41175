"""Fail fast on bad settings: every bad input below is refused before any work, with a one-line message that
names the field or flag, the value and what is allowed, and without importing torch (so it answers at once).
Artifacts keep the user's umask; one run at a time per run directory."""

import json
import os
import subprocess
import sys

import pytest

from iprkit.errors import IprkitError
from iprkit.io import RunLock, write_json
from iprkit.layout import RunLayout

CASES = [
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "mc.n=-3"], "mc.n=-3: must be a whole number >= 1"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "mc.n.x=1"], "field 'n' of MCSettings must be int"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "seeds=[]"], "seeds=[]: give one or more distinct seeds"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "--stop-after", "nosuch"], "--stop-after 'nosuch' names no stage"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "sft_model=/nonexistent"], "(seed 0) is not a model folder"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "env_kwargs.nb_rooms=3"], "unexpected keyword argument 'nb_rooms'"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "env=alfworld", "env_kwargs.preset=easy"], "for env 'alfworld'"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "dpo.nll=max"], "dpo.nll='max': choose sum (the paper) or mean"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "sft.lr_scheduler=cosinus"], "sft.lr_scheduler='cosinus': choose"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "generation.top_p=0"], "generation.top_p=0.0: must be in (0, 1]"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "eval_splits=[valid]"], "textworld has no split(s) ['valid']"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "seeds=[0,1"], "not valid YAML"),
    (["run", "--preset", "nosuch", "--out", "{tmp}/r"], "unknown preset 'nosuch'"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "train.num_processes=3"],
     "sft.batch_size=8: must divide among train.num_processes=3 processes"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "train.accelerate_config=nosuch.yaml"],
     "train.accelerate_config='nosuch.yaml': no such file"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "server.backend=server", "server.kind=vllm", "server.launch=true"],
     "vllm is not installed for"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "--workers", "0"], "argument --workers: 0 is too small"),
    (["run", "--preset", "smoke", "--out", "{tmp}/r", "server.backend=server", "server.urls=[http://127.0.0.1:9]"],
     "server.urls: no server answers: http://127.0.0.1:9"),
    (["experts", "--limit", "-1", "--out", "{tmp}/e.jsonl"], "argument --limit: -1 is too small"),
    (["experts", "--limit", "0", "--out", "{tmp}/e.jsonl"], "argument --limit: 0 is too small"),
    (["eval", "--model", "random", "--threads", "0", "--out", "{tmp}/ev"], "argument --threads: 0 is too small"),
    (["experts", "--out", "/proc/x.jsonl"], "/proc is not writable"),
    (["experts", "--out", "/etc/hostname/x.jsonl"], "/etc/hostname is a file"),
    (["experts", "--out", "{tmp}"], "is a folder; give a file name"),
    (["experts", "--env", "intercode_sql", "--sql-data", "{tmp}/nodata", "--out", "{tmp}/e.jsonl"],
     "nodata/spider/ic_spider_dev.json not found"),  # the alias keeps its flags
    (["batch", "--params", "nosuch.yaml", "--out", "{tmp}/b"], "--params nosuch.yaml: no such file"),
    (["batch", "--params", "{tmp}/bad.yaml", "--out", "{tmp}/b"], "not valid YAML"),
    (["batch", "--preset", "nosuch", "--out", "{tmp}/b"], "unknown preset 'nosuch'"),
    (["batch", "--preset", "smoke", "--grid", "foo=1", "--out", "{tmp}/b"], "grid point foo=1: config: unknown field"),
    (["batch", "--preset", "smoke", "--grid", "seeds=[0,1],[2]", "--grid", "mc.n=0", "--out", "{tmp}/b"],
     "grid point seeds=[0, 1]__mc.n=0: mc.n=0: must be a whole number >= 1"),
]


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(a[:1] + a[-1:]) + f" {i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_refused_at_once_with_a_clear_message(tmp_path, argv, message):
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = ("import sys\nfrom iprkit.cli import main\ntry:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    rc = e.code\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert message in r.stderr, r.stderr[-2000:]
    assert r.stdout.split()[-2:] == ["NO-TORCH", "2"], (r.stdout, r.stderr[-1000:])  # refused before heavy imports
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "b").exists()  # nothing was started


def test_artifacts_keep_the_users_umask(tmp_path):
    path = write_json(tmp_path / "x.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_one_run_per_directory_and_a_stale_lock_is_taken_over(tmp_path):
    path = RunLayout(tmp_path).lock
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(str(holder.pid))
        with pytest.raises(IprkitError, match=rf"in use by another iprkit run \(PID {holder.pid}\)"):
            RunLock(path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(path).acquire()  # the holder is gone: its lock is stale
    assert path.read_text() == str(os.getpid())
    lock.release()
    assert not path.exists()


def test_a_second_run_into_a_directory_in_use_is_refused(tmp_path):
    """A real `iprkit run` holds its directory; another process is refused while it runs."""
    from conftest import run_cli

    first = subprocess.Popen([sys.executable, "-m", "iprkit.cli", "run", "--preset", "smoke", "--out", str(tmp_path),
                              "methods=[sft]"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = RunLayout(tmp_path)
        lock, config = run.lock, run.config
        for _ in range(1200):  # the first run holds the lock and has written its config (once its env is built)
            if lock.exists() and lock.read_text().strip() and config.exists():
                break
            first.poll()
            import time

            time.sleep(0.05)
        r = run_cli("run", "--preset", "smoke", "--out", str(tmp_path), "methods=[sft]")
        assert r.returncode == 2 and f"in use by another iprkit run (PID {first.pid})" in r.stderr
    finally:
        first.kill()
        first.wait()
    assert json.loads(RunLayout(tmp_path).config.read_text())["methods"] == ["sft"]
