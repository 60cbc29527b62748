"""The fitter contract: what a fold gives a fitter, and what a fitted fold answers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from emoexp.data.splits import Fold
from emoexp.engine.recorder import Recorder


@dataclass
class FoldContext:
    """Everything a fitter needs for one fold.

    Attributes:
        cfg: The run's config.
        scheme: The label scheme, class weights resolved on this fold's training rows.
        manifest: The run's samples (all folds).
        fold: This fold's train/val/test masks.
        recorder: Where the fold's run is recorded (the only writer).
        run_id: The fold's MLflow run (``""`` on a DDP rank that does not record).
        output_dir: The fold's folder (checkpoints).
        resume: Whether an interrupted training of this fold continues from ``last.ckpt``.
    """

    cfg: DictConfig
    scheme: Any
    manifest: pd.DataFrame
    fold: Fold
    recorder: Recorder
    run_id: str
    output_dir: Path
    resume: bool = False


class FittedFold(Protocol):
    """A model trained on one fold, as the fold epilogue sees it.

    Only the epilogue asks for the test split (:meth:`outputs` of ``test``, :meth:`test_metrics`),
    and only when the run may evaluate on test: the test lock is written once, there.

    Attributes:
        best: ``{"val/<monitor>_best": value}`` (empty when there was no validation).
        checkpoint: The best checkpoint file to log as an artifact, if any.
        logs_test_metrics: Whether :meth:`test_metrics` already recorded what it returns.
    """

    best: dict[str, float]
    checkpoint: str | None
    logs_test_metrics: bool

    def outputs(self, part: str) -> tuple[Any, np.ndarray]:
        """Head outputs ``[N, K]`` of one part and the manifest rows they belong to."""
        ...

    def test_metrics(self) -> dict[str, float]:
        """The scheme's ``test/*`` metrics of the selected model."""
        ...

    def extra_test_metrics(self) -> dict[str, float]:
        """Metrics only some models have (e.g. fusion without one modality); ``{}`` otherwise."""
        ...

    def log_model(self) -> None:
        """Log the servable model into the fold's run through the recorder."""
        ...
