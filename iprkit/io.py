"""Atomic artifact writes and line-checked JSONL reads.

Every artifact is written to a temporary file in the same folder and renamed into
place, so an interrupted or failed write (a full disk, a kill) never leaves a half
file and never damages the previous version.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from iprkit.errors import IprkitError

TEMP_SUFFIX = ".tmp"
"""An atomic write's temporary file is ``.<name>.<random>.tmp`` beside its target."""
_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: the process's umask, for files written atomically


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file + fsync + rename). A file that
    already holds exactly ``text`` is left untouched (a resumed run rewrites nothing)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write_text` for bytes."""
    path = Path(path)
    if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; an artifact gets the user's usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def check_output(path: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse an output path that cannot be written (under a file, in a read-only or pseudo folder) before any work."""
    path = Path(path)
    up = path if path.exists() and path.is_dir() else path.parent
    while not up.exists():
        up = up.parent
    if not up.is_dir():
        raise IprkitError(f"{what} {path}: {up} is a file, so nothing can be written under it; choose another path.")
    if not os.access(up, os.W_OK | os.X_OK) or str(up.resolve()).startswith(("/proc", "/sys")):
        raise IprkitError(f"{what} {path}: {up} is not writable; choose a folder you can write to.")
    if path.exists() and path.is_dir() and what.endswith("file"):
        raise IprkitError(f"{what} {path}: is a folder; give a file name.")
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write one JSON document (indented, keys in insertion order)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Atomically write one JSON object per line."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_json(path: str | os.PathLike) -> Any:
    """Read one JSON document; errors name the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise IprkitError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); delete the file to recompute it.") from None


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a malformed line raises an
    error naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise IprkitError(f"{path}: no such file. Check the path (write one with `iprkit experts ... --out {path}`).")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise IprkitError(
                    f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}). "
                    "Each line must hold one JSON object; fix or delete that line."
                ) from None
            if not isinstance(obj, dict):
                raise IprkitError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}.")
            yield lineno, obj


def remove_stale_temps(root: str | os.PathLike) -> int:
    """Delete the temporary files that killed writes left under ``root`` (``.<name>.<random>.tmp``, see
    :func:`atomic_write_bytes`); call it only while holding the folder's :class:`RunLock`. Returns how many."""
    n = 0
    for p in Path(root).rglob(f".*{TEMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


class RunLock:
    """One process per run directory: a file holding the owner's PID. A second run into the folder is refused
    with the holder's PID; a lock left by a killed run (its PID is gone) is taken over."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK)
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        except FileExistsError:
            pass
        try:
            holder = int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            holder = 0
        if holder and holder != os.getpid() and _alive(holder):
            raise IprkitError(f"{self.path.parent} is in use by another iprkit run (PID {holder}); wait for it to "
                              f"finish or use another --out. (A lock left by a killed run is taken over.)")
        atomic_write_text(self.path, str(os.getpid()))  # stale (its process is gone) or ours: take it
        return self

    def release(self) -> None:
        try:
            if self.path.read_text().strip() == str(os.getpid()):
                self.path.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
