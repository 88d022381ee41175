"""Stages sharded across worker processes: exploration, Monte Carlo scoring and evaluation split their work
items over K workers, each with its own backend, and the shards are merged into the stage's artifact.

The workers are launched by PyTorch's own launcher (``torchrun``, i.e. ``python -m torch.distributed.run``),
which gives each its rank and the world size; no home-made scheduler. Each worker rebuilds the run from its
directory (the saved config), takes the items ``rank::K`` of the stage's :class:`~iprkit.stages.Work`, runs
them, and writes its results atomically to ``shards/<stage>/<rank>-of-<K>.pkl``. The main process then
merges the shards in item order and writes the artifact once. Because every episode's seed comes from the
episode (:func:`iprkit.rollout.episode_seed`), the artifact is the same for any K.

    iprkit run --preset demo --out runs/demo --workers 2        # K processes on this machine

On several machines sharing the run directory, start the same worker command on each with torchrun's
multi-node flags (``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``); :func:`command` shows it.

A worker whose shard exists skips its work, so a rerun after a kill redoes only the missing shards.
"""

import os
import pickle
import subprocess
import sys
from pathlib import Path

from iprkit.errors import IprkitError
from iprkit.io import atomic_write_bytes
from iprkit.serving import free_port


def command(run_dir: Path, stage: str, workers: int, threads: int) -> list[str]:
    """The launcher command that runs ``stage``'s shards in ``workers`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(workers), "--nnodes", "1",
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "iprkit.shard", str(run_dir),
            stage, "--threads", str(threads)]


def run_sharded(runner, stage: str, workers: int) -> None:
    """Main process: run ``stage`` (a :class:`Work` stage of ``runner``'s plan) on ``workers`` processes, merge
    their shards in item order, and write the artifact."""
    layout = runner.layout
    threads = max(1, runner.cfg.threads // workers)
    cmd = command(layout.root, stage, workers, threads)
    log = layout.shards(stage) / "workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"{stage}: {workers} workers ({threads} thread{'s' if threads > 1 else ''} each)", flush=True)
    with log.open("a") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)}).returncode
    if code:
        tail = log.read_text(errors="replace")[-3000:]
        raise IprkitError(f"{stage}: a worker failed (exit {code}); finished shards are kept and a rerun redoes the "
                          f"rest. The end of {log}:\n{tail}")
    work = next(s.run for s in runner.plan() if s.name == stage)
    n = len(work.items())
    merged: list = [None] * n
    for rank in range(workers):
        part = pickle.loads(layout.shard(stage, rank, workers).read_bytes())
        for j, result in enumerate(part["results"]):
            merged[rank + j * workers] = result
        for tag, kinds in part["counters"].items():  # the workers' counters (MC: rollouts run, cache hits), summed
            for kind, counts in kinds.items():
                into = runner.counters.setdefault(tag, {}).setdefault(kind, {})
                for k, v in counts.items():
                    into[k] = into.get(k, 0) + v
    work.write(merged)
    for p in layout.shards(stage).glob("*.pkl"):
        p.unlink()


def worker(run_dir: Path, stage: str, threads: int) -> None:
    """One worker process: its shard of ``stage``, written atomically."""
    import torch

    from iprkit.config import from_dict
    from iprkit.io import read_json
    from iprkit.layout import RunLayout
    from iprkit.loop import Runner
    from iprkit.settings import RunSettings

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    layout = RunLayout(run_dir)
    out = layout.shard(stage, rank, world)
    if out.exists():
        return
    torch.set_num_threads(threads)
    runner = Runner(from_dict(RunSettings, read_json(layout.config)), run_dir, progress=rank == 0, worker=True)
    try:
        stages = {s.name: s for s in runner.plan()}
        if stage not in stages or not hasattr(stages[stage].run, "items"):
            raise IprkitError(f"{stage}: not a stage of this run made of work items (exploration, scoring, evaluation).")
        work = stages[stage].run
        results = work.do(work.items()[rank::world])
        atomic_write_bytes(out, pickle.dumps({"results": results, "counters": runner.counters}))
    finally:
        runner.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m iprkit.shard", description="One worker of a sharded stage "
                                 "(launched by torchrun; rank and world size from its environment).")
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("stage")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    worker(a.run_dir, a.stage, a.threads)


if __name__ == "__main__":
    main()
