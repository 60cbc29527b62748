"""Intervals of one run's test figures: scores as scikit-learn computes them, speakers resampled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from emoexp.evaluation.intervals import (
    SAMPLES,
    SPEAKERS,
    categorical_scores,
    cluster_bootstrap,
    figure_intervals,
)


@pytest.mark.parametrize("seed", range(5))
def test_categorical_scores_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 5, 60)
    prediction = np.where(rng.random(60) < 0.5, target, rng.integers(0, 6, 60))  # class 5 never true
    scores = categorical_scores(target, prediction, 6)
    assert scores["accuracy"] == pytest.approx(accuracy_score(target, prediction))
    assert scores["uar"] == pytest.approx(balanced_accuracy_score(target, prediction))
    assert scores["f1_macro"] == pytest.approx(f1_score(target, prediction, average="macro", zero_division=0))


def _predictions(per_speaker_accuracy: dict[str, float], n: int = 30, seed: int = 0) -> pd.DataFrame:
    """Test predictions where each speaker's clips are right with its own probability."""
    rng = np.random.default_rng(seed)
    rows = []
    for speaker, accuracy in per_speaker_accuracy.items():
        for i in range(n):
            target = ["anger", "happiness", "sadness"][i % 3]
            wrong = "neutral" if rng.random() > accuracy else target
            rows.append({"speaker": speaker, "target": target, "prediction": wrong})
    return pd.DataFrame(rows)


CLASSES = ["neutral", "anger", "happiness", "sadness"]


def test_speakers_that_differ_widen_the_interval_beyond_the_sample_bootstrap():
    test = _predictions({"s1": 0.95, "s2": 0.9, "s3": 0.3, "s4": 0.35, "s5": 0.9, "s6": 0.4})
    by_speaker = figure_intervals(test, CLASSES, []).set_index("metric")
    by_sample = figure_intervals(test.assign(speaker=range(len(test))), CLASSES, []).set_index("metric")

    assert (by_speaker["resampled"] == SPEAKERS).all() and (by_sample["resampled"] == SAMPLES).all()
    assert by_speaker.loc["uar", "n_clusters"] == 6
    for table in (by_speaker, by_sample):
        assert table.loc["uar", "value"] == pytest.approx(
            balanced_accuracy_score(test["target"], test["prediction"])
        )
        assert table.loc["uar", "ci_low"] < table.loc["uar", "value"] < table.loc["uar", "ci_high"]
    width = by_speaker["ci_high"] - by_speaker["ci_low"]
    assert (width > 1.5 * (by_sample["ci_high"] - by_sample["ci_low"])).loc[["accuracy", "uar"]].all()


def test_two_speakers_who_agree_do_not_narrow_the_interval_below_the_sample_bootstrap():
    # The default split tests on 2 speakers. Drawing only whole speakers would mix two fixed
    # scores; when they agree that "interval" collapses, though 60 clips are a sample.
    test = _predictions({"s1": 0.6, "s2": 0.6}, seed=3)
    by_speaker = figure_intervals(test, CLASSES, []).set_index("metric")
    by_sample = figure_intervals(test.assign(speaker=range(len(test))), CLASSES, []).set_index("metric")
    assert (by_speaker["resampled"] == SPEAKERS).all() and by_speaker.loc["uar", "n_clusters"] == 2
    width = by_speaker["ci_high"] - by_speaker["ci_low"]
    assert (width >= 0.9 * (by_sample["ci_high"] - by_sample["ci_low"])).loc[["accuracy", "uar"]].all()


def test_one_speaker_in_test_falls_back_to_samples_and_says_so():
    table = figure_intervals(_predictions({"only": 0.7}), CLASSES, [])
    assert set(table["resampled"]) == {SAMPLES} and set(table["n_clusters"]) == {30}
    assert (table["ci_low"] < table["ci_high"]).all()


def test_the_draws_are_seeded_so_two_runs_get_the_same_interval():
    clusters = np.repeat(np.arange(8), 5)
    values = np.random.default_rng(1).random(40)

    def score(rows):
        return {"mean": float(values[rows].mean())}

    assert cluster_bootstrap(score, clusters) == cluster_bootstrap(score, clusters)
    assert cluster_bootstrap(score, clusters, seed=1) != cluster_bootstrap(score, clusters)


def test_dimensional_figures_get_ccc_intervals():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 1, (80, 2))
    test = pd.DataFrame(
        {
            "speaker": np.repeat([f"s{i}" for i in range(8)], 10),
            "valence_true": truth[:, 0],
            "valence_pred": truth[:, 0] + rng.normal(0, 0.3, 80),
            "arousal_true": truth[:, 1],
            "arousal_pred": truth[:, 1] + rng.normal(0, 0.3, 80),
        }
    )
    table = figure_intervals(test, [], ["valence", "arousal"]).set_index("metric")
    assert set(table.index) == {"valence_ccc", "arousal_ccc", "ccc"}
    assert (table["ci_low"] < table["value"]).all() and (table["value"] < table["ci_high"]).all()
