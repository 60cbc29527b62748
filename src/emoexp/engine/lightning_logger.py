"""A Lightning logger that writes through the recorder, so the recorder stays the only MLflow writer."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from emoexp.engine.recorder import Recorder


class RecorderLogger(Logger):
    """Lightning's epoch/step metrics into the fold's MLflow run, via :class:`Recorder`.

    On a resumed run the recorder drops points at steps already logged (a replay after resuming
    from ``last.ckpt``). :meth:`record_stop` lets the training guard mark the run interrupted or
    failed from inside training, before every rank raises.

    Args:
        recorder: The run's recorder.
        run_id: The fold's run.
    """

    def __init__(self, recorder: Recorder, run_id: str):
        super().__init__()
        self._recorder = recorder
        self._run_id = run_id
        self.output_dir = None

    @property
    def name(self) -> str:  # noqa: D102
        return "emoexp"

    @property
    def version(self) -> str:  # noqa: D102
        return self._run_id

    @property
    def run_id(self) -> str:
        """The MLflow run this logger writes to."""
        return self._run_id

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Params are recorded once by the run core from the resolved config, not by Lightning."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:  # noqa: D102
        self._recorder.log_metrics(self._run_id, {k: float(v) for k, v in metrics.items()}, step or 0)

    @rank_zero_only
    def record_stop(self, error: BaseException) -> None:
        """Mark the run interrupted (KILLED) or failed (FAILED) now (see :meth:`Recorder.stop`)."""
        self._recorder.stop(self._run_id, error)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Write the buffered points: what a checkpoint holds is never ahead of the store (a hard kill)."""
        self._recorder.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:  # noqa: D102
        self._recorder.flush()
