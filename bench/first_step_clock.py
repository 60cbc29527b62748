"""A Lightning callback for ``bench/startup_time.py``: when did the first optimiser step end?

``python train.py +callbacks.first_step._target_=first_step_clock.FirstStepClock`` (with ``bench/``
on ``PYTHONPATH``) writes ``time.time()`` at the end of the first training batch to the file named
by ``$EMOEXP_FIRST_STEP_FILE``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

CLOCK_FILE = "EMOEXP_FIRST_STEP_FILE"


class FirstStepClock(pl.Callback):
    """Write the wall-clock time once, after the first training batch (its optimiser step done)."""

    def __init__(self) -> None:
        self.done = False

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        """Write the time on the first call only."""
        if not self.done:
            Path(os.environ[CLOCK_FILE]).write_text(f"{time.time():.6f}")
            self.done = True
