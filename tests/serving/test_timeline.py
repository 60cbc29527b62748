"""Windows, smoothing and segments of a long recording (emoexp.serving.timeline), on known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emoexp.config import CONF_DIR
from emoexp.serving.timeline import build_timeline, segments_of, smooth, window_starts


def _scheme(name: str):
    scheme = instantiate(OmegaConf.load(CONF_DIR / "label_scheme" / f"{name}.yaml"), _convert_="all")
    if name == "multilabel":
        scheme.restore_state({"labels": ["anger", "joy"], "thresholds": [0.5, 0.5]})
    return scheme


@pytest.mark.parametrize(
    ("n", "window", "hop", "expected"),
    [
        (10, 4, 2, [0, 2, 4, 6]),  # the hops end exactly at the end
        (11, 4, 2, [0, 2, 4, 6, 7]),  # the last window moves back to end at the end
        (3, 4, 2, [0]),  # shorter than a window: one window
        (4, 4, 1, [0]),
    ],
)
def test_window_starts_cover_the_recording(n: int, window: int, hop: int, expected: list[int]) -> None:
    starts = window_starts(n, window, hop)
    assert starts.tolist() == expected
    covered = np.zeros(n, dtype=bool)
    for start in starts:
        covered[start : start + window] = True
    assert covered.all() and (starts + min(window, n) <= n).all()


def test_window_starts_rejects_empty_lengths() -> None:
    with pytest.raises(ValueError, match="positive"):
        window_starts(0, 4, 2)


def test_smooth_is_a_centred_moving_average_that_keeps_distributions() -> None:
    values = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    smoothed = smooth(values, 3)
    expected = [[0.5, 0.5], [2 / 3, 1 / 3], [2 / 3, 1 / 3], [1.0, 0.0]]
    np.testing.assert_allclose(smoothed, expected)
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0)
    np.testing.assert_array_equal(smooth(values, 1), values)
    series = np.arange(6.0)
    np.testing.assert_allclose(smooth(series, 5), [1.0, 1.5, 2.0, 3.0, 3.5, 4.0])


def test_segments_merge_runs_and_tile_the_recording() -> None:
    centres = np.array([1.5, 3.0, 4.5, 6.0, 7.5])
    segments = segments_of(["a", "a", "b", "b", "a"], centres, duration=9.0)
    assert segments[["start", "end"]].to_numpy().tolist() == [[0.0, 3.75], [3.75, 6.75], [6.75, 9.0]]
    assert segments["emotion"].tolist() == ["a", "b", "a"]
    assert segments[["first_window", "last_window", "windows"]].to_numpy().tolist() == [
        [0, 1, 2],
        [2, 3, 2],
        [4, 4, 1],
    ]


def test_build_timeline_categorical_smooths_away_a_one_window_blip() -> None:
    scheme = _scheme("ekman7")
    probs = np.full((5, 7), 0.02)
    probs[:, 1] = 0.88  # anger
    probs[2, 1], probs[2, 5] = 0.02, 0.88  # one window of sadness
    starts = np.array([0.0, 1.5, 3.0, 4.5, 6.0])
    timeline, segments = build_timeline(scheme, {"probs": probs}, starts, 3.0, 9.0, width=3)
    assert timeline["emotion"].tolist() == ["anger", "anger", "sadness", "anger", "anger"]
    assert timeline["smoothed_emotion"].tolist() == ["anger"] * 5
    assert timeline["end"].tolist() == [3.0, 4.5, 6.0, 7.5, 9.0]
    assert {"confidence", "prob_anger", "smoothed_prob_anger"} <= set(timeline.columns)
    np.testing.assert_allclose(timeline.filter(like="smoothed_prob_").sum(axis=1), 1.0)
    assert segments[["start", "end", "emotion", "windows"]].to_numpy().tolist() == [[0.0, 9.0, "anger", 5]]
    unsmoothed = build_timeline(scheme, {"probs": probs}, starts, 3.0, 9.0, width=1)[1]
    assert unsmoothed["emotion"].tolist() == ["anger", "sadness", "anger"]


def test_build_timeline_dimensional_segments_by_quadrant() -> None:
    scheme = _scheme("valence_arousal")
    dims = np.array([[0.5, 0.6], [0.4, 0.5], [-0.5, -0.4], [-0.6, -0.5]])
    timeline, segments = build_timeline(scheme, {"dims": dims}, np.arange(4) * 2.0, 2.0, 8.0, width=1)
    assert {"valence", "arousal", "smoothed_valence", "smoothed_arousal"} <= set(timeline.columns)
    assert segments["emotion"].tolist() == ["valence+ arousal+", "valence- arousal-"]
    assert segments[["start", "end"]].to_numpy().tolist() == [[0.0, 4.0], [4.0, 8.0]]


def test_build_timeline_multilabel_uses_the_thresholds() -> None:
    scheme = _scheme("multilabel")
    probs = np.array([[0.9, 0.8], [0.1, 0.2], [0.2, 0.9]])
    timeline, segments = build_timeline(scheme, {"probs": probs}, np.arange(3.0), 1.0, 3.0, width=1)
    assert timeline["emotion"].tolist() == ["anger|joy", "none", "joy"]
    assert len(segments) == 3 and isinstance(segments, pd.DataFrame)
