"""Robustness curves of several systems side by side (runs with a robustness report, docs/robustness.md).

A run's report logs ``robust/<family>/<level>/<metric>``; this module gathers the headline
metric of every compared unit (seed, or seed x fold), averages it per system, and draws one
panel per perturbation family with one line per system. Reports made with the same seed
perturbed the same samples the same way, so their curves compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from emoexp.evaluation.perturbations import FAMILIES

PREFIX, CLEAN = "robust", "clean"


def _severity(family: str, level: str) -> int:
    if family == CLEAN:
        return 0
    try:
        return FAMILIES[family].level(level).severity
    except KeyError:  # a family or level this version does not define: after the known ones
        return 99


def robustness_curves(systems: Sequence[Any], metric: str) -> pd.DataFrame:
    """Per system, family and level: the mean of ``metric`` (e.g. ``test/uar``) over units that report it.

    Returns:
        Columns ``system``, ``family``, ``level``, ``severity``, ``value``, ``units``; empty
        when no compared run has a robustness report.
    """
    bare = metric.split("/", 1)[-1]
    rows = []
    for system in systems:
        for unit in system.units.values():
            for key, value in unit.metrics.items():
                parts = key.split("/")
                if len(parts) == 4 and parts[0] == PREFIX and parts[3] == bare:
                    rows.append(
                        {"system": system.name, "family": parts[1], "level": parts[2], "value": value}
                    )
    if not rows:
        return pd.DataFrame(columns=["system", "family", "level", "severity", "value", "units"])
    frame = pd.DataFrame(rows)
    curves = frame.groupby(["system", "family", "level"], as_index=False, sort=False).agg(
        value=("value", "mean"), units=("value", "size")
    )
    curves["severity"] = [_severity(f, lv) for f, lv in zip(curves["family"], curves["level"], strict=True)]
    curves = curves.sort_values(["family", "severity", "level", "system"], ignore_index=True)
    return curves[["system", "family", "level", "severity", "value", "units"]]


def curves_figure(curves: pd.DataFrame, metric: str) -> Figure:
    """One panel per family: ``metric`` against severity (clean first), one line per system."""
    families = [f for f in dict.fromkeys(curves["family"]) if f != CLEAN]
    columns = min(3, max(len(families), 1))
    rows = -(-max(len(families), 1) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
    clean = curves[curves["family"] == CLEAN]
    for i, family in enumerate(families):
        axes = figure.add_subplot(rows, columns, i + 1)
        part = pd.concat([clean, curves[curves["family"] == family]], ignore_index=True)
        order = list(dict.fromkeys(part.sort_values(["severity", "level"])["level"]))
        for system, lines in part.groupby("system", sort=False):
            lines = lines.set_index("level").reindex(order)
            axes.plot(range(len(order)), lines["value"], marker="o", label=str(system))
        axes.set_xticks(range(len(order)), ["clean" if lv == "none" else lv for lv in order], rotation=30)
        axes.set_title(family)
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        if i == 0:
            axes.legend(fontsize="small")
    return figure


def add_robustness(report: Any, comparison: Any) -> None:
    """The report's "Robustness" section, when any compared run has a robustness report."""
    curves = robustness_curves(comparison.systems, comparison.metric)
    if curves.empty:
        return
    report.heading("Robustness")
    report.text(
        f"`{comparison.metric}` of each system on perturbed test inputs (`python -m emoexp.robustness`), "
        "mean over the units that have a report; severity grows to the right. Curves compare only for "
        "reports made with the same seed (docs/robustness.md)."
    )
    wide = curves.pivot_table(index=["family", "severity", "level"], columns="system", values="value")
    report.table(wide.reset_index().drop(columns="severity"), "robustness")
    report.figure(curves_figure(curves, comparison.metric), "robustness_curves")
