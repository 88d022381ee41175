"""Progress bars for every long loop of the kit.

``tqdm.auto``'s bar (a widget in Jupyter, text in a terminal), except in a notebook that
``iprkit batch`` executes headless (``IPRKIT_PROGRESS=terminal``): there a text bar goes to
the kernel's own stderr, which is the batch's terminal, so the terminal shows each stage
live and the executed notebook keeps no frozen ``0%`` widget in its outputs.
"""

import os
import sys


def tqdm(*args, **kwargs):
    if terminal():
        from tqdm.std import tqdm as text

        return text(*args, **{"file": sys.__stderr__, "dynamic_ncols": True, "mininterval": 2.0, **kwargs})
    from tqdm.auto import tqdm as auto

    return auto(*args, **kwargs)


def terminal() -> bool:
    """In a notebook ``iprkit batch`` executes headless: bars go to the terminal."""
    return os.environ.get("IPRKIT_PROGRESS") == "terminal"


def trainer_callbacks(desc: str, progress: bool = True) -> list:
    """There (:func:`terminal`): a text bar of a Trainer's optimizer steps on the terminal, in place of the Trainer's
    own notebook bar (turned off with ``disable_tqdm``). Elsewhere none."""
    if not (progress and terminal()):
        return []
    from transformers import TrainerCallback

    class StepBar(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, desc=desc)

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(state.global_step - self.bar.n)

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return [StepBar()]
