"""Figures of a comparison report.

Metric bars with CIs, confusion matrices, per-class F1, per-group metrics, reliability curves
and a critical-difference diagram, built on :class:`matplotlib.figure.Figure` (no pyplot, no
GUI backend), like
:mod:`emoexp.evaluation.report`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emoexp.comparison.analysis import System
from emoexp.evaluation import report


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def metric_bars(board: pd.DataFrame, metric: str, extra: Sequence[str] = ()) -> Figure:
    """Bars of the headline metric with its CI, and of extra metrics (means), per system."""
    names = [_short(s, 28) for s in board["system"]]
    positions = np.arange(len(names))  # positions, not names: two truncated names may coincide
    panels = [metric, *[m for m in extra if m in board and board[m].notna().any()]]
    columns = min(2, len(panels))
    rows = int(np.ceil(len(panels) / columns))
    width = max(4.5, 0.6 * len(names) + 1.5)
    figure = Figure(figsize=(width * columns, 4.0 * rows), layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axes, name in zip(grid, panels, strict=False):
        if name == metric:
            values = board["mean"].to_numpy(float)
            low = values - board["ci_low"].to_numpy(float)
            high = board["ci_high"].to_numpy(float) - values
            errors = np.nan_to_num(np.vstack([low, high]).clip(min=0))
            axes.bar(positions, values, yerr=errors, capsize=4, color="tab:blue", edgecolor="black")
            axes.set_title(f"{name} (mean, 95% CI)")
        else:
            axes.bar(positions, board[name].to_numpy(float), color="tab:gray", edgecolor="black")
            axes.set_title(f"{name} (mean)")
        axes.set_xticks(positions, names, rotation=35, ha="right")
        axes.grid(axis="y", alpha=0.3)
    for axes in grid[len(panels) :]:
        axes.set_axis_off()
    return figure


def confusion_matrices(systems: Sequence[System], classes: Sequence[str]) -> Figure:
    """Row-normalised confusion matrices of the pooled test predictions, side by side."""
    from sklearn.metrics import confusion_matrix

    n = len(systems)
    columns = min(n, 4)
    rows = int(np.ceil(n / columns))
    side = max(3.2, 0.45 * len(classes) + 1.5)
    figure = Figure(figsize=(side * columns + 0.8, side * rows), layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    image = None
    for axes, system in zip(grid, systems, strict=False):
        frame = system.predictions()
        matrix = confusion_matrix(
            frame["target"].astype(str),
            frame["prediction"].astype(str),
            labels=list(classes),
            normalize="true",
        )
        image = axes.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
        axes.set_xticks(range(len(classes)), [c[:5] for c in classes], rotation=60, fontsize=8)
        axes.set_yticks(range(len(classes)), [c[:5] for c in classes], fontsize=8)
        axes.set_title(_short(system.name, 26), fontsize=10)
        axes.set_xlabel("predicted", fontsize=8)
        for (i, j), value in np.ndenumerate(matrix):
            if value >= 0.05:
                axes.text(
                    j,
                    i,
                    f"{value:.2f}"[1:] if value < 1 else "1",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if value > 0.5 else "black",
                )
    for axes in grid[n:]:
        axes.set_axis_off()
    grid[0].set_ylabel("true")
    if image is not None:
        figure.colorbar(image, ax=list(grid[:n]), shrink=0.8, label="recall (row-normalised)")
    return figure


def per_class_f1(systems: Sequence[System], classes: Sequence[str]) -> tuple[Figure, pd.DataFrame]:
    """F1 of every class per system (pooled test predictions): a grouped bar chart and its table."""
    table = pd.DataFrame(
        {
            s.name: report.classification_report_frame(s.predictions(), classes).loc[list(classes), "f1"]
            for s in systems
        }
    )
    figure = Figure(figsize=(max(6.0, 0.35 * len(classes) * len(systems) + 2), 4.0), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        axes.bar(
            np.arange(len(classes)) + i * width - 0.4 + width / 2,
            table[system.name],
            width,
            label=_short(system.name, 26),
        )
    axes.set_xticks(range(len(classes)), list(classes), rotation=30)
    axes.set(ylabel="F1 (test)", ylim=(0, 1), title="Per-class F1")
    axes.legend(fontsize=8, ncols=min(3, len(systems)))
    axes.grid(axis="y", alpha=0.3)
    table.index.name = "class"
    return figure, table


def per_group(
    systems: Sequence[System], classes: Sequence[str] | None, metric: str
) -> tuple[Figure | None, pd.DataFrame, pd.DataFrame]:
    """Per-group metric (each ``group_*`` attribute and speaker) per system, and the largest gaps.

    Returns:
        A figure (one panel per group attribute; ``None`` without group columns), the long
        per-group table and the largest-gap table (one row per system and attribute).
    """
    tables, gaps = [], []
    for system in systems:
        frame = system.predictions()
        columns = [c for c in frame.columns if c.startswith(report.GROUP_PREFIX)]
        if "speaker" in frame.columns:
            columns.append("speaker")
        if not columns:
            continue
        groups = report.per_group_metrics(frame, classes, columns).assign(system=system.name)
        tables.append(groups)
        gap = report.largest_gaps(groups.drop(columns="system"))
        gaps.append(gap[gap["metric"] == metric].assign(system=system.name))
    if not tables:
        return None, pd.DataFrame(), pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)
    gap_table = pd.concat(gaps, ignore_index=True) if gaps else pd.DataFrame()
    attributes = [c for c in table["group_column"].unique() if c != "speaker"] or ["speaker"]
    figure = Figure(figsize=(6.0 * len(attributes), 4.0), layout="constrained")
    for axes, attribute in zip(np.atleast_1d(figure.subplots(1, len(attributes))), attributes, strict=True):
        pivot = table[table["group_column"] == attribute].pivot(
            index="group", columns="system", values=metric
        )
        pivot = pivot[[s.name for s in systems if s.name in pivot.columns]]
        width = 0.8 / max(1, pivot.shape[1])
        for i, name in enumerate(pivot.columns):
            axes.bar(
                np.arange(len(pivot)) + i * width - 0.4 + width / 2,
                pivot[name],
                width,
                label=_short(name, 26),
            )
        axes.set_xticks(range(len(pivot)), [str(g) for g in pivot.index])
        axes.set(title=f"{metric} by {attribute.removeprefix(report.GROUP_PREFIX)}", ylabel=metric)
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize=8)
    return figure, table, gap_table


def reliability_curves(
    systems: Sequence[System], classes: Sequence[str], n_bins: int = 10
) -> tuple[Figure, pd.Series]:
    """Accuracy against confidence per system on one plot, and each system's ECE."""
    figure = Figure(figsize=(5.5, 5.0), layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    eces = {}
    edges = np.linspace(0, 1, n_bins + 1)
    for system in systems:
        probs, targets = report.class_probabilities(system.predictions(), classes)
        eces[system.name] = report.expected_calibration_error(probs, targets, n_bins)
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == targets
        bins = np.clip(np.digitize(confidence, edges) - 1, 0, n_bins - 1)
        filled = [b for b in range(n_bins) if (bins == b).any()]
        axes.plot(
            [confidence[bins == b].mean() for b in filled],
            [correct[bins == b].mean() for b in filled],
            marker="o",
            label=f"{_short(system.name, 22)} (ECE {eces[system.name]:.3f})",
        )
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title="Reliability (test)")
    axes.legend(fontsize=8)
    return figure, pd.Series(eces, name="ece")


def critical_difference(mean_ranks: pd.Series, cd: float) -> Figure:
    """Mean ranks on one axis (1 = best) with the Nemenyi critical difference drawn as a bar."""
    k = len(mean_ranks)
    figure = Figure(figsize=(7.0, 1.0 + 0.3 * k), layout="constrained")
    axes = figure.add_subplot()
    ordered = mean_ranks.sort_values()
    for i, (name, rank) in enumerate(ordered.items()):
        axes.plot([rank, rank], [0, -(i + 1) * 0.3], color="black", lw=0.8)
        axes.text(rank, -(i + 1) * 0.3, f" {_short(str(name), 34)} ({rank:.2f})", va="center", fontsize=8)
    axes.plot([1, 1 + cd], [0.35, 0.35], color="tab:red", lw=3)
    axes.text(1 + cd / 2, 0.45, f"CD = {cd:.2f}", ha="center", fontsize=8, color="tab:red")
    axes.axhline(0, color="black", lw=1)
    axes.set(xlim=(0.8, k + 0.2), ylim=(-(k + 1) * 0.3, 0.7), xlabel="mean rank (1 = best)")
    axes.set_yticks([])
    for spine in ("left", "right", "top"):
        axes.spines[spine].set_visible(False)
    return figure
