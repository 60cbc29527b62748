"""The questions every label scheme answers: reports, estimator role, state, served predictions.

Callers (training runs, scikit-learn models, ensembles, serving) ask these instead of branching
on the scheme's type (docs/design.md#1-the-label-scheme-decides-together); each answer is checked here
against an independent numpy/scikit-learn computation on a real predictions frame.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from sklearn.metrics import classification_report, f1_score, precision_recall_fscore_support

from emoexp.config import CONF_DIR, ConfigError
from emoexp.data import schema
from emoexp.labels.reporting import SchemeReport
from emoexp.labels.schemes import CLASSIFIER, REGRESSOR, LabelScheme

EKMAN7 = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
N = 120


def _scheme(name: str, **overrides: object) -> LabelScheme:
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "label_scheme" / f"{name}.yaml"))
    return instantiate({**node, **overrides}, _convert_="all")


def _manifest(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    emotions = rng.choice(EKMAN7, size=N)
    frame = pd.DataFrame(
        {
            schema.ID: [f"s{i}" for i in range(N)],
            schema.CORPUS: "t",
            schema.TEXT: "x",
            schema.SPEAKER: [f"p{i % 6}" for i in range(N)],
            schema.EMOTION: emotions,
            schema.VALENCE: rng.uniform(-1, 1, N),
            schema.AROUSAL: rng.uniform(-1, 1, N),
            "group_gender": rng.choice(["f", "m"], size=N),
        }
    )
    second = rng.choice(EKMAN7, size=N)
    frame[schema.LABELS] = pd.Series(
        [
            sorted({a, b}) if i % 3 == 0 else [a]
            for i, (a, b) in enumerate(zip(emotions, second, strict=True))
        ],
        dtype=object,
    )
    return schema.validate_manifest(frame, "t")


def _predictions(scheme: LabelScheme, seed: int = 0) -> pd.DataFrame:
    """A predictions frame as a training run writes it: split, id, speaker, groups, the scheme's columns."""
    samples = scheme.prepare(_manifest(seed))
    outputs = torch.randn(len(samples), scheme.num_outputs, generator=torch.Generator().manual_seed(seed))
    frame = scheme.predictions_frame(scheme.decode(outputs), samples)
    meta = samples[[schema.ID, schema.SPEAKER, *schema.group_columns(samples)]]
    split = np.where(np.arange(len(samples)) % 2 == 0, "test", "val")
    return pd.concat([pd.DataFrame({"split": split}), meta, frame], axis=1)


def _test_rows(scheme: LabelScheme) -> pd.DataFrame:
    predictions = _predictions(scheme)
    return predictions[predictions["split"] == "test"]


def _ccc(true: np.ndarray, pred: np.ndarray) -> float:
    cov = np.mean((true - true.mean()) * (pred - pred.mean()))
    return 2 * cov / (true.var() + pred.var() + (true.mean() - pred.mean()) ** 2)


