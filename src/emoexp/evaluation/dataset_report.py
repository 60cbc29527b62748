"""What a run was trained and evaluated on: class counts per split and per group.

Logged with every fold (``reports/dataset_report.csv``, ``reports/class_by_split.csv``) so
that a result can be read next to the class balance and the group make-up behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.data.splits import TEST, TRAIN, VAL, Fold

CLASS = "class"
TOTAL = "total"
UNLABELLED = "(unlabelled)"
PARTS = (TRAIN, VAL, TEST)


def _labels(manifest: pd.DataFrame) -> pd.Series:
    if schema.EMOTION not in manifest.columns:
        return pd.Series(UNLABELLED, index=manifest.index, dtype=object)
    return manifest[schema.EMOTION].astype(object).where(manifest[schema.EMOTION].notna(), UNLABELLED)


def _class_order(labels: pd.Series, classes: Sequence[str] | None) -> list[str]:
    order = list(classes or [])
    return order + sorted(set(labels) - set(order))


def _counts(labels: pd.Series, columns: pd.Series, order: list[str], prefix: str = "") -> pd.DataFrame:
    table = pd.crosstab(labels.to_numpy(), columns.to_numpy())
    table = table.reindex(index=order, fill_value=0)
    table.columns = [f"{prefix}{c}" for c in table.columns]
    return table.fillna(0).astype(int)


def class_by_split(manifest: pd.DataFrame, fold: Fold, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Samples per class and split.

    Args:
        manifest: The prepared samples of a run.
        fold: Their train/val/test assignment.
        classes: Class order (every class is listed, with zeros if absent); other labels
            found in ``emotion`` follow in sorted order; samples without one are ``(unlabelled)``.

    Returns:
        Columns ``class``, ``train``, ``val``, ``test``, ``total``; a last row ``total``.
    """
    labels = _labels(manifest)
    order = _class_order(labels, classes)
    table = _counts(labels, pd.Series(fold.assignment), order).reindex(columns=list(PARTS), fill_value=0)
    table[TOTAL] = table.sum(axis=1)
    table.loc[TOTAL] = table.sum(axis=0)
    return table.rename_axis(CLASS).reset_index()


def class_by_group(manifest: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Samples per class and value of every group attribute (``group_*`` column).

    Returns:
        Column ``class`` and one column ``<group column>=<value>`` per attribute value
        (missing values count as ``nan``); a last row ``total``.
    """
    labels = _labels(manifest)
    order = _class_order(labels, classes)
    tables = [
        _counts(labels, manifest[column].astype(object).fillna("nan").astype(str), order, f"{column}=")
        for column in schema.group_columns(manifest)
    ]
    table = pd.concat(tables, axis=1) if tables else pd.DataFrame(index=order)
    table.loc[TOTAL] = table.sum(axis=0)
    return table.rename_axis(CLASS).reset_index()


def dataset_report(
    manifest: pd.DataFrame,
    fold: Fold,
    classes: Sequence[str] | None = None,
    class_weights: Sequence[float] | None = None,
) -> pd.DataFrame:
    """One table per run: class x split counts, each class's share, and class x group counts.

    Args:
        manifest: The prepared samples of a run.
        fold: Their train/val/test assignment.
        classes: Class order of the label scheme.
        class_weights: The loss weight of each class in ``classes`` order, if any (added as
            column ``loss_weight``).

    Returns:
        Columns ``class``, ``train``, ``val``, ``test``, ``total``, ``train_share``
        (fraction of the training split), ``loss_weight`` (when given) and the
        ``<group>=<value>`` columns of :func:`class_by_group`.
    """
    splits = class_by_split(manifest, fold, classes).set_index(CLASS)
    n_train = max(int(splits.loc[TOTAL, TRAIN]), 1)
    splits["train_share"] = splits[TRAIN] / n_train
    if class_weights is not None and classes:
        weights = dict(zip(classes, class_weights, strict=True))
        splits["loss_weight"] = [weights.get(c, np.nan) for c in splits.index]
    groups = class_by_group(manifest, classes).set_index(CLASS)
    return splits.join(groups).reset_index()


def dataset_reports(manifest: pd.DataFrame, fold: Fold, scheme: Any = None) -> dict[str, pd.DataFrame]:
    """The dataset tables of one fold, keyed by artifact file name.

    Args:
        manifest: The prepared samples of a run.
        fold: Their train/val/test assignment.
        scheme: The label scheme (its ``class_names`` order and resolved ``class_loss_weights``),
            or ``None``.
    """
    classes = (list(scheme.class_names) or None) if scheme is not None else None
    weights = scheme.class_loss_weights if scheme is not None else None
    return {
        "dataset_report.csv": dataset_report(manifest, fold, classes, weights),
        "class_by_split.csv": class_by_split(manifest, fold, classes),
    }
