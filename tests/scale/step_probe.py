"""A test-only Lightning callback, importable by tests and ``python train.py`` subprocesses via PYTHONPATH.

``+callbacks.probe._target_=step_probe.StepProbe`` slows every training step down enough to be
interrupted mid-epoch and leaves a marker file per finished step (so a test knows when to signal
a subprocess), or signals its own process at a given step (an in-process Ctrl-C).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import ClassVar

import lightning.pytorch as pl


class StepProbe(pl.Callback):
    """Sleep after every training batch, touch ``<marker_dir>/epoch<E>-batch<B>``, optionally signal.

    Args:
        marker_dir: Where the markers go.
        seconds: Sleep per training batch.
        signal_at: A marker name (``epoch1-batch1``) at which to send ``signum`` to this process.
        signum: The signal to send (default SIGINT, as Ctrl-C).
        occurrence: Send it the n-th time ``signal_at`` is reached in this process (fold n of a CV).
    """

    reached: ClassVar[Counter] = Counter()

    def __init__(
        self,
        marker_dir: str,
        seconds: float = 0.2,
        signal_at: str | None = None,
        signum: int = int(signal.SIGINT),
        occurrence: int = 1,
    ):
        self.marker_dir = Path(marker_dir)
        self.seconds = seconds
        self.signal_at = signal_at
        self.signum = signum
        self.occurrence = occurrence

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)
        name = f"epoch{trainer.current_epoch}-batch{batch_idx}"
        if trainer.is_global_zero:
            self.marker_dir.mkdir(parents=True, exist_ok=True)
            (self.marker_dir / name).touch()
        if name == self.signal_at:
            StepProbe.reached[name] += 1
            if StepProbe.reached[name] == self.occurrence:
                os.kill(os.getpid(), self.signum)
