"""The iprkit CLI with a fault injected, for the reliability tests (``python tests/faults.py run ...``).

- ``IPRKIT_FAULT_COUNT=FILE``: count this process's atomic artifact writes and write the count to FILE at exit.
- ``IPRKIT_FAULT_KILL_AT_WRITE=N``: at the N-th atomic write, cut the temporary file to half its bytes and
  SIGKILL the process before the rename: what a kill in the middle of a write leaves behind.

An atomic write (:func:`iprkit.io.atomic_write_bytes`) ends in ``os.replace`` of ``.<name>.<random>.tmp``; those
renames are the ones counted (other libraries' renames pass through untouched).
"""

import atexit
import os
import signal
import sys


def _install() -> None:
    count_file, kill_at = os.environ.get("IPRKIT_FAULT_COUNT"), int(os.environ.get("IPRKIT_FAULT_KILL_AT_WRITE", 0))
    if not (count_file or kill_at):
        return
    real, seen = os.replace, [0]

    def replace(src, dst, *a, **kw):
        name = os.path.basename(os.fspath(src))
        if name.startswith(".") and name.endswith(".tmp"):
            seen[0] += 1
            if seen[0] == kill_at:
                os.truncate(src, os.path.getsize(src) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *a, **kw)

    os.replace = replace
    if count_file:
        atexit.register(lambda: open(count_file, "w").write(str(seen[0])))


if __name__ == "__main__":
    _install()
    from iprkit.cli import main

    sys.exit(main(sys.argv[1:]))
