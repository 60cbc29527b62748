"""Per-group performance gaps with bootstrap confidence intervals.

For every ``group_*`` column of the test samples and every value of it, the gap is the metric
on that group minus the metric on the rest of the test samples. Its percentile interval comes
from a stratified bootstrap (the group and the rest are resampled separately, each at its own
size), and a gap whose interval excludes zero is flagged: on these samples, the model is
reliably better or worse for that group. The metrics are recomputed on every resample
(non-decomposable UAR, macro F1 and CCC included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

TARGET, PREDICTION = "target", "prediction"
CATEGORICAL_METRICS = ("uar", "accuracy", "f1_macro")
DIMENSIONAL_METRICS = ("ccc", "mae")


def _confusion(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k)


def _categorical(name: str, k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    def score(true: np.ndarray, pred: np.ndarray) -> float:
        confusion = _confusion(true, pred, k).astype(float)
        support, predicted, hits = confusion.sum(1), confusion.sum(0), np.diag(confusion)
        if name == "accuracy":
            return float(hits.sum() / max(support.sum(), 1))
        present = support > 0
        if name == "uar":
            return float(np.mean(hits[present] / support[present]))
        # Macro F1 over the classes present in the targets or the predictions (scikit-learn's labels).
        used = present | (predicted > 0)
        f1 = 2 * hits[used] / np.maximum(support[used] + predicted[used], 1)
        return float(np.mean(f1))

    return score


def _ccc(true: np.ndarray, pred: np.ndarray) -> float:
    if len(true) < 2:
        return float("nan")
    mt, mp = true.mean(0), pred.mean(0)
    cov = ((true - mt) * (pred - mp)).mean(0)
    ccc = 2 * cov / (true.var(0) + pred.var(0) + (mt - mp) ** 2 + 1e-12)
    return float(np.mean(ccc))


def _mae(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.abs(true - pred).mean())


def frame_metric(predictions: pd.DataFrame, name: str) -> tuple[Callable, np.ndarray, np.ndarray]:
    """A metric on row-aligned arrays and the arrays of a predictions frame.

    Categorical frames (``target``/``prediction``) support ``uar``, ``accuracy`` and
    ``f1_macro``; dimensional frames (``<dim>_true``/``<dim>_pred``) support ``ccc`` and ``mae``
    (means over dimensions).

    Raises:
        ValueError: If the frame has neither kind of columns, or ``name`` does not fit it.
    """
    if TARGET in predictions and PREDICTION in predictions:
        if name not in CATEGORICAL_METRICS:
            raise ValueError(f"group gaps of a categorical scheme use {CATEGORICAL_METRICS}, not {name!r}.")
        classes = sorted(set(predictions[TARGET].astype(str)) | set(predictions[PREDICTION].astype(str)))
        index = {c: i for i, c in enumerate(classes)}
        true = predictions[TARGET].astype(str).map(index).to_numpy()
        pred = predictions[PREDICTION].astype(str).map(index).to_numpy()
        return _categorical(name, len(classes)), true, pred
    dims = [c.removesuffix("_true") for c in predictions.columns if c.endswith("_true")]
    dims = [d for d in dims if f"{d}_pred" in predictions]
    if not dims or name not in DIMENSIONAL_METRICS:
        raise ValueError(
            f"group gaps need target/prediction or <dim>_true/<dim>_pred columns and a metric of "
            f"{CATEGORICAL_METRICS + DIMENSIONAL_METRICS}; got {name!r} and {list(predictions.columns)[:12]}."
        )
    true = predictions[[f"{d}_true" for d in dims]].to_numpy(float)
    pred = predictions[[f"{d}_pred" for d in dims]].to_numpy(float)
    return (_ccc if name == "ccc" else _mae), true, pred


def gap_interval(
    metric: Callable[[np.ndarray, np.ndarray], float],
    true: np.ndarray,
    pred: np.ndarray,
    in_group: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float, float, float]:
    """``metric(group) - metric(rest)`` and its stratified-bootstrap percentile interval.

    Returns:
        ``(group value, rest value, gap, ci_low, ci_high)``.
    """
    inside, outside = np.flatnonzero(in_group), np.flatnonzero(~in_group)
    value, rest = metric(true[inside], pred[inside]), metric(true[outside], pred[outside])
    rng = np.random.default_rng(seed)
    draws = np.empty(n_resamples)
    for i in range(n_resamples):
        a = inside[rng.integers(0, len(inside), len(inside))]
        b = outside[rng.integers(0, len(outside), len(outside))]
        draws[i] = metric(true[a], pred[a]) - metric(true[b], pred[b])
    draws = draws[np.isfinite(draws)]
    if not draws.size:
        return value, rest, value - rest, float("nan"), float("nan")
    alpha = 1.0 - confidence
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return value, rest, value - rest, float(low), float(high)


def group_gaps(
    predictions: pd.DataFrame,
    group_columns: Sequence[str],
    metric: str,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    min_samples: int = 2,
) -> pd.DataFrame:
    """Gap of every group against the rest of the samples (see the module docstring).

    Args:
        predictions: A scheme's predictions frame with the group columns.
        group_columns: ``group_*`` columns to split by.
        metric: See :func:`frame_metric`.
        n_resamples: Bootstrap resamples.
        confidence: Interval level.
        seed: Resampling seed (the same for every model, so reports compare).
        min_samples: Groups (and rests) smaller than this are left out.

    Returns:
        One row per (group column, group): ``group_column``, ``group``, ``n``, ``metric``,
        ``value``, ``rest``, ``gap``, ``ci_low``, ``ci_high``, ``excludes_zero``.
    """
    score, true, pred = frame_metric(predictions, metric)
    rows = []
    for column in group_columns:
        values = predictions[column]
        for group in sorted(values.dropna().unique(), key=str):
            in_group = (values == group).to_numpy()
            if in_group.sum() < min_samples or (~in_group).sum() < min_samples:
                continue
            value, rest, gap, low, high = gap_interval(
                score, true, pred, in_group, n_resamples, confidence, seed
            )
            rows.append(
                {
                    "group_column": column,
                    "group": group,
                    "n": int(in_group.sum()),
                    "metric": metric,
                    "value": value,
                    "rest": rest,
                    "gap": gap,
                    "ci_low": low,
                    "ci_high": high,
                    "excludes_zero": bool(low > 0 or high < 0),
                }
            )
    columns = ["group_column", "group", "n", "metric", "value", "rest", "gap", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=[*columns, "excludes_zero"])