def _top_label_ece(probs: np.ndarray, targets: np.ndarray, n_bins: int = 15) -> float:
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == targets).astype(float)
    # Equal-width bins [low, high) as torchmetrics bins them; a confidence of 1 joins the last.
    bins = np.clip(np.digitize(confidence, np.linspace(0, 1, n_bins + 1)) - 1, 0, n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += abs(correct[inside].mean() - confidence[inside].mean()) * inside.mean()
    return total


def _check_classification(report: SchemeReport, test: pd.DataFrame, classes: list[str]) -> None:
    frame = report.frames["reports/classification_report.csv"].set_index("class")
    expected = classification_report(
        test["target"], test["prediction"], labels=None, output_dict=True, zero_division=0
    )
    for name in classes:
        row = expected.get(name)
        if row is None:  # neither a target nor a prediction in this split: support 0, NaN scores
            assert frame.loc[name, "support"] == 0
            continue
        assert frame.loc[name, ["precision", "recall", "f1"]].tolist() == pytest.approx(
            [row["precision"], row["recall"], row["f1-score"]]
        )
        assert frame.loc[name, "support"] == row["support"]
    assert frame.loc["accuracy", "f1"] == pytest.approx((test["target"] == test["prediction"]).mean())
    assert frame.loc["macro avg", "f1"] == pytest.approx(expected["macro avg"]["f1-score"])
    probs = test[[f"prob_{c}" for c in classes]].to_numpy()
    targets = test["target"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    assert report.metrics["test/ece"] == pytest.approx(_top_label_ece(probs, targets), abs=1e-6)
    assert all(isinstance(f, Figure) for f in report.figures.values())


def _check_per_group_accuracy(report: SchemeReport, test: pd.DataFrame) -> None:
    per_group = report.frames["reports/per_group_metrics.csv"].set_index("group")
    for value, part in test.groupby("group_gender"):
        assert per_group.loc[value, "n"] == len(part)
        assert per_group.loc[value, "accuracy"] == pytest.approx(
            (part["target"] == part["prediction"]).mean()
        )
    gaps = report.frames["reports/per_group_gaps.csv"].set_index("metric")
    accuracy = per_group["accuracy"]
    assert gaps.loc["accuracy", "gap"] == pytest.approx(accuracy.max() - accuracy.min())


def test_categorical_test_report_matches_sklearn():
    scheme = _scheme("ekman7")
    test = _test_rows(scheme)
    report = scheme.test_report(test)
    assert set(report.frames) == {
        "reports/classification_report.csv",
        "reports/per_group_metrics.csv",
        "reports/per_group_gaps.csv",
        "reports/test_intervals.csv",
    }
    assert set(report.figures) == {"plots/confusion_matrix.png", "plots/reliability_diagram.png"}
    intervals = {f"test/{m}_ci_{end}" for m in ("accuracy", "uar", "f1_macro") for end in ("low", "high")}
    assert set(report.metrics) == {"test/ece", *intervals}
    _check_classification(report, test, EKMAN7)
    _check_per_group_accuracy(report, test)
    assert report.figures["plots/confusion_matrix.png"].axes[0].get_title() == "ekman7 (test)"
    report.close_figures()


def test_dimensional_test_report_matches_numpy():
    scheme = _scheme("valence_arousal")
    test = _test_rows(scheme)
    report = scheme.test_report(test)
    assert set(report.frames) == {
        "reports/regression_report.csv",
        "reports/per_group_metrics.csv",
        "reports/per_group_gaps.csv",
        "reports/test_intervals.csv",
    }
    assert set(report.figures) == {
        "plots/scatter_valence.png",
        "plots/scatter_arousal.png",
        "plots/circumplex.png",
    }
    report.close_figures()
    dims = ("valence_ccc", "arousal_ccc", "ccc")
    assert set(report.metrics) == {f"test/{m}_ci_{end}" for m in dims for end in ("low", "high")}
    regression = report.frames["reports/regression_report.csv"].set_index("dimension")
    for dim in ("valence", "arousal"):
        true, pred = test[f"{dim}_true"].to_numpy(), test[f"{dim}_pred"].to_numpy()
        assert regression.loc[dim, "ccc"] == pytest.approx(_ccc(true, pred))
        assert regression.loc[dim, "mae"] == pytest.approx(np.abs(true - pred).mean())
        assert regression.loc[dim, "rmse"] == pytest.approx(np.sqrt(np.mean((true - pred) ** 2)))
        assert regression.loc[dim, "pearson"] == pytest.approx(np.corrcoef(true, pred)[0, 1])
    per_group = report.frames["reports/per_group_metrics.csv"]
    assert "accuracy" not in per_group.columns and {"valence_ccc", "ccc"} <= set(per_group.columns)


def test_both_test_report_has_the_categorical_and_the_dimensional_reports():
    scheme = _scheme("both")
    test = _test_rows(scheme)
    report = scheme.test_report(test)
    assert set(report.frames) == {
        "reports/classification_report.csv",
        "reports/regression_report.csv",
        "reports/per_group_metrics.csv",
        "reports/per_group_gaps.csv",
        "reports/test_intervals.csv",
    }
    assert set(report.figures) == {
        "plots/confusion_matrix.png",
        "plots/reliability_diagram.png",
        "plots/scatter_valence.png",
        "plots/scatter_arousal.png",
        "plots/circumplex.png",
    }
    _check_classification(report, test, EKMAN7)
    _check_per_group_accuracy(report, test)
    assert {"accuracy", "valence_ccc"} <= set(report.frames["reports/per_group_metrics.csv"].columns)
    report.close_figures()


def test_multilabel_test_report_matches_sklearn():
    scheme = _scheme("multilabel")
    test = _test_rows(scheme)
    report = scheme.test_report(test)
    assert set(report.frames) == {"reports/multilabel_report.csv", "reports/per_group_metrics.csv"}
    assert set(report.figures) == {"plots/per_label_f1.png"}
    report.close_figures()
    assert not report.metrics
    labels = list(scheme.state()["labels"])

    def multi_hot(column: str) -> np.ndarray:
        return np.array([[label in str(x).split("|") for label in labels] for x in test[column]], dtype=int)

    truth, predicted = multi_hot("target_labels"), multi_hot("predicted_labels")
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    frame = report.frames["reports/multilabel_report.csv"]
    assert frame["label"].tolist() == labels
    assert frame["precision"].to_numpy() == pytest.approx(precision)
    assert frame["recall"].to_numpy() == pytest.approx(recall)
    assert frame["f1"].to_numpy() == pytest.approx(f1)
    assert frame["support"].tolist() == support.tolist()
    per_group = report.frames["reports/per_group_metrics.csv"].set_index("group")
    for value, part in test.groupby("group_gender"):
        rows = test.index.get_indexer(part.index)
        expected = f1_score(truth[rows], predicted[rows], average="macro", zero_division=0)
        assert per_group.loc[value, "f1_macro"] == pytest.approx(expected)


def test_reports_without_group_columns_have_no_group_tables():
    scheme = _scheme("ekman7")
    test = _test_rows(scheme).drop(columns=["group_gender"])
    report = scheme.test_report(test)
    assert "reports/per_group_metrics.csv" not in report.frames
    assert "reports/classification_report.csv" in report.frames
    report.close_figures()


def test_estimator_role_per_scheme():
    assert _scheme("ekman7").estimator_role("svm") == CLASSIFIER
    assert _scheme("valence_arousal").estimator_role("svm") == REGRESSOR
    with pytest.raises(ConfigError, match=r"model=svm .*target=soft needs a neural model"):
        _scheme("ekman7", target="soft").estimator_role("svm")
    for name in ("both", "multilabel"):
        with pytest.raises(ConfigError, match=rf"not label_scheme={name} .*Use a neural model"):
            _scheme(name).estimator_role("random_forest")


def test_names_weights_and_targets_answers():
    ekman, va, both, multi = (_scheme(n) for n in ("ekman7", "valence_arousal", "both", "multilabel"))
    assert ekman.class_names == tuple(EKMAN7) and ekman.dimension_names == ()
    assert va.class_names == () and va.dimension_names == ("valence", "arousal")
    assert both.class_names == tuple(EKMAN7) and both.dimension_names == ("valence", "arousal")
    assert multi.class_names == () and multi.dimension_names == ()
    assert not any(s.uses_soft_targets for s in (ekman, va, both, multi))
    assert _scheme("ekman7", target="soft").uses_soft_targets
    assert _scheme("ekman7", class_weights="balanced").class_loss_weights is None  # unresolved yet
    weights = [1.0, 2, 3, 4, 5, 6, 7]
    assert _scheme("ekman7", class_weights=weights).class_loss_weights == tuple(map(float, weights))
    assert [s.tunes_on_validation for s in (ekman, va, both, multi)] == [False, False, False, True]
    assert ekman.tune_on_validation(torch.zeros(2, 7), pd.DataFrame()) == {}


def test_state_is_json_and_restores_learnt_multilabel_labels_and_thresholds():
    trained = _scheme("multilabel")
    samples = trained.prepare(_manifest())
    logits = torch.randn(len(samples), trained.num_outputs, generator=torch.Generator().manual_seed(1))
    trained.tune_on_validation(logits, samples)
    state = json.loads(json.dumps(trained.state()))
    rebuilt = _scheme("multilabel")  # labels: null in the config, inferred from the corpus in training
    rebuilt.restore_state(state)
    assert rebuilt.num_outputs == trained.num_outputs
    assert rebuilt.thresholds() == pytest.approx(trained.thresholds())
    decoded = trained.decode(logits)
    pd.testing.assert_frame_equal(rebuilt.served_predictions(decoded), trained.served_predictions(decoded))
    assert json.loads(json.dumps(_scheme("both").state())) == {
        "kind": "both",
        "name": "both",
        "classes": EKMAN7,
        "dims": ["valence", "arousal"],
    }


def test_served_predictions_columns_and_values():
    both = _scheme("both")
    outputs = torch.randn(5, both.num_outputs, generator=torch.Generator().manual_seed(2))
    decoded = both.decode(outputs)
    served = both.served_predictions(decoded)
    assert served.columns.tolist() == [
        "prediction",
        "confidence",
        *[f"prob_{c}" for c in EKMAN7],
        "valence",
        "arousal",
    ]
    assert served["prediction"].tolist() == [EKMAN7[i] for i in decoded["probs"].argmax(axis=1)]
    assert served["confidence"].to_numpy() == pytest.approx(decoded["probs"].max(axis=1))
    assert served["arousal"].to_numpy() == pytest.approx(np.tanh(outputs[:, -1].numpy()))
    multi = _scheme("multilabel")
    multi.prepare(_manifest())
    probs = np.array([[0.9, 0.1, 0.6, 0.2, 0.0, 0.0, 0.7], [0.1] * 7])
    served = multi.served_predictions({"probs": probs})
    labels = multi.state()["labels"]
    assert served["prediction"].tolist() == ["|".join([labels[0], labels[2], labels[6]]), ""]
