"""Figures of dimensional and multi-label predictions, and of a long recording's timeline.

Like :mod:`emoexp.evaluation.report`, the functions take frames and return
:class:`matplotlib.figure.Figure` objects built without pyplot (no GUI backend; saving renders
with Agg). The label schemes choose which of them a run logs
(docs/design.md#1-the-label-scheme-decides-together); prediction of long recordings draws the
timeline (``python -m emoexp.predict``, docs/predict.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emoexp.evaluation.metrics import concordance_correlation_coefficient
from emoexp.evaluation.report import PRED_SUFFIX, TARGET, TRUE_SUFFIX
from emoexp.labels.emotions import CIRCUMPLEX, EKMAN7

DEFAULT_ANCHORS: dict[str, tuple[float, float]] = {name: CIRCUMPLEX[name] for name in EKMAN7}
"""Emotions marked on the circumplex: the seven basic ones at their valence/arousal prototypes."""


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], purpose: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{purpose} needs column(s) {missing}; the frame has {list(frame.columns)}.")


def _true_and_pred(preds: pd.DataFrame, dim: str) -> tuple[np.ndarray, np.ndarray]:
    columns = [f"{dim}{TRUE_SUFFIX}", f"{dim}{PRED_SUFFIX}"]
    _require_columns(preds, columns, "a dimensional figure")
    pair = preds[columns].dropna().to_numpy(dtype=float)
    return pair[:, 0], pair[:, 1]


def dimension_scatter_figure(preds: pd.DataFrame, dim: str) -> Figure:
    """Predicted against true values of one dimension, with the identity line.

    Args:
        preds: Predictions frame with ``<dim>_true`` and ``<dim>_pred`` columns (rows with a
            missing value are left out).
        dim: The dimension, e.g. ``valence``.

    Returns:
        The figure; its title gives the CCC and the number of samples.
    """
    true, pred = _true_and_pred(preds, dim)
    figure = Figure(figsize=(5.0, 5.0), layout="constrained")
    axes = figure.add_subplot()
    axes.scatter(true, pred, s=14, alpha=0.6, color="tab:blue", edgecolors="none")
    values = np.concatenate([true, pred, [-1.0, 1.0]])
    low, high = float(np.min(values)), float(np.max(values))
    margin = 0.05 * (high - low)
    axes.plot([low, high], [low, high], linestyle="--", color="black", label="prediction = truth")
    axes.set(xlim=(low - margin, high + margin), ylim=(low - margin, high + margin), aspect="equal")
    axes.set(xlabel=f"true {dim}", ylabel=f"predicted {dim}")
    ccc = concordance_correlation_coefficient(true, pred) if len(true) > 1 else float("nan")
    axes.set_title(f"{dim}: predicted vs true (CCC = {ccc:.3f}, n = {len(true)})")
    axes.legend(loc="upper left")
    return figure


def circumplex_figure(
    preds: pd.DataFrame,
    valence: str = "valence",
    arousal: str = "arousal",
    anchors: Mapping[str, tuple[float, float]] | None = None,
) -> Figure:
    """Predictions on the valence/arousal plane, with the unit circle and emotion prototypes.

    Args:
        preds: Predictions frame with ``<valence>_pred`` and ``<arousal>_pred`` columns. Points
            are coloured by ``target`` (the true class) when the frame has one.
        valence: The valence dimension's name.
        arousal: The arousal dimension's name.
        anchors: Emotion -> ``(valence, arousal)`` marked on the plane (default
            :data:`DEFAULT_ANCHORS`).

    Returns:
        The figure (valence on x, arousal on y, both on ``[-1.1, 1.1]``).
    """
    columns = [f"{valence}{PRED_SUFFIX}", f"{arousal}{PRED_SUFFIX}"]
    _require_columns(preds, columns, "circumplex_figure")
    points = preds.dropna(subset=columns)
    figure = Figure(figsize=(6.0, 6.0), layout="constrained")
    axes = figure.add_subplot()
    angle = np.linspace(0.0, 2.0 * np.pi, 361)
    axes.plot(np.cos(angle), np.sin(angle), color="gray", linewidth=1.0)
    axes.axhline(0.0, color="gray", linewidth=0.6)
    axes.axvline(0.0, color="gray", linewidth=0.6)
    groups = points.groupby(TARGET, sort=True) if TARGET in points.columns else [("predictions", points)]
    for name, part in groups:
        axes.scatter(part[columns[0]], part[columns[1]], s=12, alpha=0.55, edgecolors="none", label=name)
    for name, (v, a) in (DEFAULT_ANCHORS if anchors is None else anchors).items():
        axes.scatter([v], [a], marker="*", s=140, color="black", zorder=3)
        axes.annotate(name, (v, a), textcoords="offset points", xytext=(6, 4), fontsize=9)
    axes.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), aspect="equal", xlabel=valence, ylabel=arousal)
    axes.set_title(f"Circumplex: predicted {valence} x {arousal} (n = {len(points)})")
    axes.legend(loc="lower left", fontsize=8, markerscale=1.5)
    return figure


def per_label_f1_figure(report: pd.DataFrame) -> Figure:
    """F1 of every label (bars) with its precision and recall (markers) and support.

    Args:
        report: One row per label with ``label``, ``precision``, ``recall``, ``f1`` and
            ``support`` (the multi-label report).

    Returns:
        The figure, labels from the highest F1 down; the title gives the macro F1.
    """
    _require_columns(report, ["label", "precision", "recall", "f1", "support"], "per_label_f1_figure")
    frame = report.sort_values("f1", ascending=True, kind="stable").reset_index(drop=True)
    rows = np.arange(len(frame))
    figure = Figure(figsize=(7.0, max(3.0, 0.35 * len(frame) + 1.5)), layout="constrained")
    axes = figure.add_subplot()
    axes.barh(rows, frame["f1"], color="tab:blue", alpha=0.8, label="F1")
    axes.scatter(frame["precision"], rows, marker="|", s=160, color="tab:orange", label="precision", zorder=3)
    axes.scatter(frame["recall"], rows, marker="x", s=40, color="tab:red", label="recall", zorder=3)
    axes.set_yticks(
        rows, [f"{label} (n={int(n)})" for label, n in zip(frame["label"], frame["support"], strict=True)]
    )
    axes.set(xlim=(0.0, 1.05), xlabel="score")
    axes.set_title(f"Per-label F1 (macro F1 = {frame['f1'].mean():.3f})")
    axes.legend(loc="lower right", fontsize=8)
    return figure


def timeline_figure(timeline: pd.DataFrame, segments: pd.DataFrame, title: str = "") -> Figure:
    """A long recording's predictions over time: smoothed scores above, segments below.

    Args:
        timeline: One row per window with ``start``, ``end`` and the smoothed scores, columns
            ``smoothed_prob_<class>`` and/or ``smoothed_<dim>``.
        segments: ``start``, ``end`` and ``emotion`` of each segment.
        title: Figure title (the recording's name).

    Returns:
        The figure; time in seconds on the shared x axis.
    """
    _require_columns(timeline, ["start", "end"], "timeline_figure")
    _require_columns(segments, ["start", "end", "emotion"], "timeline_figure")
    centres = (timeline["start"].to_numpy(float) + timeline["end"].to_numpy(float)) / 2
    scores = [c for c in timeline.columns if c.startswith("smoothed_") and c != "smoothed_emotion"]
    figure = Figure(figsize=(11.0, 5.0), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    colours: dict[str, str] = {}
    for column in scores:
        name = column.removeprefix("smoothed_").removeprefix("prob_")
        [line] = top.plot(centres, timeline[column].to_numpy(float), linewidth=1.5, label=name)
        colours[name] = line.get_color()
    top.set(ylabel="smoothed score")
    if scores:
        top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    _draw_segments(bottom, segments, colours)
    duration = float(max(timeline["end"].max(), segments["end"].max()))
    bottom.set(xlim=(0.0, duration), xlabel="time (s)", yticks=[])
    top.set_title(title or "Emotion timeline")
    return figure


def _draw_segments(axes: object, segments: pd.DataFrame, known: dict[str, str]) -> None:
    """Coloured spans labelled when wide enough; an emotion drawn above keeps its line's colour."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    palette = colormaps["tab20"]
    used = {to_hex(c) for c in known.values()}
    spare = (c for c in (to_hex(palette(i)) for i in range(palette.N)) if c not in used)
    colours = {str(name): known.get(str(name)) for name in segments["emotion"]}
    colours = {name: colour or next(spare, "lightgray") for name, colour in colours.items()}
    duration = float(segments["end"].max()) or 1.0
    for row in segments.itertuples(index=False):
        width = float(row.end) - float(row.start)
        axes.barh(0, width, left=float(row.start), color=colours[str(row.emotion)], edgecolor="white")
        if width > 0.06 * duration:
            axes.text(float(row.start) + width / 2, 0, str(row.emotion), ha="center", va="center", fontsize=8)
