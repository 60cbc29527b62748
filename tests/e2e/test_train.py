"""End to end: train(cfg) on tiny embedded data into a real MLflow store, then inspect the store."""

from __future__ import annotations

import math

import mlflow
import pandas as pd
import pytest
import torch

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


def _only_run(tracking_uri: str, experiment: str):
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def _artifacts(client, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found |= _artifacts(client, run_id, item.path)
        else:
            found.add(item.path)
    return found


@pytest.mark.parametrize(
    ("modality", "model"),
    [("audio", "lstm"), ("audio", "cnn"), ("text", "lstm"), ("text", "transformer"), ("visual", "cnn")],
)
def test_train_logs_a_complete_run(compose, tracking_uri, modality, model):
    cfg = compose([f"modality={modality}", f"model={model}"])
    metrics = train(cfg)
    client, run = _only_run(tracking_uri, f"emoexp-{modality}")
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    for tag in ("modality", "model", "label_scheme", "protocol", "git_commit", "data_fingerprint", "seed"):
        assert tags.get(tag), tag
    assert tags["modality"] == modality and tags["model"] == model and tags["label_scheme"] == "ekman7"
    logged = run.data.metrics
    for name in CLASSIFICATION_METRICS:
        assert 0.0 <= logged[f"test/{name}"] <= 1.0
        assert math.isclose(logged[f"test/{name}"], metrics[f"test/{name}"], rel_tol=1e-6)
    assert "val/uar_best" in logged and "train/loss" in logged and "val/uar" in logged
    history = client.get_metric_history(run.info.run_id, "val/uar")
    assert len(history) == cfg.trainer.max_epochs
    assert run.data.params["model.name"] == model
    artifacts = _artifacts(client, run.info.run_id)
    for expected in (
        "config.yaml",
        "environment.json",
        "predictions.csv",
        "plots/confusion_matrix.png",
        "reports/classification_report.csv",
        "reports/per_group_metrics.csv",
        "checkpoints/best.ckpt",
    ):
        assert expected in artifacts, (expected, artifacts)
    predictions = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv"))
    assert set(predictions["split"]) == {"val", "test"}
    assert predictions["id"].is_unique
    probs = predictions.filter(like="prob_")
    assert probs.shape[1] == 7
    assert (probs.sum(axis=1) - 1).abs().max() < 1e-4
    test = predictions[predictions["split"] == "test"]
    assert math.isclose((test["target"] == test["prediction"]).mean(), logged["test/accuracy"], abs_tol=1e-6)


@pytest.mark.parametrize("scheme", ["valence_arousal", "both", "ekman6"])
def test_every_label_scheme_trains_and_logs_its_metrics(compose, tracking_uri, scheme):
    cfg = compose([f"label_scheme={scheme}"])
    metrics = train(cfg)
    _, run = _only_run(tracking_uri, "emoexp-audio")
    logged = run.data.metrics
    if scheme in ("valence_arousal", "both"):
        for name in ("ccc", "valence_ccc", "arousal_ccc", "valence_pearson", "arousal_mae"):
            assert -1.0 <= logged[f"test/{name}"] <= 1.0 if "mae" not in name else logged[f"test/{name}"] >= 0
    if scheme in ("both", "ekman6"):
        assert "test/uar" in logged
    assert cfg.optimized_metric in metrics


def test_reloaded_best_checkpoint_reproduces_logged_test_metric(compose, tracking_uri):
    import hydra
    from lightning.pytorch import Trainer

    from emoexp.data.datamodule import EmotionDataModule
    from emoexp.engine.samples import prepare_samples
    from emoexp.tasks.emotion import EmotionTask

    cfg = compose(["model=lstm"])
    metrics = train(cfg)
    client, run = _only_run(tracking_uri, "emoexp-audio")
    checkpoint = client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt")

    scheme = hydra.utils.instantiate(cfg.label_scheme, _convert_="all")
    manifest = prepare_samples(cfg, scheme)
    protocol = hydra.utils.instantiate(cfg.protocol)
    fold = next(protocol.folds(manifest, scheme.stratify_labels(manifest), cfg.seed))
    assert fold.fingerprint(manifest) == run.data.tags["data_fingerprint"]
    featurizer = hydra.utils.instantiate(cfg.model.features.audio, _convert_="all")
    datamodule = EmotionDataModule(
        manifest, fold, featurizer, scheme.targets(manifest), cache_dir=cfg.paths.cache_dir
    )
    datamodule.setup()
    net = hydra.utils.instantiate(cfg.model.net, num_outputs=scheme.num_outputs, **featurizer.net_kwargs())
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    task = EmotionTask(net, scheme, optimizer=hydra.utils.instantiate(cfg.optimizer))
    task.load_state_dict(state)
    result = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).test(
        task, datamodule=datamodule, verbose=False
    )[0]
    assert math.isclose(result["test/uar"], metrics["test/uar"], abs_tol=1e-6)
    assert math.isclose(result["test/f1_macro"], run.data.metrics["test/f1_macro"], abs_tol=1e-6)


def test_a_crash_marks_the_run_failed_and_keeps_what_was_logged(compose, tracking_uri):
    cfg = compose(["model.net.hidden_size=-3", "model.net.subsample=1"])  # the LSTM refuses it
    with pytest.raises(Exception, match="hidden_size must be greater than zero"):
        train(cfg)
    client, run = _only_run(tracking_uri, "emoexp-audio")
    assert run.info.status == "FAILED"
    assert "hidden_size" in run.data.tags["error"]
    assert run.data.params["model.net.hidden_size"] == "-3"
    assert "config.yaml" in _artifacts(client, run.info.run_id)


def test_cross_validation_logs_parent_and_child_runs(compose, tracking_uri):
    cfg = compose(["protocol=speaker_kfold", "protocol.n_splits=3", "trainer.max_epochs=1"])
    metrics = train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("emoexp-audio")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    for name in ("test/uar", "test/uar_std", "test/uar_ci_low", "test/uar_ci_high", "val/uar_best"):
        assert name in parent.data.metrics, name
    child_uar = [c.data.metrics["test/uar"] for c in children]
    assert math.isclose(parent.data.metrics["test/uar"], sum(child_uar) / 3, rel_tol=1e-6)
    assert (
        parent.data.metrics["test/uar_ci_low"]
        <= parent.data.metrics["test/uar"]
        <= parent.data.metrics["test/uar_ci_high"]
    )
    oof = pd.read_csv(client.download_artifacts(parent.info.run_id, "predictions.csv"))
    test = oof[oof["split"] == "test"]
    assert test["id"].is_unique and len(test) == int(parent.data.metrics["data/samples"])
    assert metrics["test/uar"] == pytest.approx(parent.data.metrics["test/uar"])
