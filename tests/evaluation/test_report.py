"""Reports on predictions frames, calibration, and summary statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats
from sklearn import metrics as skm

from emoexp.evaluation.metrics import concordance_correlation_coefficient
from emoexp.evaluation.report import (
    class_probabilities,
    classification_report_frame,
    confusion_matrix_figure,
    expected_calibration_error,
    largest_gaps,
    per_group_metrics,
    regression_report_frame,
    reliability_diagram,
)
from emoexp.evaluation.statistics import bootstrap_ci, mean_std_ci
from emoexp.labels.emotions import EKMAN7

TWELVE = (*EKMAN7, "calm", "contempt", "excitement", "frustration", "boredom")


def _categorical_frame(classes: tuple[str, ...], seed: int = 0, n: int = 400) -> pd.DataFrame:
    """A predictions frame whose last class never occurs as a target."""
    rng = np.random.default_rng(seed)
    present = len(classes) - 1
    weights = np.linspace(3, 1, present)
    target = rng.choice(present, size=n, p=weights / weights.sum())
    logits = rng.normal(size=(n, len(classes)))
    logits[np.arange(n), target] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(
        {
            "split": "test",
            "id": [f"s{i}" for i in range(n)],
            "target": np.asarray(classes)[target],
            "prediction": np.asarray(classes)[probs.argmax(axis=1)],
            "group_gender": rng.choice(["female", "male"], size=n),
            "speaker": rng.choice(["spk1", "spk2", "spk3"], size=n),
        }
    )
    for i, name in enumerate(classes):
        frame[f"prob_{name}"] = probs[:, i]
    return frame


@pytest.mark.parametrize("seed", [0, 1])
def test_classification_report_frame_matches_sklearn(seed: int) -> None:
    frame = _categorical_frame(EKMAN7, seed)
    report = classification_report_frame(frame, EKMAN7)

    assert list(report.index) == [*EKMAN7, "macro avg", "weighted avg", "accuracy"]
    assert list(report.columns) == ["precision", "recall", "f1", "support"]
    y_true, y_pred = frame["target"], frame["prediction"]
    labels = sorted(set(y_true) | set(y_pred))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for i, name in enumerate(labels):
        assert report.loc[name, "precision"] == pytest.approx(precision[i])
        assert report.loc[name, "recall"] == pytest.approx(recall[i])
        assert report.loc[name, "f1"] == pytest.approx(f1[i])
        assert report.loc[name, "support"] == support[i]
    assert report.loc["macro avg", "f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )
    assert report.loc["weighted avg", "precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="weighted", zero_division=0)
    )
    assert report.loc["accuracy", "f1"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert report.loc["accuracy", "support"] == len(frame)


def test_classification_report_keeps_unseen_class_and_rejects_unknown() -> None:
    frame = pd.DataFrame({"target": ["anger", "fear"], "prediction": ["anger", "anger"]})
    report = classification_report_frame(frame, ("anger", "fear", "sadness"))
    assert report.loc["sadness", "support"] == 0
    assert np.isnan(report.loc["sadness", "f1"])
    with pytest.raises(ValueError, match="not among the classes"):
        classification_report_frame(frame, ("anger",))


@pytest.mark.parametrize("classes", [EKMAN7, TWELVE], ids=["7", "12"])
@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_figure_saves_png(tmp_path: Path, classes: tuple[str, ...], normalize: bool) -> None:
    frame = _categorical_frame(classes)
    figure = confusion_matrix_figure(frame, classes, normalize=normalize, title="test")
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == list(classes)
    assert axes.get_title() == "test"
    path = tmp_path / "confusion.png"
    figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000


def _group_frame() -> pd.DataFrame:
    """Two genders with hand-computed scores, and one row without a gender."""
    rows = [
        # female: accuracy 3/4, recalls (.5, 1, 1) -> UAR 5/6, F1s (2/3, 2/3, 1) -> 7/9
        ("female", "anger", "anger", 0.0, 0.0),
        ("female", "anger", "happiness", 0.5, 0.5),
        ("female", "happiness", "happiness", 1.0, 1.0),
        ("female", "sadness", "sadness", -1.0, -1.0),
        # male: accuracy 1/2, recalls (0, .5, 1) -> UAR 1/2, F1s (0, .5, 1) -> 1/2
        ("male", "anger", "sadness", 0.0, 0.5),
        ("male", "sadness", "sadness", 0.5, 1.0),
        ("male", "sadness", "anger", 1.0, 1.5),
        ("male", "happiness", "happiness", -1.0, -0.5),
        (None, "anger", "anger", 0.0, 0.0),
    ]
    frame = pd.DataFrame(
        rows, columns=["group_gender", "target", "prediction", "valence_true", "valence_pred"]
    )
    frame["speaker"] = ["a", "a", "b", "b", "c", "c", "d", "d", "d"]
    return frame


CLASSES3 = ("anger", "happiness", "sadness")


def test_per_group_metrics_known_answers() -> None:
    result = per_group_metrics(_group_frame(), CLASSES3, ["group_gender"]).set_index("group")

    assert list(result.index) == ["female", "male"]  # the row without a gender is left out
    assert result.loc["female", "n"] == 4
    assert result.loc["female", "accuracy"] == pytest.approx(3 / 4)
    assert result.loc["female", "uar"] == pytest.approx(5 / 6)
    assert result.loc["female", "f1_macro"] == pytest.approx(7 / 9)
    assert result.loc["male", "accuracy"] == pytest.approx(1 / 2)
    assert result.loc["male", "uar"] == pytest.approx(1 / 2)
    assert result.loc["male", "f1_macro"] == pytest.approx(1 / 2)
    # Valence: exact for female; male predictions are shifted by +0.5.
    assert result.loc["female", "valence_ccc"] == pytest.approx(1.0)
    assert result.loc["female", "valence_mae"] == pytest.approx(0.0)
    male_true = np.array([0.0, 0.5, 1.0, -1.0])
    assert result.loc["male", "valence_ccc"] == pytest.approx(
        2 * male_true.var() / (2 * male_true.var() + 0.25)
    )
    assert result.loc["male", "valence_mae"] == pytest.approx(0.5)
    assert result.loc["male", "ccc"] == result.loc["male", "valence_ccc"]
    assert result.loc["male", "mae"] == result.loc["male", "valence_mae"]


def test_per_group_metrics_dimensional_only_and_several_columns() -> None:
    frame = _group_frame().drop(columns=["target", "prediction"])
    result = per_group_metrics(frame, None, ["group_gender", "speaker"])
    assert "accuracy" not in result.columns
    assert list(result["group_column"]) == ["group_gender"] * 2 + ["speaker"] * 4
    assert result.set_index("group").loc["d", "n"] == 3
    with pytest.raises(ValueError, match="no <dim>_true"):
        per_group_metrics(frame.drop(columns=["valence_pred"]), None, ["speaker"])
    with pytest.raises(KeyError, match="group_age"):
        per_group_metrics(frame, None, ["group_age"])


def test_largest_gaps_known_answers() -> None:
    groups = per_group_metrics(_group_frame(), CLASSES3, ["group_gender", "speaker"])
    gaps = largest_gaps(groups).set_index(["group_column", "metric"])

    accuracy = gaps.loc[("group_gender", "accuracy")]
    assert accuracy["gap"] == pytest.approx(1 / 4)
    assert (accuracy["best_group"], accuracy["worst_group"]) == ("female", "male")
    assert gaps.loc[("group_gender", "uar"), "gap"] == pytest.approx(1 / 3)
    assert gaps.loc[("group_gender", "f1_macro"), "gap"] == pytest.approx(7 / 9 - 1 / 2)
    mae = gaps.loc[("group_gender", "valence_mae")]
    # Lower MAE is better: best is the exact group.
    assert (mae["best_group"], mae["worst_group"]) == ("female", "male")
    assert mae["gap"] == pytest.approx(0.5)
    assert (gaps["gap"] >= 0).all()
    # Speakers "a".."c" have 2 samples, "d" has 3; min_samples drops the small ones.
    filtered = largest_gaps(groups, min_samples=3).set_index(["group_column", "metric"])
    assert filtered.loc[("speaker", "accuracy"), "n_groups"] == 1
    assert filtered.loc[("speaker", "accuracy"), "gap"] == 0


def test_expected_calibration_error_constructed_case() -> None:
    # Bin around 0.8: 10 samples, 6 correct -> |0.6 - 0.8| = 0.2, half the samples.
    # Bin around 0.6: 10 samples, 6 correct -> perfectly calibrated.
    probs = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 10)
    targets = np.array([0] * 6 + [1] * 4 + [0] * 6 + [1] * 4)
    assert expected_calibration_error(probs, targets, n_bins=10) == pytest.approx(0.1, abs=1e-6)
    calibrated = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(calibrated, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_calibration_error_matches_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(500, 5))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    targets = rng.integers(0, 5, size=500)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == targets
    bins = np.minimum((confidence * 15).astype(int), 14)
    expected = sum(
        abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
        for b in np.unique(bins)
    )
    assert expected_calibration_error(probs, targets, n_bins=15) == pytest.approx(expected, abs=1e-5)


def test_class_probabilities_and_reliability_diagram(tmp_path: Path) -> None:
    frame = _categorical_frame(EKMAN7)
    probs, targets = class_probabilities(frame, EKMAN7)
    assert probs.shape == (len(frame), 7)
    assert (np.asarray(EKMAN7)[targets] == frame["target"]).all()
    figure = reliability_diagram(probs, targets, n_bins=10)
    assert isinstance(figure, Figure)
    ece = expected_calibration_error(probs, targets, n_bins=10)
    assert f"{ece:.3f}" in figure.axes[0].get_title()
    path = tmp_path / "reliability.png"
    figure.savefig(path)
    assert path.stat().st_size > 20_000


def test_regression_report_frame_matches_scipy_and_sklearn() -> None:
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"split": "test", "id": range(n)})
    for dim, shift in (("valence", 0.1), ("arousal", -0.2)):
        frame[f"{dim}_true"] = rng.uniform(-1, 1, n)
        frame[f"{dim}_pred"] = 0.7 * frame[f"{dim}_true"] + rng.normal(0, 0.3, n) + shift
    frame.loc[0, "arousal_pred"] = np.nan

    report = regression_report_frame(frame)
    assert list(report.index) == ["valence", "arousal", "mean"]
    for dim in ("valence", "arousal"):
        pair = frame[[f"{dim}_true", f"{dim}_pred"]].dropna()
        t, p = pair.iloc[:, 0], pair.iloc[:, 1]
        assert report.loc[dim, "ccc"] == pytest.approx(concordance_correlation_coefficient(t, p))
        assert report.loc[dim, "pearson"] == pytest.approx(stats.pearsonr(t, p).statistic)
        assert report.loc[dim, "mae"] == pytest.approx(skm.mean_absolute_error(t, p))
        assert report.loc[dim, "rmse"] == pytest.approx(skm.root_mean_squared_error(t, p))
    assert report.loc["arousal", "n"] == n - 1
    assert report.loc["mean", "ccc"] == pytest.approx(report.loc[["valence", "arousal"], "ccc"].mean())
    assert list(regression_report_frame(frame, ["arousal"]).index) == ["arousal", "mean"]


def test_bootstrap_ci_contains_mean_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(0.6, 0.05, size=8)
    large = rng.normal(0.6, 0.05, size=200)
    mean, low, high = bootstrap_ci(small)
    assert mean == pytest.approx(small.mean())
    assert low < mean < high
    _, large_low, large_high = bootstrap_ci(large)
    assert large_high - large_low < (high - low) / 2
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    _, narrow_low, narrow_high = bootstrap_ci(small, confidence=0.5)
    assert low < narrow_low < narrow_high < high


def test_bootstrap_ci_degenerate_inputs() -> None:
    mean, low, high = bootstrap_ci([0.7])
    assert mean == 0.7 and np.isnan(low) and np.isnan(high)
    assert all(np.isnan(bootstrap_ci([])))
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    assert bootstrap_ci([0.4, np.nan, 0.6])[0] == pytest.approx(0.5)


def test_mean_std_ci() -> None:
    values = [0.61, 0.58, 0.64, 0.60, 0.63]
    summary = mean_std_ci(values)
    assert summary["n"] == 5
    assert summary["mean"] == pytest.approx(np.mean(values))
    assert summary["std"] == pytest.approx(np.std(values, ddof=1))
    low, high = stats.t.interval(0.95, 4, loc=np.mean(values), scale=stats.sem(values))
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((low, high))
    boot = mean_std_ci(values, method="bootstrap")
    assert boot["ci_low"] < boot["mean"] < boot["ci_high"]
    single = mean_std_ci([0.5])
    assert single["mean"] == 0.5 and single["n"] == 1
    assert np.isnan(single["std"]) and np.isnan(single["ci_low"])
    with pytest.raises(ValueError, match="unknown method"):
        mean_std_ci(values, method="normal")
