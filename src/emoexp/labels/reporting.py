"""What a label scheme reports about its test predictions: report tables, figures and metrics.

A scheme answers :meth:`~emoexp.labels.schemes.LabelScheme.test_report` with a
:class:`SchemeReport`; the caller (a training run, an ensemble) writes the frames and figures
under their artifact paths, logs the metrics and closes the figures. The scheme decides which
reports exist (docs/design.md#1-the-label-scheme-decides-together), so no caller branches on the scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from emoexp.data import schema

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CLASSIFICATION_REPORT = "reports/classification_report.csv"
REGRESSION_REPORT = "reports/regression_report.csv"
PER_GROUP_METRICS = "reports/per_group_metrics.csv"
PER_GROUP_GAPS = "reports/per_group_gaps.csv"
TEST_INTERVALS = "reports/test_intervals.csv"
CONFUSION_MATRIX = "plots/confusion_matrix.png"
RELIABILITY_DIAGRAM = "plots/reliability_diagram.png"
SCATTER = "plots/scatter_{dim}.png"
"""Predicted against true values of one dimension (``{dim}``: its name)."""
CIRCUMPLEX_PLOT = "plots/circumplex.png"
PER_LABEL_F1 = "plots/per_label_f1.png"
RELIABILITY_BINS = 10
"""Bins of the reliability diagram (``test/ece`` keeps the metric's own default of 15 bins)."""


@dataclass
class SchemeReport:
    """Reports of one set of test predictions.

    Attributes:
        frames: Tables keyed by artifact path, e.g. ``reports/classification_report.csv``.
        figures: Matplotlib figures keyed by artifact path, e.g. ``plots/confusion_matrix.png``.
        metrics: Metrics keyed by name, e.g. ``test/ece``.
    """

    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def close_figures(self) -> None:
        """Release the figures once they are written (they hold their canvas until then)."""
        import matplotlib.pyplot as plt

        for figure in self.figures.values():
            plt.close(figure)


def group_columns(predictions: pd.DataFrame) -> list[str]:
    """The group-attribute columns (``group_*``) of a predictions frame, in column order."""
    return [c for c in predictions.columns if c.startswith(schema.GROUP_PREFIX)]


def single_label_report(
    test: pd.DataFrame, title: str, classes: Sequence[str], dims: Sequence[str]
) -> SchemeReport:
    """Reports of categorical and/or dimensional test predictions.

    Args:
        test: Predictions frame of the test split (``target``/``prediction``/``prob_<class>``
            and/or ``<dim>_true``/``<dim>_pred``, optionally ``group_*`` columns).
        title: Scheme name, used in the confusion matrix title.
        classes: Class names (empty for a purely dimensional scheme).
        dims: Dimensions (empty for a purely categorical scheme).

    Returns:
        Classification report, confusion matrix, reliability diagram and ``test/ece`` (with
        classes); the regression report and :func:`dimension_figures` (with dimensions); 95%
        intervals of the test figures resampling speakers (``reports/test_intervals.csv``,
        ``test/<metric>_ci_low/_ci_high``);
        per-group metrics and their largest gaps (with group columns).
    """
    from emoexp.evaluation import report

    out = SchemeReport()
    classes = list(classes)
    if classes and report.TARGET in test.columns:
        out.frames[CLASSIFICATION_REPORT] = report.classification_report_frame(test, classes).reset_index()
        out.figures[CONFUSION_MATRIX] = report.confusion_matrix_figure(test, classes, title=f"{title} (test)")
        probs, targets = report.class_probabilities(test, classes)
        out.metrics["test/ece"] = report.expected_calibration_error(probs, targets)
        out.figures[RELIABILITY_DIAGRAM] = report.reliability_diagram(probs, targets, RELIABILITY_BINS)
    if dims:
        out.frames[REGRESSION_REPORT] = report.regression_report_frame(test, list(dims)).reset_index()
        out.figures.update(dimension_figures(test, dims))
    _add_intervals(out, test, classes, dims)
    groups = group_columns(test)
    if groups:
        per_group = report.per_group_metrics(test, classes or None, groups)
        out.frames[PER_GROUP_METRICS] = per_group
        out.frames[PER_GROUP_GAPS] = report.largest_gaps(per_group)
    return out


def _add_intervals(
    out: SchemeReport, test: pd.DataFrame, classes: Sequence[str], dims: Sequence[str]
) -> None:
    """The test figures' intervals, speakers resampled (docs/protocols.md#confidence-intervals)."""
    from emoexp.evaluation.intervals import figure_intervals

    intervals = figure_intervals(test, classes if "target" in test.columns else [], dims)
    if intervals.empty:
        return
    out.frames[TEST_INTERVALS] = intervals
    for row in intervals.itertuples():
        out.metrics[f"test/{row.metric}_ci_low"] = row.ci_low
        out.metrics[f"test/{row.metric}_ci_high"] = row.ci_high


def dimension_figures(test: pd.DataFrame, dims: Sequence[str]) -> dict[str, Figure]:
    """A predicted-vs-true scatter per dimension and, with valence and arousal, the circumplex.

    Args:
        test: Predictions frame with ``<dim>_true``/``<dim>_pred`` columns (and ``target`` when
            the scheme also has classes: the circumplex colours points by it).
        dims: The scheme's dimensions.

    Returns:
        Figures keyed by artifact path: :data:`SCATTER` per dimension, :data:`CIRCUMPLEX_PLOT`.
    """
    from emoexp.evaluation import plots

    figures = {SCATTER.format(dim=dim): plots.dimension_scatter_figure(test, dim) for dim in dims}
    if {"valence", "arousal"} <= set(dims):
        figures[CIRCUMPLEX_PLOT] = plots.circumplex_figure(test)
    return figures
