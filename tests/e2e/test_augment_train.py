"""End to end: ``augment=`` through train(cfg) with real Hydra composition and a real MLflow store."""

from __future__ import annotations

import mlflow
import pytest

from emoexp.config import ConfigError
from emoexp.train import train


def _runs(tracking_uri: str) -> list:
    client = mlflow.MlflowClient(tracking_uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.parametrize(
    ("overrides", "cache_tag"),
    [
        (["augment=audio", "model=lstm"], True),
        (["augment=visual", "modality=visual", "model=cnn"], False),
    ],
)
def test_augmented_run_finishes_and_records_its_augmentation(compose, tracking_uri, overrides, cache_tag):
    cfg = compose(overrides)
    metrics = train(cfg)
    [run] = _runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert 0.0 <= metrics["test/uar"] <= 1.0
    name = cfg.augment.name
    assert run.data.tags["augment"] == name
    params = run.data.params
    assert params["augment.name"] == name and params["augment.seed"] == str(cfg.seed)
    # Waveform copies report their own cache entry; the clean features keep theirs.
    assert run.data.tags["feature_cache"] in ("hit", "miss")
    assert ("augment_cache" in run.data.tags) is cache_tag
    assert "train/loss" in run.data.metrics


@pytest.mark.parametrize(("overrides", "chosen"), [([], "specaugment"), (["model=svm"], "none")])
def test_the_default_auto_records_the_option_it_chose(compose, tracking_uri, overrides, chosen):
    cfg = compose(overrides)
    assert cfg.augment.name == "auto"
    train(cfg)
    [run] = _runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["augment"] == chosen and run.data.params["augment.name"] == chosen
    assert "auto" not in {run.data.tags["augment"], run.data.params["augment.name"]}


def test_augmentation_that_does_not_fit_fails_before_any_run(compose, tracking_uri):
    with pytest.raises(ConfigError, match=r"augment=visual is for modality \['visual'\].*augment=none"):
        train(compose(["augment=visual"]))
    with pytest.raises(ConfigError, match=r"augment\.spectrogram .*model=wav2vec2.*augment=waveform"):
        train(compose(["augment=specaugment", "model=wav2vec2"]))
    with pytest.raises(ConfigError, match=r"model=svm is a scikit-learn model"):
        train(compose(["augment=audio", "model=svm"]))
    assert _runs(tracking_uri) == []
