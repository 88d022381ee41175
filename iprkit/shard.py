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

Training stages (SFT, DPO) with ``train.num_processes`` > 1 or ``train.accelerate_config`` run the same way
under torchrun or ``accelerate launch``: the main process prepares the stage's staging folder, every process
rebuilds the run and calls the stage's training function (``Runner.fits``) into it (DDP: each takes its share
of the global batch; the first one writes), and the main process renames the folder into place.
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
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(workers),
            "-m", "iprkit.shard", str(run_dir), stage, "--threads", str(threads)]  # standalone: it picks a free port


def _launch(cmd: list[str], log: Path, threads: int, stage: str, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)}).returncode
    if code:
        tail = log.read_text(errors="replace")[-3000:]
        raise IprkitError(f"{stage}: a {what} process failed (exit {code}); finished stages are kept and a rerun "
                          f"resumes. The end of {log}:\n{tail}")


def train_command(run_dir: Path, stage: str, out: Path, processes: int, accelerate_config: str | None,
                  threads: int) -> list[str]:
    """The launcher command that trains ``stage`` into ``out`` in several processes."""
    worker = ["iprkit.shard", str(run_dir), stage, "--train-into", str(out), "--threads", str(threads)]
    if accelerate_config:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
                "--main_process_port", str(free_port()), "--module", *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), "-m", *worker]


def run_training(runner, stage: str, out: Path) -> None:
    """Main process: train ``stage`` into ``out`` with the run's ``train`` settings' processes."""
    t = runner.cfg.train
    threads = max(1, runner.cfg.threads // t.num_processes)
    how = f"accelerate config {t.accelerate_config}" if t.accelerate_config else f"{t.num_processes} processes"
    print(f"{stage}: training with {how}", flush=True)
    cmd = train_command(runner.layout.root, stage, out, t.num_processes, t.accelerate_config, threads)
    _launch(cmd, runner.layout.shards(stage) / "train.log", threads, stage, "training")


def run_sharded(runner, step, workers: int) -> None:
    """Main process: run ``step`` (a :class:`~iprkit.stages.Stage` whose ``run`` is a :class:`Work`) on ``workers``
    processes, merge their shards in item order, and write the artifact."""
    layout, stage = runner.layout, step.name
    threads = max(1, runner.cfg.threads // workers)
    print(f"{stage}: {workers} workers ({threads} thread{'s' if threads > 1 else ''} each)", flush=True)
    _launch(command(layout.root, stage, workers, threads), layout.shards(stage) / "workers.log", threads, stage, "worker")
    parts = [pickle.loads(layout.shard(stage, rank, workers).read_bytes()) for rank in range(workers)]
    merged: list = [None] * sum(len(part["results"]) for part in parts)
    for rank, part in enumerate(parts):
        for j, result in enumerate(part["results"]):
            merged[rank + j * workers] = result
        for tag, kinds in part["counters"].items():  # the workers' counters (MC: rollouts run, cache hits), summed
            for kind, counts in kinds.items():
                into = runner.counters.setdefault(tag, {}).setdefault(kind, {})
                for k, v in counts.items():
                    into[k] = into.get(k, 0) + v
    step.run.write(merged)
    for p in layout.shards(stage).glob("*.pkl"):
        p.unlink()


def worker(run_dir: Path, stage: str, threads: int, train_into: Path | None = None) -> None:
    """One worker process: its shard of ``stage``, written atomically (``train_into``: its part in training
    ``stage`` into that folder)."""
    import torch

    from iprkit.config import from_dict
    from iprkit.io import read_json
    from iprkit.layout import RunLayout
    from iprkit.loop import Runner
    from iprkit.settings import RunSettings

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    layout = RunLayout(run_dir)
    out = layout.shard(stage, rank, world)
    if train_into is None and out.exists():
        return
    torch.set_num_threads(threads)
    runner = Runner(from_dict(RunSettings, read_json(layout.config)), run_dir, progress=rank == 0, worker=True)
    try:
        if train_into is not None:
            if stage not in runner.fits:
                raise IprkitError(f"{stage}: not a training stage of this run; those are {sorted(runner.fits)}.")
            runner.fits[stage](train_into)
            if torch.distributed.is_initialized():  # wait for the first process to write, then part cleanly: a
                torch.distributed.barrier()  # process leaving a live gloo group behind can abort at exit (SIGABRT)
                torch.distributed.destroy_process_group()
            return
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
    ap.add_argument("--train-into", type=Path, help="train the stage into this folder (one of its processes)")
    a = ap.parse_args(argv)
    worker(a.run_dir, a.stage, a.threads, a.train_into)


if __name__ == "__main__":
    main()
