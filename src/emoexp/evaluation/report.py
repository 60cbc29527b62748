"""Reports computed from a run's *predictions frame*.

A predictions frame has one row per evaluated sample and the columns

* ``split`` (``"val"`` or ``"test"``) and ``id``;
* categorical schemes: ``target`` and ``prediction`` (class names) and ``prob_<class>``;
* dimensional schemes: ``<dim>_true`` and ``<dim>_pred`` (e.g. ``valence_true``);
* optionally ``speaker`` and group attributes ``group_<attribute>``.

The functions here take the rows to report on (filter ``split`` first) and return
DataFrames or matplotlib Figures, ready to be logged as run artifacts. Figures are built
with :class:`matplotlib.figure.Figure` rather than pyplot, so they need no GUI backend
(saving renders with Agg) and are freed as soon as they are no longer referenced.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emoexp.evaluation.metrics import concordance_correlation_coefficient

SPLIT = "split"
ID = "id"
TARGET = "target"
PREDICTION = "prediction"
PROB_PREFIX = "prob_"
TRUE_SUFFIX = "_true"
PRED_SUFFIX = "_pred"
SPEAKER = "speaker"
GROUP_PREFIX = "group_"

# Metrics for which a smaller value is better; every other report metric is "higher is better".
LOWER_IS_BETTER: frozenset[str] = frozenset({"mae", "rmse"})


def _require_columns(preds: pd.DataFrame, columns: Sequence[str], purpose: str) -> None:
    missing = [c for c in columns if c not in preds.columns]
    if missing:
        raise KeyError(
            f"{purpose} needs column(s) {missing} in the predictions frame; it has {list(preds.columns)}."
        )


def _check_known_classes(preds: pd.DataFrame, classes: Sequence[str]) -> None:
    known = set(classes)
    for column in (TARGET, PREDICTION):
        unknown = sorted(set(preds[column].astype(str)) - known)
        if unknown:
            raise ValueError(
                f"column {column!r} holds {unknown}, which are not among the classes {list(classes)}."
            )


def dimension_names(preds: pd.DataFrame) -> list[str]:
    """Return the dimensions ``d`` with both ``d_true`` and ``d_pred`` columns, in column order."""
    return [
        column.removesuffix(TRUE_SUFFIX)
        for column in preds.columns
        if column.endswith(TRUE_SUFFIX)
        and f"{column.removesuffix(TRUE_SUFFIX)}{PRED_SUFFIX}" in preds.columns
    ]


def class_probabilities(preds: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Extract the probability matrix and integer targets of a categorical predictions frame.

    Args:
        preds: Predictions frame with ``prob_<class>`` and ``target`` columns.
        classes: Class names in model output order.

    Returns:
        ``(probs, targets)``: ``[N, C]`` float probabilities and ``[N]`` class indices.
    """
    prob_columns = [f"{PROB_PREFIX}{c}" for c in classes]
    _require_columns(preds, [*prob_columns, TARGET], "class_probabilities")
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(preds[TARGET].astype(str)) - set(index))
    if unknown:
        raise ValueError(f"targets {unknown} are not among the classes {list(classes)}.")
    targets = preds[TARGET].astype(str).map(index).to_numpy(dtype=np.int64)
    return preds[prob_columns].to_numpy(dtype=np.float64), targets


