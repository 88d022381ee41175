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


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file + fsync + rename). A file that
    already holds exactly ``text`` is left untouched (a resumed run rewrites nothing)."""
    path = Path(path)
    if path.exists() and path.stat().st_size == len(text.encode("utf-8")) and path.read_text(encoding="utf-8") == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
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
