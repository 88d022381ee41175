"""Stages: a named piece of work, the artifacts it leaves, and the function that makes them.

The loop is a list of stages (see :meth:`iprkit.loop.Runner.plan`). :class:`StageRunner`
runs them in order with one policy for all:

- a stage whose outputs all exist is done: it is skipped (a rerun resumes at the first
  unfinished stage and rewrites nothing);
- a stage writes its artifacts atomically (:mod:`iprkit.io`; folders through
  :func:`staged_dir`), so a kill never leaves a half artifact that looks finished;
- the wall seconds of every stage that ran are added to ``timings.json``;
- ``stop_after`` ends the run cleanly after a named stage, as an interruption would.

Stages that are a list of independent work items (exploration episodes, Monte Carlo
estimates, evaluation episodes) keep that shape: :class:`Work` splits them into
``items -> do(items) -> write(results)``, so the same stage can later run its items in
shards on several workers and merge them before ``write``.
"""

import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from iprkit.errors import IprkitError, disk_full, disk_full_error
from iprkit.io import read_json, write_json


class StopRun(Exception):
    """Raised at ``stop_after``: the run stops cleanly, as if interrupted there."""


@dataclass
class Work:
    """A stage made of independent items: ``write(do(items))``. ``do`` must give results in the order of
    ``items`` and make each result from its item alone (its seed included), so any split into shards,
    merged in item order, gives the same artifact."""

    items: Callable[[], list]
    do: Callable[[list], list]
    write: Callable[[list], None]

    def __call__(self) -> None:
        self.write(self.do(self.items()))


@dataclass
class Stage:
    """One step of the pipeline."""

    name: str
    """Its name in ``timings.json`` and for ``--stop-after`` (``seed0/ipr/iter1/score``)."""
    outputs: list[Path]
    """The artifacts it leaves; all present = done."""
    run: Callable[[], Any]
    """Makes the outputs (atomically)."""
    timed: bool = True
    """Record its wall time (off for stages that do no work of their own, such as ETO's empty scoring)."""
    inputs: list[Path] = field(default_factory=list)
    """Artifacts of earlier stages it reads (for readers of the plan; the order of the plan guarantees them)."""

    def done(self) -> bool:
        return all(p.exists() for p in self.outputs)


def matches(stage: str, target: str) -> bool:
    """Whether ``target`` names ``stage`` or a group holding it: whole path components, anchored at the
    end of the stage's name or at a group (``ipr/iter1/score``, ``sft``, ``seed0/sft/eval``)."""
    parts, want = stage.split("/"), target.strip("/").split("/")
    n = len(want)
    return any(parts[i:i + n] == want for i in range(len(parts) - n + 1))


def stop_index(names: list[str], target: str) -> int:
    """Index of the stage after which ``stop_after=target`` stops: the first stage whose name ends with
    ``target``, else the last stage of the first group named by it. An unknown target is an error."""
    for i, name in enumerate(names):
        if name == target or name.endswith("/" + target):
            return i
    hits = [i for i, name in enumerate(names) if matches(name, target)]
    if not hits:
        kinds = sorted({"/".join(p for p in n.split("/") if not p.startswith("seed")) for n in names})
        raise IprkitError(f"--stop-after {target!r} names no stage of this run; stage names are "
                          f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''} (any trailing part works, "
                          f"e.g. {', '.join(kinds[:8])}).")
    first = hits[0]
    end = first
    while end + 1 < len(names) and matches(names[end + 1], target):
        end += 1
    return end


class StageRunner:
    """Runs stages: skip finished ones, time the rest, stop after ``stop_after``."""

    def __init__(self, timings_path: Path, stop_after: str | None = None, sharder: Callable[[Stage], None] | None = None):
        """``sharder``: runs a :class:`Work` stage across workers instead of in this process (:mod:`iprkit.shard`)."""
        self.timings_path, self.stop_after, self.sharder = Path(timings_path), stop_after, sharder
        self.ran: list[str] = []

    def check(self, names: list[str]) -> None:
        """Refuse a ``stop_after`` that names no stage of the plan (before any work)."""
        if self.stop_after:
            stop_index(names, self.stop_after)

    def run_all(self, stages: list[Stage]) -> None:
        names = [s.name for s in stages]
        last = stop_index(names, self.stop_after) if self.stop_after else None
        for i, stage in enumerate(stages):
            self.run(stage)
            if last is not None and i == last:
                raise StopRun(stage.name)

    def run(self, stage: Stage) -> bool:
        """Run one stage unless it is done; True when it ran."""
        if stage.done():
            return False
        try:
            with self.timed(stage.name, stage.timed):
                if self.sharder is not None and isinstance(stage.run, Work):
                    self.sharder(stage)
                else:
                    stage.run()
        except IprkitError as e:
            raise IprkitError(f"stage {stage.name}: {e}") from None
        except Exception as e:
            if disk_full(e):
                raise disk_full_error(f"stage {stage.name}", e) from None
            raise
        if not stage.done():
            missing = [str(p) for p in stage.outputs if not p.exists()]
            raise IprkitError(f"stage {stage.name} finished without writing {missing}.")
        self.ran.append(stage.name)
        return True

    @contextmanager
    def timed(self, name: str, record: bool = True) -> Iterator[None]:
        """Add the wall seconds of the block to ``name`` in ``timings.json`` (to 0.01 s)."""
        t0 = time.perf_counter()
        yield
        if record:
            timings = read_json(self.timings_path) if self.timings_path.exists() else {}
            timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 2)
            write_json(self.timings_path, timings)


@contextmanager
def staged_dir(final: Path, staging: Path | None = None) -> Iterator[Path]:
    """A folder written in full, then renamed to ``final``: yields the staging folder (emptied first);
    ``final`` appears only when the block succeeds."""
    staging = staging or final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    yield staging
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
