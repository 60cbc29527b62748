"""The fold epilogue: what happens after any fitter has trained, written once for all of them.

Order: decisions tuned on validation (multi-label thresholds), then the test lock (a run with
``evaluate_test=false`` stops here: no test pass, no test predictions), then test metrics,
``predictions.csv``, the scheme's reports and plots, the checkpoint, model-specific test metrics
and the servable model (docs/design.md#3-the-test-split-is-locked).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.data.splits import TEST, VAL
from emoexp.engine.fitters.base import FittedFold, FoldContext
from emoexp.engine.recorder import Recorder


def predictions_frame(
    scheme: Any, outputs: Any, rows: np.ndarray, manifest: pd.DataFrame, part: str
) -> pd.DataFrame:
    """Per-sample predictions joined with sample id, speaker and group attributes."""
    samples = manifest.iloc[rows].reset_index(drop=True)
    frame = scheme.predictions_frame(scheme.decode(outputs), samples)
    meta = samples[[schema.ID, schema.SPEAKER, *schema.group_columns(samples)]]
    return pd.concat([pd.DataFrame({"split": part}, index=frame.index), meta, frame], axis=1)


def record_report(
    recorder: Recorder, run_id: str, scheme: Any, predictions: pd.DataFrame, interval_metrics: bool = True
) -> dict[str, float]:
    """The scheme's reports, plots and report metrics of the test predictions; returns the metrics.

    The metrics are ``test/ece`` and the intervals of the test figures (``test/uar_ci_low``...).
    A cross-validated parent passes ``interval_metrics=False``: its ``_ci_low/_ci_high`` metrics
    are the intervals over folds, and the pooled predictions' intervals stay in their table.
    """
    report = scheme.test_report(predictions[predictions["split"] == TEST])
    for name, frame in report.frames.items():
        recorder.log_frame(run_id, frame, name)
    for name, figure in report.figures.items():
        recorder.log_figure(run_id, figure, name)
    metrics = {
        name: float(value)
        for name, value in report.metrics.items()
        if np.isfinite(value) and (interval_metrics or not name.endswith(("_ci_low", "_ci_high")))
    }
    recorder.log_metrics(run_id, metrics)
    return metrics


def finish_fold(ctx: FoldContext, fitted: FittedFold) -> tuple[dict[str, float], pd.DataFrame]:
    """Evaluate and record a fitted fold (see the module docstring).

    Returns:
        The fold's final metrics (``val/<monitor>_best``, ``test/*``) and its per-sample
        predictions (empty when the test split is locked).
    """
    recorder, run_id, scheme, cfg = ctx.recorder, ctx.run_id, ctx.scheme, ctx.cfg
    if scheme.tunes_on_validation:
        outputs, rows = fitted.outputs(VAL)
        samples = ctx.manifest.iloc[rows].reset_index(drop=True)
        recorder.log_metrics(run_id, scheme.tune_on_validation(outputs, samples))
    if not cfg.get("evaluate_test", True):
        # The test lock (tuning trials): validation only, no test pass or test predictions.
        _log_checkpoint(ctx, fitted)
        return dict(fitted.best), pd.DataFrame(columns=["split"])
    test_metrics = fitted.test_metrics()
    if not fitted.logs_test_metrics:
        recorder.log_metrics(run_id, test_metrics)
    predictions = pd.concat(
        [predictions_frame(scheme, *fitted.outputs(part), ctx.manifest, part) for part in (VAL, TEST)],
        ignore_index=True,
    )
    recorder.log_frame(run_id, predictions, "predictions.csv")
    reported = record_report(recorder, run_id, scheme, predictions)
    _log_checkpoint(ctx, fitted)
    extra = fitted.extra_test_metrics()
    recorder.log_metrics(run_id, extra)
    if cfg.tracking.get("log_model", True):
        fitted.log_model()
    return {**test_metrics, **fitted.best, **extra, **reported}, predictions


def _log_checkpoint(ctx: FoldContext, fitted: FittedFold) -> None:
    if fitted.checkpoint and ctx.cfg.tracking.log_checkpoint:
        ctx.recorder.log_artifact(ctx.run_id, fitted.checkpoint, "checkpoints")
