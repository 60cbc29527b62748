"""Figures of dimensional and multi-label predictions and of a timeline: valid PNGs, right content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image

from emoexp.evaluation.metrics import concordance_correlation_coefficient
from emoexp.evaluation.plots import (
    DEFAULT_ANCHORS,
    circumplex_figure,
    dimension_scatter_figure,
    per_label_f1_figure,
    timeline_figure,
)
from emoexp.labels.reporting import dimension_figures


def _dimensional_frame(n: int = 120, seed: int = 0, with_target: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"split": "test", "id": [f"s{i}" for i in range(n)]})
    for dim in ("valence", "arousal"):
        true = rng.uniform(-1, 1, n)
        frame[f"{dim}_true"] = true
        frame[f"{dim}_pred"] = np.clip(0.7 * true + rng.normal(0, 0.2, n), -1, 1)
    if with_target:
        frame["target"] = rng.choice(["anger", "happiness", "sadness"], n)
    return frame


def _saved_png(figure: Figure, path: Path) -> tuple[int, int]:
    figure.savefig(path, dpi=60)
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_dimension_scatter_plots_every_pair_and_reports_the_ccc(tmp_path: Path) -> None:
    frame = _dimensional_frame()
    frame.loc[3, "valence_pred"] = np.nan  # a missing value leaves its row out
    figure = dimension_scatter_figure(frame, "valence")
    [axes] = figure.axes
    points = axes.collections[0].get_offsets()
    assert len(points) == len(frame) - 1
    kept = frame.dropna(subset=["valence_pred"])
    np.testing.assert_allclose(points[:, 0], kept["valence_true"])
    np.testing.assert_allclose(points[:, 1], kept["valence_pred"])
    ccc = concordance_correlation_coefficient(
        kept["valence_true"].to_numpy(), kept["valence_pred"].to_numpy()
    )
    assert f"CCC = {ccc:.3f}" in axes.get_title() and "n = 119" in axes.get_title()
    assert axes.get_xlabel() == "true valence" and axes.get_ylabel() == "predicted valence"
    width, height = _saved_png(figure, tmp_path / "scatter.png")
    assert width > 100 and height > 100


def test_dimension_scatter_names_a_missing_column() -> None:
    with pytest.raises(KeyError, match=r"\['arousal_true', 'arousal_pred'\]"):
        dimension_scatter_figure(pd.DataFrame({"valence_true": [0.1]}), "arousal")


def test_circumplex_has_the_unit_circle_the_anchors_and_every_prediction(tmp_path: Path) -> None:
    frame = _dimensional_frame(with_target=True)
    figure = circumplex_figure(frame)
    [axes] = figure.axes
    circle = axes.lines[0].get_xydata()
    np.testing.assert_allclose(np.hypot(circle[:, 0], circle[:, 1]), 1.0)
    assert {t.get_text() for t in axes.texts} == set(DEFAULT_ANCHORS)
    predicted = np.concatenate([c.get_offsets() for c in axes.collections[:3]])
    assert len(predicted) == len(frame)  # one scatter per true class, then one star per anchor
    assert sorted(t.get_text() for t in axes.get_legend().get_texts()) == ["anger", "happiness", "sadness"]
    assert axes.get_xlim() == (-1.1, 1.1) and axes.get_xlabel() == "valence"
    _saved_png(figure, tmp_path / "circumplex.png")

    custom = circumplex_figure(_dimensional_frame(), anchors={"calm": (0.45, -0.6)})
    assert [t.get_text() for t in custom.axes[0].texts] == ["calm"]
    assert [t.get_text() for t in custom.axes[0].get_legend().get_texts()] == ["predictions"]


def test_dimension_figures_follow_the_dimensions() -> None:
    frame = _dimensional_frame()
    assert set(dimension_figures(frame, ["valence", "arousal"])) == {
        "plots/scatter_valence.png",
        "plots/scatter_arousal.png",
        "plots/circumplex.png",
    }
    # Without both valence and arousal there is no plane to draw.
    assert set(dimension_figures(frame, ["arousal"])) == {"plots/scatter_arousal.png"}


def test_per_label_f1_bars_sorted_with_macro_f1(tmp_path: Path) -> None:
    report = pd.DataFrame(
        {
            "label": ["anger", "joy", "fear"],
            "precision": [0.5, 0.9, 0.0],
            "recall": [0.25, 0.8, 0.0],
            "f1": [1 / 3, 0.8470588, 0.0],
            "support": [8, 20, 0],
        }
    )
    figure = per_label_f1_figure(report)
    [axes] = figure.axes
    widths = [bar.get_width() for bar in axes.patches]
    assert widths == pytest.approx([0.0, 1 / 3, 0.8470588])
    assert [t.get_text() for t in axes.get_yticklabels()] == ["fear (n=0)", "anger (n=8)", "joy (n=20)"]
    assert f"macro F1 = {report['f1'].mean():.3f}" in axes.get_title()
    _saved_png(figure, tmp_path / "f1.png")


def test_timeline_figure_draws_scores_and_segments(tmp_path: Path) -> None:
    timeline = pd.DataFrame(
        {
            "start": [0.0, 1.5, 3.0],
            "end": [3.0, 4.5, 6.0],
            "smoothed_emotion": ["anger", "anger", "sadness"],
            "smoothed_prob_anger": [0.8, 0.6, 0.3],
            "smoothed_prob_sadness": [0.2, 0.4, 0.7],
        }
    )
    segments = pd.DataFrame({"start": [0.0, 3.75], "end": [3.75, 6.0], "emotion": ["anger", "sadness"]})
    figure = timeline_figure(timeline, segments, title="talk.wav")
    top, bottom = figure.axes
    assert [line.get_label() for line in top.lines] == ["anger", "sadness"]
    np.testing.assert_allclose(top.lines[0].get_xdata(), [1.5, 3.0, 4.5])
    assert [(p.get_x(), p.get_width()) for p in bottom.patches] == [(0.0, 3.75), (3.75, 2.25)]
    # A segment takes the colour of its emotion's line.
    assert [to_hex(p.get_facecolor()) for p in bottom.patches] == [to_hex(x.get_color()) for x in top.lines]
    assert bottom.get_xlim() == (0.0, 6.0) and top.get_title() == "talk.wav"
    _saved_png(figure, tmp_path / "timeline.png")
