"""A test-only Lightning callback that logs one metric point per training step (``probe/step``).

Importable by ``python train.py`` subprocesses via PYTHONPATH (see ``subprocess_env``):
``+callbacks.step_metrics._target_=step_metrics.StepMetrics``. With ``log_every_n_steps=1`` every
optimiser step hands one point to the run's recorder, so a test can check that none is lost.
"""

from __future__ import annotations

import lightning.pytorch as pl


class StepMetrics(pl.Callback):
    """Log ``probe/step`` = the global step after every training batch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pl_module.log("probe/step", float(trainer.global_step), on_step=True, on_epoch=False)
