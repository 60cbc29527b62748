"""Interruption-safe runs: SIGTERM/SIGINT end a run as *interrupted*, never as lost.

Two layers, because a signal can arrive at any moment of a run:

* :func:`stop_on_signals` covers the whole run (data preparation, evaluation, logging): a
  SIGTERM (cluster pre-emption, ``kill``) or SIGINT (Ctrl-C) raises :class:`TrainingInterrupted`
  at once, so that ``train`` can mark the MLflow run interrupted rather than leave it RUNNING.
* :class:`emoexp.tasks.guard.TrainingGuard`, a Lightning callback active while ``trainer.fit``
  trains, defers the signal to the end of the current training batch, saves ``last.ckpt`` and
  raises :class:`TrainingInterrupted` on all DDP ranks together.

This module imports no heavy library: ``train.py`` uses it before anything is built.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)
LAST_CHECKPOINT = "last.ckpt"


class TrainingInterrupted(SystemExit):
    """The run was stopped by SIGTERM/SIGINT; it can be resumed with ``resume=true``.

    A :class:`SystemExit` (like :class:`KeyboardInterrupt`, not an :class:`Exception`) so that
    generic ``except Exception`` handlers do not swallow it; an uncaught one exits the
    process with status ``128 + signal number`` as a killed process would.

    Attributes:
        signum: The signal received.
        checkpoint: The checkpoint saved on the way out, or ``None`` if the signal came outside training.
    """

    def __init__(self, signum: int, checkpoint: str | None = None):
        name = signal.Signals(signum).name
        where = f"; saved {checkpoint}" if checkpoint else ""
        super().__init__(
            f"Interrupted by {name}{where}. Re-run the same command with resume=true to continue."
        )
        self.code = 128 + int(signum)
        self.signum = int(signum)
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        return str(self.args[0])

    @property
    def signal_name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite: the run cannot recover and is marked FAILED."""


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into :class:`TrainingInterrupted` inside the block (or decorated function).

    An interruption by SIGINT leaves the block as :class:`KeyboardInterrupt`, as Ctrl-C always
    does, so that callers such as an Optuna study stop the way they expect; SIGTERM leaves as
    :class:`TrainingInterrupted` (exit status 143). Only the main thread can own signal
    handlers: elsewhere (a worker thread) this is a no-op. The previous handlers are restored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum: int, frame: Any) -> None:
        raise TrainingInterrupted(signum)

    previous = {signum: signal.signal(signum, raise_interrupted) for signum in signals}
    try:
        yield
    except TrainingInterrupted as error:
        if error.signum == signal.SIGINT:
            raise KeyboardInterrupt(str(error)) from error
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
