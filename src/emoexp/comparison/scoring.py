"""Metrics recomputed from predictions frames, fast enough to bootstrap.

Names follow the logged metrics (``test/uar`` -> ``uar``). Classification metrics are
computed from a confusion matrix with numpy (thousands of bootstrap resamples in well
under a second) and follow the conventions of :mod:`emoexp.evaluation.metrics`: UAR
averages recall over classes present in the targets; macro precision/F1 average over the
classes that occur as target or prediction (scikit-learn's ``labels=None``), with 0 for
an undefined ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emoexp.evaluation.metrics import concordance_correlation_coefficient

CLASSIFICATION = (
    "accuracy",
    "uar",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "precision_weighted",
    "recall_weighted",
)
LOWER_IS_BETTER = ("loss", "mae", "rmse", "ece")


def bare_name(metric: str) -> str:
    """``test/uar`` -> ``uar``."""
    return metric.rsplit("/", 1)[-1]


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (``mae``, ``loss``, ``ece`` are not)."""
    return not bare_name(metric).endswith(LOWER_IS_BETTER)


def _confusion(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k)


def classification_score(name: str, true: np.ndarray, pred: np.ndarray, k: int) -> float:
    """One classification metric of integer labels ``true``/``pred`` in ``[0, k)``."""
    cm = _confusion(np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64), k)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(axis=1).astype(float), cm.sum(axis=0).astype(float)
    n = support.sum()
    if n == 0:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    seen = (support + predicted) > 0
    weights = support / n
    if name == "accuracy" or name == "recall_weighted":
        return float(tp.sum() / n)
    if name == "uar":
        return float(recall[support > 0].mean())
    if name == "f1_macro":
        return float(f1[seen].mean())
    if name == "precision_macro":
        return float(precision[seen].mean())
    if name == "f1_weighted":
        return float((f1 * weights).sum())
    if name == "precision_weighted":
        return float((precision * weights).sum())
    raise KeyError(f"unknown classification metric {name!r}; choose one of {list(CLASSIFICATION)}.")


def regression_score(name: str, true: np.ndarray, pred: np.ndarray, dims: Sequence[str]) -> float:
    """``ccc``/``mae`` (mean over dimensions) or ``<dim>_ccc``/``<dim>_mae``/``<dim>_pearson``."""
    true, pred = (
        np.asarray(true, dtype=float).reshape(len(true), -1),
        np.asarray(pred, dtype=float).reshape(len(pred), -1),
    )
    dims = list(dims)

    def one(kind: str, column: int) -> float:
        t, p = true[:, column], pred[:, column]
        if kind == "ccc":
            return concordance_correlation_coefficient(t, p)
        if kind == "mae":
            return float(np.abs(t - p).mean())
        if kind == "pearson":
            return float(np.corrcoef(t, p)[0, 1]) if np.ptp(t) > 0 and np.ptp(p) > 0 else float("nan")
        raise KeyError(kind)

    dim, _, kind = name.rpartition("_")
    if dim in dims:
        return one(kind, dims.index(dim))
    if name in ("ccc", "mae"):
        return float(np.mean([one(name, i) for i in range(len(dims))]))
    valid = ["ccc", "mae", *(f"{d}_{k}" for d in dims for k in ("ccc", "mae", "pearson"))]
    raise KeyError(f"unknown regression metric {name!r}; choose one of {valid}.")


@dataclass(frozen=True)
class Scorer:
    """One metric over predictions frames of one label scheme.

    Attributes:
        name: Bare metric name (``uar``, ``ccc``, ``valence_ccc``).
        classes: Class names of a categorical scheme (empty for dimensional metrics).
        dims: Dimensions of a dimensional scheme.
    """

    name: str
    classes: tuple[str, ...] = ()
    dims: tuple[str, ...] = ()

    @property
    def categorical(self) -> bool:
        """Whether the metric scores class predictions."""
        return self.name in CLASSIFICATION

    @property
    def higher_is_better(self) -> bool:  # noqa: D102
        return higher_is_better(self.name)

    def arrays(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(y_true, y_pred)`` of a frame: class indices or ``[N, D]`` values."""
        if self.categorical:
            index = {c: i for i, c in enumerate(self.classes)}
            return (
                frame["target"].astype(str).map(index).to_numpy(np.int64),
                frame["prediction"].astype(str).map(index).to_numpy(np.int64),
            )
        true = frame[[f"{d}_true" for d in self.dims]].to_numpy(float)
        pred = frame[[f"{d}_pred" for d in self.dims]].to_numpy(float)
        return true, pred

    def metric(self) -> Callable[[np.ndarray, np.ndarray], float]:
        """``metric(y_true, y_pred)`` on arrays from :meth:`arrays`."""
        if self.categorical:
            k = len(self.classes)
            return lambda t, p: classification_score(self.name, t, p, k)
        return lambda t, p: regression_score(self.name, t, p, self.dims)

    def __call__(self, frame: pd.DataFrame) -> float:
        """The metric of a predictions frame."""
        return self.metric()(*self.arrays(frame))

    def per_sample(self, frame: pd.DataFrame) -> np.ndarray:
        """A per-sample score for rank tests: correctness, or minus the mean absolute error."""
        true, pred = self.arrays(frame)
        if self.categorical:
            return (true == pred).astype(float)
        return -np.abs(true - pred).mean(axis=1)


def scorer_for(metric: str, frame: pd.DataFrame) -> Scorer:
    """Build the :class:`Scorer` for ``metric`` from the columns of a predictions frame.

    Raises:
        KeyError: If the frame cannot give that metric (e.g. ``uar`` of a regression run).
    """
    name = bare_name(metric)
    if "predicted_labels" in frame.columns:
        raise KeyError(
            "multi-label runs cannot be compared yet (their metrics need per-label thresholds); "
            "compare their logged metrics in the MLflow UI."
        )
    classes = tuple(c.removeprefix("prob_") for c in frame.columns if c.startswith("prob_"))
    dims = tuple(c.removesuffix("_true") for c in frame.columns if c.endswith("_true"))
    if name in CLASSIFICATION:
        if "prediction" not in frame.columns or not classes:
            raise KeyError(f"metric {metric!r} needs class predictions; these runs predict {list(dims)}.")
        return Scorer(name, classes=classes)
    if not dims:
        raise KeyError(f"metric {metric!r} needs valence/arousal predictions; these runs predict classes.")
    scorer = Scorer(name, dims=dims)
    scorer.metric()(np.zeros((2, len(dims))), np.zeros((2, len(dims))))  # unknown names fail here
    return scorer
