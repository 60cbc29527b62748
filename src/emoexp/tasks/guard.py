"""The training guard: stop cleanly on SIGTERM/SIGINT with ``last.ckpt``; fail fast on a NaN loss.

Lightning's own SIGTERM handling (a flag broadcast from rank 0) knows nothing of SIGINT or of the
checkpoint to resume from; the guard replaces the handlers while training, and Lightning restores
the ones it found (:func:`emoexp.interruption.stop_on_signals`) when ``fit`` ends.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from emoexp.interruption import LAST_CHECKPOINT, SIGNALS, NonFiniteLossError, TrainingInterrupted

log = logging.getLogger(__name__)


class TrainingGuard(pl.Callback):
    """Save ``last.ckpt`` and stop on SIGTERM/SIGINT; fail on a non-finite training loss.

    Both conditions are checked at the end of every training batch and agreed across DDP ranks
    with one all-reduce (training batches are equal in number on every rank, so the collective
    cannot deadlock), so all ranks save the checkpoint and raise at the same step. A second
    signal while the first is pending stops at once, without a checkpoint.

    The stop happens at the end of a batch after which no validation runs: Lightning resumes a
    checkpoint taken there mid-epoch, exactly. After the last batch of an epoch (validation and
    the epoch's metrics still to come) the stop waits for the next batch, or for the end of
    training, where ``last.ckpt`` is saved anyway.

    Args:
        dirpath: Folder of ``last.ckpt`` (the run's checkpoint folder, stable across resumes).
        check_finite: Raise :class:`NonFiniteLossError` on a NaN/inf training loss.
    """

    def __init__(self, dirpath: str | Path, check_finite: bool = True):
        super().__init__()
        self.dirpath = str(dirpath)
        self.check_finite = check_finite
        self._signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def last_path(self) -> str:
        """Where the checkpoint of an interrupted training goes."""
        return str(Path(self.dirpath) / LAST_CHECKPOINT)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:  # noqa: D102
        # Every rank must write to (and later resume from) rank 0's folder.
        self.dirpath = trainer.strategy.broadcast(self.dirpath)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        # Runs after Lightning registered its SIGTERM handler; Lightning's teardown restores
        # the handlers it found, so ours need no explicit removal on an exception.
        self._signum = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._on_signal) for signum in SIGNALS}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        # The final training state too, so that a run interrupted during its evaluation resumes
        # straight to it (ModelCheckpoint's last.ckpt only follows improvements of the monitor).
        signum, _ = self._agree(trainer, pl_module, non_finite=False)
        trainer.save_checkpoint(self.last_path, weights_only=False)
        for handler_signum, handler in self._previous.items():
            signal.signal(handler_signum, handler)
        self._previous = {}
        if signum:
            self._stop(trainer, TrainingInterrupted(signum, self.last_path))

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signum is not None:
            raise TrainingInterrupted(signum)
        self._signum = signum
        log.warning(
            "Received %s: stopping at the end of a training batch and saving %s",
            signal.Signals(signum).name,
            self.last_path,
        )

    def _agree(self, trainer: pl.Trainer, module: pl.LightningModule, non_finite: bool) -> tuple[int, bool]:
        """The pending signal (0: none) and whether any rank saw a non-finite loss, in one collective."""
        flags = torch.tensor([float(self._signum or 0), float(non_finite)], device=module.device)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        signum, any_non_finite = (int(v) for v in flags.tolist())
        return signum, bool(any_non_finite)

    def on_train_batch_end(  # noqa: D102
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        non_finite = (
            self.check_finite and isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all())
        )
        signum, any_non_finite = self._agree(trainer, pl_module, non_finite)
        if any_non_finite:
            value = loss.item() if isinstance(loss, torch.Tensor) else loss
            error = NonFiniteLossError(
                f"The training loss is not finite (loss={value} on this rank) at epoch "
                f"{trainer.current_epoch}, step {trainer.global_step}. Lower optimizer.lr, keep "
                "trainer.gradient_clip_val, or look for NaN inputs; checkpoints and metrics so far are kept."
            )
            self._stop(trainer, error)
        if signum and self._validates_after(trainer, batch_idx):
            return  # still pending: stop after the next batch (or at the end of training)
        if signum:
            trainer.save_checkpoint(self.last_path, weights_only=False)
            self._stop(trainer, TrainingInterrupted(signum, self.last_path))

    @staticmethod
    def _validates_after(trainer: pl.Trainer, batch_idx: int) -> bool:
        """Whether validation or the epoch's end follows this batch (a resume would skip them)."""
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return True
        every = trainer.val_check_batch
        return isinstance(every, int) and every > 0 and (batch_idx + 1) % every == 0

    @staticmethod
    def _stop(trainer: pl.Trainer, error: BaseException) -> None:
        """Record the stop in the MLflow run (rank 0), then raise ``error`` on every rank together.

        The other ranks wait at a barrier until rank 0 has recorded it: a launcher that sees one
        rank exit may kill the others at once (Lightning's DDP launcher does, within seconds).
        """
        record_stop = getattr(trainer.logger, "record_stop", None)
        if trainer.is_global_zero and record_stop is not None:
            record_stop(error)
        trainer.strategy.barrier("emoexp-stop")
        raise error