def classification_report_frame(preds: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support, plus macro and weighted averages.

    Averages are over the classes that occur as target or prediction (scikit-learn's
    ``labels=None``, as in :func:`~emoexp.evaluation.metrics.classification_metrics`);
    a class that does neither still gets a row, with support 0 and NaN scores.

    Args:
        preds: Predictions frame with ``target`` and ``prediction`` columns.
        classes: All class names, in the order the rows should have.

    Returns:
        A frame indexed by class name, then ``"macro avg"``, ``"weighted avg"`` and
        ``"accuracy"`` (accuracy in the ``f1`` column, as scikit-learn prints it), with
        columns ``precision``, ``recall``, ``f1`` and ``support``.
    """
    from sklearn.metrics import classification_report

    _require_columns(preds, [TARGET, PREDICTION], "classification_report_frame")
    _check_known_classes(preds, classes)
    report = classification_report(
        preds[TARGET].astype(str),
        preds[PREDICTION].astype(str),
        output_dict=True,
        zero_division=0,
    )
    accuracy = report.pop("accuracy")
    frame = pd.DataFrame(report).T.rename(columns={"f1-score": "f1"})
    rows = [*classes, "macro avg", "weighted avg"]
    frame = frame.reindex(rows)
    frame.loc["accuracy"] = [np.nan, np.nan, accuracy, float(len(preds))]
    frame["support"] = frame["support"].fillna(0).astype(int)
    frame.index.name = "class"
    return frame[["precision", "recall", "f1", "support"]]


def confusion_matrix_figure(
    preds: pd.DataFrame, classes: Sequence[str], normalize: bool = True, title: str = ""
) -> Figure:
    """Draw the confusion matrix (rows: true class, columns: predicted class).

    Args:
        preds: Predictions frame with ``target`` and ``prediction`` columns.
        classes: All class names, in display order.
        normalize: Show each row as proportions of its true class (recall on the diagonal)
            instead of counts.
        title: Figure title.

    Returns:
        The figure; sized and lettered to stay readable up to about a dozen classes.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    _require_columns(preds, [TARGET, PREDICTION], "confusion_matrix_figure")
    _check_known_classes(preds, classes)
    n_classes = len(classes)
    side = max(5.0, 0.75 * n_classes + 2.5)
    figure = Figure(figsize=(side + 1.0, side), layout="constrained")
    axes = figure.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        preds[TARGET].astype(str),
        preds[PREDICTION].astype(str),
        labels=list(classes),
        normalize="true" if normalize else None,
        values_format=".2f" if normalize else "d",
        cmap="Blues",
        ax=axes,
        xticks_rotation=45,
        text_kw={"fontsize": 10 if n_classes <= 8 else 8},
        im_kw={"vmin": 0.0, "vmax": 1.0} if normalize else None,
    )
    for label in axes.get_xticklabels():
        label.set_horizontalalignment("right")
    axes.set_title(title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix"))
    return figure


def _categorical_scores(group: pd.DataFrame) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    target = group[TARGET].astype(str)
    prediction = group[PREDICTION].astype(str)
    with warnings.catch_warnings():
        # A small group often lacks classes that the model still predicts; that is expected.
        warnings.simplefilter("ignore", UserWarning)
        uar = balanced_accuracy_score(target, prediction)
    return {
        "accuracy": accuracy_score(target, prediction),
        "uar": uar,
        "f1_macro": f1_score(target, prediction, average="macro", zero_division=0),
    }


def _dimensional_scores(group: pd.DataFrame, dims: Sequence[str]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for dim in dims:
        pair = group[[f"{dim}{TRUE_SUFFIX}", f"{dim}{PRED_SUFFIX}"]].dropna().to_numpy(float)
        scores[f"{dim}_ccc"] = (
            concordance_correlation_coefficient(pair[:, 0], pair[:, 1]) if len(pair) > 1 else np.nan
        )
        scores[f"{dim}_mae"] = float(np.abs(pair[:, 0] - pair[:, 1]).mean()) if len(pair) else np.nan
    if dims:
        scores["ccc"] = float(np.mean([scores[f"{dim}_ccc"] for dim in dims]))
        scores["mae"] = float(np.mean([scores[f"{dim}_mae"] for dim in dims]))
    return scores


def per_group_metrics(
    preds: pd.DataFrame, classes: Sequence[str] | None, group_columns: Sequence[str]
) -> pd.DataFrame:
    """Compute metrics separately for every value of every group column.

    Args:
        preds: Predictions frame.
        classes: Class names of a categorical scheme; ``None`` for a purely dimensional one.
            Categorical metrics are ``accuracy``, ``uar`` and ``f1_macro``.
        group_columns: Columns to group by, e.g. ``["group_gender", "speaker"]``. Rows with
            a missing value in a column are left out of that column's groups.

    Returns:
        One row per (group column, group value) with columns ``group_column``, ``group``,
        ``n``, then the categorical metrics (when ``classes`` is given) and, for every
        ``<dim>_true``/``<dim>_pred`` pair in the frame, ``<dim>_ccc`` and ``<dim>_mae``
        plus their means ``ccc`` and ``mae``. A group needs two samples for a CCC.
    """
    _require_columns(preds, list(group_columns), "per_group_metrics")
    dims = dimension_names(preds)
    if classes is not None:
        _require_columns(preds, [TARGET, PREDICTION], "per_group_metrics")
        _check_known_classes(preds, classes)
    elif not dims:
        raise ValueError(
            "per_group_metrics: classes is None but the frame has no <dim>_true/<dim>_pred "
            "columns; pass the class names for a categorical scheme."
        )
    rows = []
    for column in group_columns:
        for value, group in preds.groupby(column, sort=True, dropna=True):
            row: dict[str, object] = {"group_column": column, "group": value, "n": len(group)}
            if classes is not None:
                row.update(_categorical_scores(group))
            row.update(_dimensional_scores(group, dims))
            rows.append(row)
    return pd.DataFrame(rows)


def largest_gaps(frame: pd.DataFrame, min_samples: int = 1) -> pd.DataFrame:
    """Summarise a :func:`per_group_metrics` frame as the spread of each metric across groups.

    Args:
        frame: Output of :func:`per_group_metrics`.
        min_samples: Ignore groups with fewer samples than this (tiny groups give noisy extremes).

    Returns:
        One row per (group column, metric) with ``gap`` (best minus worst, always >= 0),
        ``best_group``, ``best_value``, ``worst_group``, ``worst_value`` and ``n_groups``,
        sorted by group column and descending gap. For ``mae``-like metrics best is lowest.
    """
    metrics = [
        c
        for c in frame.columns
        if c not in {"group_column", "group", "n"} and pd.api.types.is_numeric_dtype(frame[c])
    ]
    rows = []
    for column, groups in frame[frame["n"] >= min_samples].groupby("group_column", sort=True):
        for metric in metrics:
            values = groups.set_index("group")[metric].dropna()
            if values.empty:
                continue
            lower_is_better = metric.rsplit("_", 1)[-1] in LOWER_IS_BETTER
            best = values.idxmin() if lower_is_better else values.idxmax()
            worst = values.idxmax() if lower_is_better else values.idxmin()
            rows.append(
                {
                    "group_column": column,
                    "metric": metric,
                    "gap": float(values.max() - values.min()),
                    "best_group": best,
                    "best_value": float(values[best]),
                    "worst_group": worst,
                    "worst_value": float(values[worst]),
                    "n_groups": len(values),
                }
            )
    columns = ["group_column", "metric", "gap", "best_group", "best_value", "worst_group"]
    result = pd.DataFrame(rows, columns=[*columns, "worst_value", "n_groups"])
    return result.sort_values(["group_column", "gap"], ascending=[True, False], ignore_index=True)


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error (ECE, L1) with equal-width confidence bins.

    Args:
        probs: ``[N, C]`` class probabilities (logits are softmaxed by torchmetrics).
        targets: ``[N]`` integer class indices.
        n_bins: Number of equal-width bins on ``[0, 1]``.

    Returns:
        ``sum_b |accuracy_b - confidence_b| * n_b / N``.
    """
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs_tensor = torch.tensor(np.asarray(probs), dtype=torch.float64)
    targets_tensor = torch.tensor(np.asarray(targets), dtype=torch.long)
    return float(
        multiclass_calibration_error(
            probs_tensor, targets_tensor, num_classes=probs_tensor.shape[1], n_bins=n_bins, norm="l1"
        )
    )


def reliability_diagram(probs: np.ndarray, targets: np.ndarray, n_bins: int = 15) -> Figure:
    """Draw accuracy against confidence per bin, with the bin counts below.

    Args:
        probs: ``[N, C]`` class probabilities.
        targets: ``[N]`` integer class indices.
        n_bins: Number of equal-width confidence bins on ``[0, 1]``.

    Returns:
        The figure; its title gives the ECE.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == targets).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are [low, high) as in torchmetrics; a confidence of exactly 1 joins the last bin.
    bins = np.clip(np.digitize(confidence, edges) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
    centres = (edges[:-1] + edges[1:]) / 2
    width = 1.0 / n_bins
    filled = counts > 0

    figure = Figure(figsize=(5.5, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.bar(
        centres[filled],
        accuracy[filled],
        width=width,
        color="tab:blue",
        alpha=0.75,
        edgecolor="black",
        label="accuracy",
    )
    # The gap is hatched rather than filled so it stays visible over the accuracy bar when
    # the model is under-confident (confidence below accuracy).
    top.bar(
        centres[filled],
        (mean_confidence - accuracy)[filled],
        bottom=accuracy[filled],
        width=width,
        facecolor="none",
        edgecolor="tab:red",
        hatch="//",
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="black", zorder=3, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.legend(loc="upper left")
    ece = expected_calibration_error(probs, targets, n_bins=n_bins)
    top.set_title(f"Reliability diagram (ECE = {ece:.3f}, {n_bins} bins)")
    bottom.bar(centres, counts, width=width, color="gray", edgecolor="black")
    bottom.set(xlabel="confidence (top-class probability)", ylabel="samples")
    return figure


def regression_report_frame(preds: pd.DataFrame, dims: Sequence[str] | None = None) -> pd.DataFrame:
    """CCC (Lin), Pearson r, MAE and RMSE for each dimension, plus their mean.

    Args:
        preds: Predictions frame with ``<dim>_true`` and ``<dim>_pred`` columns.
        dims: Dimensions to report; default every pair found in the frame. Rows with a
            missing value in a dimension are left out of that dimension.

    Returns:
        A frame indexed by dimension name, then ``"mean"`` (the unweighted mean over
        dimensions, with the smallest per-dimension ``n``), with columns ``ccc``,
        ``pearson``, ``mae``, ``rmse`` and ``n``.
    """
    from scipy.stats import pearsonr

    dims = list(dims) if dims is not None else dimension_names(preds)
    if not dims:
        raise ValueError("regression_report_frame: no <dim>_true/<dim>_pred columns to report.")
    _require_columns(
        preds,
        [f"{d}{suffix}" for d in dims for suffix in (TRUE_SUFFIX, PRED_SUFFIX)],
        "regression_report_frame",
    )
    rows = {}
    for dim in dims:
        pair = preds[[f"{dim}{TRUE_SUFFIX}", f"{dim}{PRED_SUFFIX}"]].dropna().to_numpy(float)
        true, pred = pair[:, 0], pair[:, 1]
        enough = len(pair) > 1 and np.ptp(true) > 0 and np.ptp(pred) > 0
        error = pred - true
        rows[dim] = {
            "ccc": concordance_correlation_coefficient(true, pred) if len(pair) > 1 else np.nan,
            "pearson": float(pearsonr(true, pred).statistic) if enough else np.nan,
            "mae": float(np.abs(error).mean()) if len(pair) else np.nan,
            "rmse": float(np.sqrt(np.mean(error**2))) if len(pair) else np.nan,
            "n": len(pair),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.loc["mean"] = [*frame[["ccc", "pearson", "mae", "rmse"]].mean(), frame["n"].min()]
    frame["n"] = frame["n"].astype(int)
    frame.index.name = "dimension"
    return frame
