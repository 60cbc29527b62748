"""MLflow conventions on real runs: the dataset input, the description, the Model Registry."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from emoexp import predict
from emoexp.engine.card import CARD_ARTIFACT
from emoexp.engine.conventions import DESCRIPTION_TAG, REGISTERED_TAG
from emoexp.train import train


def _runs(tracking_uri: str) -> list:
    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, order_by=["attributes.start_time ASC"])


def test_a_run_has_its_dataset_input_and_a_one_line_description(compose, tracking_uri):
    train(compose(["model=svm"]))
    [run] = _runs(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    [entry] = run.inputs.dataset_inputs
    card = json.loads(Path(client.download_artifacts(run.info.run_id, CARD_ARTIFACT)).read_text())
    assert entry.dataset.name == "embedded_audio"
    assert entry.dataset.digest == card["definition"]["corpus"]["samples_fingerprint"]
    assert json.loads(entry.dataset.source) == {"uri": "emoexp.embedded/embedded_audio"}
    assert {t.key: t.value for t in entry.tags} == {"mlflow.data.context": "training"}
    columns = {c["name"] for c in json.loads(entry.dataset.schema)["mlflow_colspec"]}
    assert {"id", "speaker", "audio", "emotion"} <= columns
    assert json.loads(entry.dataset.profile)["num_rows"] == int(run.data.metrics["data/samples"])
    note = run.data.tags[DESCRIPTION_TAG]
    assert note.startswith("svm on embedded_audio (ekman7, speaker_holdout, seed 42): test/uar ")
    assert f"{run.data.metrics['test/uar']:.3f} [" in note


def test_register_model_makes_a_version_that_predict_and_init_from_take(compose, tracking_uri, tmp_path):
    overrides = ["model=lstm", "trainer.max_epochs=1", "tracking.register_model=emo-lstm"]
    train(compose(overrides))
    train(compose([*overrides, "seed=7"]))
    first, second = _runs(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    versions = {str(v.version): v for v in client.search_model_versions("name = 'emo-lstm'")}
    assert set(versions) == {"1", "2"} and versions["1"].run_id == first.info.run_id
    assert float(versions["2"].tags["test/uar"]) == pytest.approx(second.data.metrics["test/uar"], abs=1e-5)
    assert second.data.tags[REGISTERED_TAG] == "models:/emo-lstm/2"

    logged = client.download_artifacts(first.info.run_id, "predictions.csv")
    clip = next(p for p in Path(compose([]).paths.cache_dir).rglob("*.wav"))
    by_version = predict.main(
        [
            "run_id=models:/emo-lstm/1",
            f"input={clip}",
            f"output={tmp_path / 'a.csv'}",
            f"tracking_uri={tracking_uri}",
        ]
    )
    by_run = predict.main(
        [
            f"run_id={first.info.run_id}",
            f"input={clip}",
            f"output={tmp_path / 'b.csv'}",
            f"tracking_uri={tracking_uri}",
        ]
    )
    assert by_version["predictions"].filter(like="prob_").equals(by_run["predictions"].filter(like="prob_"))
    assert Path(logged).exists()

    train(compose(["model=lstm", "trainer.max_epochs=1", "init_from=models:/emo-lstm/2", "seed=3"]))
    child = _runs(tracking_uri)[-1]
    assert child.data.tags["init_from.run_id"] == second.info.run_id
    with pytest.raises(predict.ModelNotFoundError, match="models:/emo-lstm/9"):
        predict.main(["run_id=models:/emo-lstm/9", f"input={clip}", f"tracking_uri={tracking_uri}"])
