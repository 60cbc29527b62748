"""scikit-learn models end to end: train(cfg) on tiny embedded data into a real MLflow store."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pandas as pd
import pytest

from emoexp.config import ConfigError
from emoexp.config import instantiate as _instantiate
from emoexp.engine.samples import prepare_samples
from emoexp.train import train

CLASSIFICATION_METRICS = (
    "accuracy",
    "uar",
    "precision_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_macro",
    "f1_weighted",
)


def _runs(tracking_uri: str, experiment: str):
    client = mlflow.MlflowClient(tracking_uri)
    return client, client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def _artifacts(client, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def _test_features(cfg, run):
    """Rebuild the run's test rows and their features from its config, as a user would."""
    scheme = _instantiate(cfg.label_scheme)
    manifest = prepare_samples(cfg, scheme)
    fold = next(_instantiate(cfg.protocol).folds(manifest, scheme.stratify_labels(manifest), cfg.seed))
    assert fold.fingerprint(manifest) == run.data.tags["data_fingerprint"]
    inputs, _ = _instantiate(cfg.model.features[cfg.modality]).extract(manifest, cfg.paths.cache_dir)
    rows = np.flatnonzero(fold.mask("test"))
    return inputs[rows], {k: np.asarray(v)[rows] for k, v in scheme.targets(manifest).items()}


@pytest.mark.parametrize(
    ("model", "modality"),
    [
        ("svm", "audio"),
        ("decision_tree", "text"),
        ("random_forest", "visual"),
        ("logistic_regression", "audio"),
    ],
)
def test_sklearn_model_trains_logs_and_round_trips(compose, tracking_uri, model, modality):
    cfg = compose([f"model={model}", f"modality={modality}"])
    metrics = train(cfg)
    client, [run] = _runs(tracking_uri, f"emoexp-{modality}")
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    for tag in ("modality", "model", "label_scheme", "protocol", "git_commit", "data_fingerprint", "seed"):
        assert tags.get(tag), tag
    assert (tags["model"], tags["modality"], tags["emoexp.model_kind"]) == (model, modality, "sklearn")
    logged = run.data.metrics
    for name in CLASSIFICATION_METRICS:
        assert 0.0 <= logged[f"test/{name}"] <= 1.0
        assert math.isclose(logged[f"test/{name}"], metrics[f"test/{name}"], rel_tol=1e-6)
        assert f"val/{name}" in logged and f"train/{name}" in logged
    assert logged["val/uar_best"] == logged["val/uar"] == metrics["val/uar_best"]
    assert logged["test/loss"] > 0 and "test/ece" in logged
    artifacts = _artifacts(client, run.info.run_id)
    for expected in (
        "config.yaml",
        "environment.json",
        "predictions.csv",
        "plots/confusion_matrix.png",
        "reports/classification_report.csv",
        "reports/per_group_metrics.csv",
        "reports/dataset_report.csv",
    ):
        assert expected in artifacts, (expected, artifacts)
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv"))
    assert set(predictions["split"]) == {"val", "test"} and predictions["id"].is_unique
    probs = predictions.filter(like="prob_")
    assert probs.shape[1] == 7 and (probs.sum(axis=1) - 1).abs().max() < 1e-6
    test = predictions[predictions["split"] == "test"]
    assert math.isclose((test["target"] == test["prediction"]).mean(), logged["test/accuracy"], abs_tol=1e-6)

    # The logged MLflow sklearn model reproduces the logged test metrics from the test rows' features.
    mlflow.set_tracking_uri(tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    inputs, targets = _test_features(cfg, run)
    predicted_probs = pipeline.predict_proba(inputs)
    predicted = pipeline.classes_[predicted_probs.argmax(axis=1)]
    assert math.isclose((predicted == targets["label"]).mean(), logged["test/accuracy"], abs_tol=1e-6)
    from sklearn.metrics import balanced_accuracy_score

    assert math.isclose(
        balanced_accuracy_score(targets["label"], predicted), logged["test/uar"], abs_tol=1e-6
    )
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert np.allclose(np.asarray(pyfunc.predict(inputs)), predicted_probs)
    assert pyfunc.metadata.signature is not None


def test_sklearn_and_lstm_log_the_same_metric_names(compose, tracking_uri):
    train(compose(["model=lstm", "trainer.max_epochs=1", "tracking.log_checkpoint=false"]))
    train(compose(["model=logistic_regression", "tracking.log_checkpoint=false"]))
    _, runs = _runs(tracking_uri, "emoexp-audio")
    names = {
        run.data.tags["model"]: {m for m in run.data.metrics if m.startswith(("val/", "test/"))}
        for run in runs
    }
    assert names["logistic_regression"] == names["lstm"]
    assert {"val/uar_best", "test/uar", "test/ece", "val/loss"} <= names["lstm"]


def test_valence_arousal_uses_the_regressor(compose, tracking_uri):
    cfg = compose(["model=svm", "label_scheme=valence_arousal"])
    metrics = train(cfg)
    client, [run] = _runs(tracking_uri, "emoexp-audio")
    logged = run.data.metrics
    for name in ("ccc", "mae", "valence_ccc", "arousal_ccc", "valence_pearson", "arousal_mae"):
        assert f"test/{name}" in logged and f"val/{name}" in logged
    assert metrics["val/ccc_best"] == logged["val/ccc"]
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv"))
    assert {"valence_true", "valence_pred", "arousal_true", "arousal_pred"} <= set(predictions.columns)
    assert predictions[["valence_pred", "arousal_pred"]].abs().max().max() <= 1.0
    mlflow.set_tracking_uri(tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    inputs, targets = _test_features(cfg, run)
    predicted = np.clip(pipeline.predict(inputs), -1, 1)
    assert math.isclose(np.abs(predicted - targets["dims"]).mean(), logged["test/mae"], rel_tol=1e-4)


@pytest.mark.parametrize("scheme", ["both", "multilabel"])
def test_a_scheme_the_model_cannot_serve_is_rejected_clearly(compose, tracking_uri, scheme):
    with pytest.raises(
        ConfigError, match=r"supports categorical schemes .* and valence_arousal with its regressor"
    ):
        train(compose(["model=svm", f"label_scheme={scheme}"]))
    # Found before anything is recorded: no run, not even a FAILED one, clutters the store.
    experiment = mlflow.MlflowClient(tracking_uri).get_experiment_by_name("emoexp-audio")
    assert experiment is None or _runs(tracking_uri, "emoexp-audio")[1] == []


def test_cross_validation_with_a_sklearn_model(compose, tracking_uri):
    metrics = train(compose(["model=decision_tree", "protocol=speaker_kfold", "protocol.n_splits=3"]))
    _, runs = _runs(tracking_uri, "emoexp-audio")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    assert all(c.info.status == "FINISHED" for c in children) and parents[0].info.status == "FINISHED"
    child_uar = [c.data.metrics["test/uar"] for c in children]
    assert math.isclose(parents[0].data.metrics["test/uar"], sum(child_uar) / 3, rel_tol=1e-6)
    assert metrics["test/uar"] == pytest.approx(parents[0].data.metrics["test/uar"])


def test_test_lock_and_validation_only_model_selection(compose, tracking_uri):
    metrics = train(compose(["model=svm", "evaluate_test=false"]))
    client, [run] = _runs(tracking_uri, "emoexp-audio")
    assert set(metrics) == {"val/uar_best"}
    assert not [m for m in run.data.metrics if m.startswith("test/")]
    assert "predictions.csv" not in _artifacts(client, run.info.run_id)
    assert run.data.params["selected.model__estimator__C"] in {"0.1", "1.0", "10.0"}
