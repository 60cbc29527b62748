"""Metric collections for each kind of label scheme, built from torchmetrics.

Every collection keeps its state in torchmetrics states, so it accumulates over batches,
synchronises across DDP processes and can be passed to Lightning's ``self.log_dict``.
Keys are bare metric names behind an optional ``prefix`` (``"val/"`` gives ``val/uar``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelF1Score,
    MultilabelJaccardIndex,
)
from torchmetrics.regression import ConcordanceCorrCoef, MeanAbsoluteError, PearsonCorrCoef
from torchmetrics.utilities.compute import normalize_logits_if_needed

DEFAULT_DIMS: tuple[str, ...] = ("valence", "arousal")


class UnweightedAverageRecall(MulticlassRecall):
    """Unweighted average recall (UAR): the mean recall over classes present in the targets.

    This is scikit-learn's ``balanced_accuracy_score``. It equals macro recall unless a class
    is predicted but never a target; macro recall would count such a class with recall 0,
    so UAR would depend on which classes a small validation set happens to lack.

    Args:
        num_classes: Number of classes ``C``.
        **kwargs: Passed to :class:`torchmetrics.classification.MulticlassRecall`.
    """

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, average="none", **kwargs)

    def compute(self) -> torch.Tensor:
        """Return the mean recall over classes with support; NaN before any update."""
        tp, _, _, fn = self._final_state()
        support = tp + fn
        present = support > 0
        return (tp[present] / support[present]).float().mean()


def classification_metrics(num_classes: int, prefix: str = "") -> MetricCollection:
    """Build the single-label classification metrics.

    Precision and F1 macro averages follow scikit-learn with ``labels=None`` and
    ``zero_division=0``: a class that is neither a target nor predicted is left out of the
    mean. UAR averages recall over the classes that occur in the targets (see
    :class:`UnweightedAverageRecall`).

    Args:
        num_classes: Number of classes ``C``.
        prefix: Prepended to every key, e.g. ``"val/"``.

    Returns:
        A collection with keys ``accuracy`` (micro), ``uar`` (unweighted average recall),
        ``precision_macro``, ``precision_weighted``, ``recall_weighted``,
        ``f1_macro`` and ``f1_weighted``. It takes logits or probabilities ``[N, C]`` and
        integer targets ``[N]``.
    """
    metrics = {
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "uar": UnweightedAverageRecall(num_classes),
        "precision_macro": MulticlassPrecision(num_classes, average="macro"),
        "precision_weighted": MulticlassPrecision(num_classes, average="weighted"),
        "recall_weighted": MulticlassRecall(num_classes, average="weighted"),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        "f1_weighted": MulticlassF1Score(num_classes, average="weighted"),
    }
    return MetricCollection(metrics, prefix=prefix)


class MultilabelSamplesJaccard(Metric):
    """Jaccard index per sample, averaged over samples (scikit-learn's ``average="samples"``).

    torchmetrics' ``MultilabelJaccardIndex`` averages over labels only, hence this metric.

    Args:
        threshold: A label is predicted when its probability is above this value. Inputs
            outside ``[0, 1]`` are taken as logits and passed through a sigmoid first.
        zero_division: Score of a sample with neither true nor predicted labels.
        **kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.5, zero_division: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.zero_division = zero_division
        self.add_state("score_sum", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("num_samples", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of probabilities (or logits) ``[N, L]`` and binary targets ``[N, L]``."""
        predicted = normalize_logits_if_needed(preds, "sigmoid") > self.threshold
        actual = target.bool()
        intersection = (predicted & actual).sum(dim=1)
        union = (predicted | actual).sum(dim=1)
        scores = torch.where(
            union > 0,
            intersection / union.clamp(min=1),
            torch.full_like(union, self.zero_division, dtype=self.score_sum.dtype),
        )
        self.score_sum += scores.sum()
        self.num_samples += scores.numel()

    def compute(self) -> torch.Tensor:
        """Return the mean per-sample Jaccard index."""
        return self.score_sum / self.num_samples


def multilabel_metrics(num_labels: int, prefix: str = "", threshold: float = 0.5) -> MetricCollection:
    """Build the multi-label metrics.

    Args:
        num_labels: Number of labels ``L``.
        prefix: Prepended to every key, e.g. ``"val/"``.
        threshold: A label is predicted when its probability is above this value.

    Returns:
        A collection with keys ``f1_micro``, ``f1_macro``, ``jaccard_samples`` and
        ``jaccard_macro``. It takes probabilities ``[N, L]`` and binary targets ``[N, L]``.
    """
    metrics = {
        "f1_micro": MultilabelF1Score(num_labels, threshold=threshold, average="micro"),
        "f1_macro": MultilabelF1Score(num_labels, threshold=threshold, average="macro"),
        "jaccard_samples": MultilabelSamplesJaccard(threshold=threshold),
        "jaccard_macro": MultilabelJaccardIndex(num_labels, threshold=threshold, average="macro"),
    }
    return MetricCollection(metrics, prefix=prefix)


class _ColumnMixin:
    """Feed one column of ``[N, D]`` inputs (or all values, with ``column=None``) to a metric.

    Subclassing (rather than torchmetrics' input-transform wrappers) keeps each entry a plain
    metric, so ``forward``, ``_forward_cache`` (used by Lightning's step logging) and DDP
    synchronisation behave exactly as for the parent class. ``reshape`` also spares the
    parent its ``view`` of non-contiguous inputs, which fails.
    """

    def __init__(self, column: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.column = column

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        target = target.to(preds.dtype)
        if self.column is None:
            super().update(preds.reshape(-1), target.reshape(-1))
        else:
            super().update(preds[:, self.column].reshape(-1), target[:, self.column].reshape(-1))


class _ColumnConcordanceCorrCoef(_ColumnMixin, ConcordanceCorrCoef):
    pass


class _ColumnPearsonCorrCoef(_ColumnMixin, PearsonCorrCoef):
    pass


class _ColumnMeanAbsoluteError(_ColumnMixin, MeanAbsoluteError):
    pass


class _MeanConcordanceCorrCoef(ConcordanceCorrCoef):
    """Concordance correlation coefficient of each output, averaged over outputs."""

    def compute(self) -> torch.Tensor:
        return super().compute().mean()


class RegressionMetrics(MetricCollection):
    """Metrics for dimensional (e.g. valence/arousal) regression.

    ``update(preds, target)`` takes ``[N, D]`` tensors with columns in the order of ``dims``;
    ``compute()`` returns ``{prefix}{dim}_ccc``, ``{prefix}{dim}_pearson`` and
    ``{prefix}{dim}_mae`` for every dimension, plus ``{prefix}ccc`` (mean CCC over
    dimensions) and ``{prefix}mae`` (MAE over all outputs).

    torchmetrics computes CCC from unbiased (``n - 1``) moments; it differs from Lin's
    population-moment formula (:func:`concordance_correlation_coefficient`) by ``O(1/N)``.

    Args:
        dims: Names of the target dimensions, in column order.
        prefix: Prepended to every key, e.g. ``"val/"``.
    """

    def __init__(self, dims: Sequence[str] = DEFAULT_DIMS, prefix: str = "") -> None:
        if not dims:
            raise ValueError("RegressionMetrics needs at least one dimension name in `dims`.")
        metrics: dict[str, Metric] = {}
        for column, dim in enumerate(dims):
            metrics[f"{dim}_ccc"] = _ColumnConcordanceCorrCoef(column=column)
            metrics[f"{dim}_pearson"] = _ColumnPearsonCorrCoef(column=column)
            metrics[f"{dim}_mae"] = _ColumnMeanAbsoluteError(column=column)
        metrics["ccc"] = _MeanConcordanceCorrCoef(num_outputs=len(dims))
        metrics["mae"] = _ColumnMeanAbsoluteError(column=None)
        # Automatic compute groups merge metrics whose states are equal after the first batch;
        # two dimensions with identical values in that batch would then share state for good.
        super().__init__(metrics, prefix=prefix, compute_groups=False)
        self.dims = tuple(dims)


def concordance_correlation_coefficient(
    y_true: np.ndarray | Sequence[float], y_pred: np.ndarray | Sequence[float], ddof: int = 0
) -> float:
    """Compute Lin's concordance correlation coefficient (CCC) of two 1-D arrays.

    ``2 cov(t, p) / (var(t) + var(p) + (mean(t) - mean(p))**2)``.

    Args:
        y_true: Reference values.
        y_pred: Predicted values, same length.
        ddof: Delta degrees of freedom of the (co)variances: 0 is Lin's (1989) definition,
            1 reproduces torchmetrics' ``ConcordanceCorrCoef``.

    Returns:
        The CCC in ``[-1, 1]``; NaN when it is undefined (fewer than ``ddof + 1`` values, or
        both inputs constant and equal).
    """
    true = np.asarray(y_true, dtype=np.float64).ravel()
    pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {true.size} vs {pred.size}.")
    if true.size <= ddof:
        return float("nan")
    mean_true, mean_pred = true.mean(), pred.mean()
    covariance = np.sum((true - mean_true) * (pred - mean_pred)) / (true.size - ddof)
    denominator = true.var(ddof=ddof) + pred.var(ddof=ddof) + (mean_true - mean_pred) ** 2
    if denominator == 0:
        return float("nan")
    return float(2.0 * covariance / denominator)
