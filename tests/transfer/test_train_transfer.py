"""Transfer learning through ``train(cfg)`` into a real MLflow store: MiniLM, feature cache, init_from."""

from __future__ import annotations

import math
import re
import tempfile

import mlflow
import pytest
import torch

from emoexp.models.pretrained import PretrainedWeightsError
from emoexp.resolvers import minilm_path
from emoexp.tracking.lineage import InitFromError, download_checkpoint, lineage_tags
from emoexp.train import train


def _runs(tracking_uri: str, experiment: str):
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]) if found else []
    return client, runs


def _checkpoint(client, run_id: str) -> dict:
    # runs sharing the test's output folder log best.ckpt, best-v1.ckpt, ...
    with tempfile.TemporaryDirectory() as tmp:
        return torch.load(download_checkpoint(client, run_id, tmp), map_location="cpu", weights_only=True)


def _optimised_parameter_count(checkpoint: dict) -> int:
    return sum(len(group["params"]) for group in checkpoint["optimizer_states"][0]["param_groups"])


def test_minilm_finetunes_end_to_end(compose, tracking_uri):
    cfg = compose(["modality=text", "model=minilm", "transfer=finetune", "trainer.max_epochs=1"])
    assert cfg.model.net.pretrained == minilm_path()
    metrics = train(cfg)
    client, [run] = _runs(tracking_uri, "emoexp-text")
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == "minilm" and run.data.tags["transfer"] == "finetune"
    assert 0.0 <= metrics["test/uar"] <= 1.0
    assert math.isclose(run.data.metrics["test/f1_macro"], metrics["test/f1_macro"], rel_tol=1e-6)
    assert run.data.params["model.net.pretrained"] == minilm_path()
    checkpoint = _checkpoint(client, run.info.run_id)
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    # discriminative learning rates: head at optimizer.lr, the whole encoder at 0.1x
    assert [g["lr"] for g in groups] == pytest.approx([cfg.optimizer.lr, 0.1 * cfg.optimizer.lr])


def test_frozen_minilm_really_freezes_and_reuses_cached_features(compose, tracking_uri, tmp_path):
    from safetensors.torch import load_file

    overrides = [
        "modality=text",
        "model=minilm",
        "transfer=frozen",
        "trainer.max_epochs=1",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    first = train(compose(overrides))
    second = train(compose(overrides))
    client, runs = _runs(tracking_uri, "emoexp-text")
    assert [r.data.tags["backbone_feature_cache"] for r in runs] == ["miss", "hit"]
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 1
    assert first["test/uar"] == pytest.approx(second["test/uar"])
    checkpoint = _checkpoint(client, runs[0].info.run_id)
    reference = load_file(f"{minilm_path()}/model.safetensors")
    state = checkpoint["state_dict"]
    weights = [name for name in reference if f"net.encoder.{name}" in state]
    assert len(weights) == len(reference) - 1  # all but the position_ids buffer the model recomputes
    for name in weights:
        assert torch.equal(state[f"net.encoder.{name}"], reference[name]), name
    # only the head (weight and bias) was ever in the optimiser
    assert _optimised_parameter_count(checkpoint) == 2


def test_frozen_speech_encoder_with_layer_pooling_caches_features(
    compose, tracking_uri, tmp_path, tiny_wav2vec2_dir
):
    overrides = [
        "modality=audio",
        "model=wav2vec2",
        f"model.net.pretrained={tiny_wav2vec2_dir}",
        "transfer=frozen",
        "trainer.max_epochs=1",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    train(compose(overrides))
    train(compose(overrides))
    client, runs = _runs(tracking_uri, "emoexp-audio")
    assert [r.data.tags["backbone_feature_cache"] for r in runs] == ["miss", "hit"]
    checkpoint = _checkpoint(client, runs[0].info.run_id)
    # head and the learned layer weights; the encoder's weights are the checkpoint's
    assert _optimised_parameter_count(checkpoint) == 3
    assert checkpoint["state_dict"]["net.layer_weights"].shape == (3,)


@pytest.fixture
def source_run(compose, tracking_uri) -> str:
    """A finished BiLSTM run on embedded audio (the transfer source)."""
    train(compose(["trainer.max_epochs=1", "tracking.experiment=source"]))
    _, [run] = _runs(tracking_uri, "source")
    return run.info.run_id


def test_init_from_starts_from_the_source_weights_and_records_lineage(compose, tracking_uri, source_run):
    cfg = compose(
        [
            f"init_from={source_run}",
            "transfer=frozen",
            "label_scheme=ekman6",  # another head width: the head starts fresh
            "data.corpus.seed=1",
            "trainer.max_epochs=1",
            "tracking.experiment=target",
        ]
    )
    train(cfg)
    client, [target] = _runs(tracking_uri, "target")
    tags = target.data.tags
    assert tags["init_from.run_id"] == source_run
    assert tags["init_from.corpus"] == "embedded_audio" and tags["init_from.model"] == "lstm"
    assert tags["init_from.label_scheme"] == "ekman7"
    source_state = _checkpoint(client, source_run)["state_dict"]
    target_state = _checkpoint(client, target.info.run_id)["state_dict"]
    lstm = [k for k in source_state if k.startswith("net.lstm.")]
    assert lstm and all(torch.equal(source_state[k], target_state[k]) for k in lstm)
    assert source_state["net.head.weight"].shape[0] == 7 and target_state["net.head.weight"].shape[0] == 6


def test_init_from_a_registered_model_version(tracking_uri, source_run):
    client = mlflow.MlflowClient(tracking_uri)
    client.create_registered_model("audio-source")
    client.create_model_version("audio-source", f"runs:/{source_run}/checkpoints", run_id=source_run)
    tags = lineage_tags(client, "models:/audio-source/1")
    assert tags["init_from.run_id"] == source_run and tags["init_from.uri"] == "models:/audio-source/1"
    with pytest.raises(InitFromError, match=re.escape("models:/audio-source/7")):
        lineage_tags(client, "models:/audio-source/7")


def test_init_from_unknown_run_fails_before_any_run_exists(compose, tracking_uri):
    with pytest.raises(InitFromError, match=re.escape("init_from='0123456789abcdef' names no run")):
        train(compose(["init_from=0123456789abcdef", "tracking.experiment=target"]))
    _, runs = _runs(tracking_uri, "target")
    assert runs == []


def test_init_from_another_architecture_fails_the_run_clearly(compose, tracking_uri, source_run):
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"checkpoints/best.ckpt of run {source_run}")):
        train(compose([f"init_from={source_run}", "model=cnn", "tracking.experiment=target"]))
    _, [run] = _runs(tracking_uri, "target")
    assert run.info.status == "FAILED" and "do not fit" in run.data.tags["error"]


def test_init_from_a_run_without_checkpoint(compose, tracking_uri):
    train(compose(["trainer.max_epochs=1", "tracking.experiment=source", "tracking.log_checkpoint=false"]))
    _, [source] = _runs(tracking_uri, "source")
    with pytest.raises(
        InitFromError, match=re.escape(f"run {source.info.run_id} has no checkpoints/best.ckpt")
    ):
        train(compose([f"init_from={source.info.run_id}", "tracking.experiment=target"]))
