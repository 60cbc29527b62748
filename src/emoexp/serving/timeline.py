"""A long recording as a timeline: sliding windows, smoothing over neighbours, merged segments.

Pure computations on decoded model outputs (no audio, no model): where the windows go
(:func:`window_starts`), a moving average over neighbouring windows (:func:`smooth`), the
per-window table and the segment list (:func:`build_timeline`). Reading the recording and
running the model is :mod:`emoexp.serving.streaming`; docs/predict.md shows the outputs.

Segments tile the recording: window ``i`` owns the time from the midpoint between its centre
and its predecessor's to the midpoint between its centre and its successor's (the first from
0, the last to the end), and consecutive windows with the same smoothed emotion merge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

SMOOTHED = "smoothed_"
"""Prefix of the smoothed columns of a timeline (``smoothed_prob_anger``, ``smoothed_valence``)."""
NO_LABEL = "none"
"""Emotion of a multi-label window where no label is above its threshold."""


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
    """First sample of every window, so that the windows cover ``[0, n_samples)`` entirely.

    Windows start every ``hop`` samples; the last one is moved back to end exactly at the end
    of the recording (it overlaps its predecessor more), so every window has the full length.
    A recording no longer than one window is one window.

    Args:
        n_samples: Length of the recording.
        window: Window length in samples.
        hop: Distance between window starts in samples.

    Returns:
        Increasing start samples (int64).

    Raises:
        ValueError: If a length is not positive.
    """
    if n_samples < 1 or window < 1 or hop < 1:
        raise ValueError(f"need positive lengths, got n_samples={n_samples}, window={window}, hop={hop}.")
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    last = n_samples - window
    starts = np.arange(0, last + 1, hop, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` neighbouring rows (fewer at the edges).

    Averaging probability rows keeps them probability distributions.

    Args:
        values: ``[windows, ...]`` scores, one row per window in time order.
        width: Windows averaged (odd widths are centred; 1 leaves the values unchanged).

    Returns:
        The smoothed values, same shape, float64.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if width <= 1 or n < 2:
        return values.copy()
    before, after = (width - 1) // 2, width // 2
    cumulative = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
    low = np.clip(np.arange(n) - before, 0, n)
    high = np.clip(np.arange(n) + after + 1, 0, n)
    counts = (high - low).reshape(-1, *([1] * (values.ndim - 1)))
    return (cumulative[high] - cumulative[low]) / counts


def emotions(served: pd.DataFrame, dims: Sequence[str]) -> np.ndarray:
    """One emotion name per row of served predictions.

    The scheme's ``prediction`` where it has one (``none`` for a multi-label row with no label);
    for a purely dimensional scheme, the signs of its dimensions (``valence+ arousal-``: the
    quadrant of the circumplex).

    Args:
        served: Output of the scheme's ``served_predictions``.
        dims: The scheme's dimensions.
    """
    if "prediction" in served.columns:
        return served["prediction"].fillna("").astype(str).replace("", NO_LABEL).to_numpy(dtype=object)
    signs = [np.where(served[d].to_numpy(float) >= 0, f"{d}+", f"{d}-") for d in dims]
    return np.array([" ".join(parts) for parts in zip(*signs, strict=True)], dtype=object)


def segments_of(labels: Sequence[str], centres: np.ndarray, duration: float) -> pd.DataFrame:
    """Merge consecutive windows with the same label into segments that tile ``[0, duration]``.

    Args:
        labels: The (smoothed) label of every window, in time order.
        centres: Every window's centre in seconds.
        duration: Length of the recording in seconds.

    Returns:
        ``start``, ``end``, ``emotion``, ``first_window``, ``last_window`` and ``windows`` per
        segment, in time order.
    """
    centres = np.asarray(centres, dtype=float)
    bounds = np.concatenate([[0.0], (centres[:-1] + centres[1:]) / 2, [duration]])
    labels = list(labels)
    rows, first = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[first]:
            rows.append(
                {
                    "start": float(bounds[first]),
                    "end": float(bounds[i]),
                    "emotion": labels[first],
                    "first_window": first,
                    "last_window": i - 1,
                    "windows": i - first,
                }
            )
            first = i
    columns = ["start", "end", "emotion", "first_window", "last_window", "windows"]
    return pd.DataFrame(rows, columns=columns)


def build_timeline(
    scheme: Any,
    decoded: Mapping[str, np.ndarray],
    starts: np.ndarray,
    window_s: float,
    duration: float,
    width: int = 3,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-window timeline and the smoothed segment list of one recording.

    Args:
        scheme: The model's label scheme (its ``served_predictions`` decodes the scores).
        decoded: The scheme's decoded outputs of every window (``probs`` and/or ``dims``).
        starts: Window starts in seconds, in time order.
        window_s: Window length in seconds.
        duration: Length of the recording in seconds.
        width: Windows in the moving average (1: no smoothing).

    Returns:
        ``(timeline, segments)``. The timeline has ``window``, ``start``, ``end``, ``emotion``,
        the served columns of every window (``confidence``, ``prob_<class>``, ``valence``, ...),
        then ``smoothed_emotion`` and the smoothed scores (``smoothed_prob_<class>``,
        ``smoothed_<dim>``). Segments are :func:`segments_of` the smoothed emotions.
    """
    dims = tuple(scheme.dimension_names)
    starts = np.asarray(starts, dtype=float)
    ends = np.minimum(starts + window_s, duration)
    raw = scheme.served_predictions(dict(decoded))
    smoothed = scheme.served_predictions({key: smooth(value, width) for key, value in decoded.items()})
    timeline = pd.DataFrame({"window": np.arange(len(starts)), "start": starts, "end": ends})
    timeline["emotion"] = emotions(raw, dims)
    timeline = pd.concat([timeline, raw.drop(columns=["prediction"], errors="ignore")], axis=1)
    timeline[f"{SMOOTHED}emotion"] = emotions(smoothed, dims)
    scores = [c for c in smoothed.columns if c.startswith("prob_") or c in dims]
    timeline = pd.concat([timeline, smoothed[scores].add_prefix(SMOOTHED)], axis=1)
    segments = segments_of(timeline[f"{SMOOTHED}emotion"], (starts + ends) / 2, duration)
    return timeline, segments
