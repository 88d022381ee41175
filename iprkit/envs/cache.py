"""Where iprkit keeps generated games and other reusable artifacts.

``$IPRKIT_CACHE`` if set, else ``~/.cache/iprkit``. Safe to delete: everything in it
is regenerated on demand.
"""

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("IPRKIT_CACHE") or Path.home() / ".cache" / "iprkit")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
