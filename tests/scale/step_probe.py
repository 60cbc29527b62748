"""A test-only Lightning callback, importable by ``python train.py`` subprocesses via PYTHONPATH.

``+callbacks.probe._target_=step_probe.StepProbe`` makes each training step slow enough to be
interrupted mid-epoch and leaves a marker file per finished step, so a test knows when to signal.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning.pytorch as pl


class StepProbe(pl.Callback):
    """Sleep ``seconds`` after every training batch and touch ``<marker_dir>/epoch<E>-batch<B>``."""

    def __init__(self, marker_dir: str, seconds: float = 0.2):
        self.marker_dir = Path(marker_dir)
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: D102
        time.sleep(self.seconds)
        if trainer.is_global_zero:
            self.marker_dir.mkdir(parents=True, exist_ok=True)
            (self.marker_dir / f"epoch{trainer.current_epoch}-batch{batch_idx}").touch()
