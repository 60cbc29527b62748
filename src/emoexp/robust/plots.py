"""The figure of one perturbation family: headline metrics against severity (clean at severity 0)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

CLEAN = "clean"


def family_figure(table: pd.DataFrame, family: str, metrics: Sequence[str]) -> Figure:
    """Score against severity for ``family``, one line per metric, the clean samples at severity 0.

    A family whose levels share one severity (a missing modality) is drawn as bars instead.

    Args:
        table: A report table (``family``, ``level``, ``severity`` and metric columns).
        family: The family to draw.
        metrics: Metric columns to draw (the headline metrics).
    """
    clean = table[table["family"] == CLEAN].assign(level="clean")
    rows = table[table["family"] == family].sort_values("severity", kind="stable")
    curve = pd.concat([clean, rows], ignore_index=True)
    figure = Figure(figsize=(5.5, 3.6), layout="constrained")
    axes = figure.add_subplot()
    drawn = [m for m in metrics if m in curve.columns and curve[m].notna().any()]
    positions = list(range(len(curve)))
    as_bars = rows["severity"].nunique() <= 1 and len(rows) > 1
    width = 0.8 / max(len(drawn), 1)
    for i, metric in enumerate(drawn):
        if as_bars:
            axes.bar([p + i * width for p in positions], curve[metric], width=width, label=metric)
        else:
            axes.plot(positions, curve[metric], marker="o", label=metric)
    offset = width * (len(drawn) - 1) / 2 if as_bars else 0.0
    axes.set_xticks([p + offset for p in positions], curve["level"], rotation=30, ha="right")
    axes.set_xlabel("missing modality" if as_bars else "severity (mildest first)")
    axes.set_ylabel("score")
    axes.set_title(f"Robustness: {family}")
    axes.grid(alpha=0.3)
    if drawn:
        axes.legend(fontsize="small")
    return figure
