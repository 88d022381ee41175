"""Progress bars for every long loop of the kit.

``tqdm.auto``'s bar (a widget in Jupyter, text in a terminal), except in a notebook that
``iprkit batch`` executes headless (``IPRKIT_PROGRESS=terminal``): there a text bar goes to
the kernel's own stderr, which is the batch's terminal, so the terminal shows each stage
live and the executed notebook keeps no frozen ``0%`` widget in its outputs.
"""

import os
import sys


def tqdm(*args, **kwargs):
    if os.environ.get("IPRKIT_PROGRESS") == "terminal":
        from tqdm.std import tqdm as text

        return text(*args, **{"file": sys.__stderr__, "dynamic_ncols": True, "mininterval": 2.0, **kwargs})
    from tqdm.auto import tqdm as auto

    return auto(*args, **kwargs)
