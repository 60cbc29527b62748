"""Train tiny runs, then predict with their logged models: reproduction, pyfunc, bad inputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import hydra
import mlflow
import numpy as np
import pandas as pd
import pytest

from emoexp import cliargs, predict
from emoexp.engine.samples import prepare_samples
from emoexp.train import train


def _trained_run(compose, tracking_uri: str, overrides: list[str]):
    cfg = compose(["trainer.max_epochs=1", *overrides])
    train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    [run] = client.search_runs([experiment.experiment_id])
    logged = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv"), dtype={"id": str})
    manifest = prepare_samples(cfg, hydra.utils.instantiate(cfg.label_scheme, _convert_="all"))
    return cfg, run.info.run_id, logged, manifest


def _test_inputs(logged: pd.DataFrame, manifest: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    test_ids = logged.loc[logged["split"] == "test", "id"]
    return manifest.set_index("id").loc[test_ids, columns].reset_index()


def _assert_reproduces(predicted: pd.DataFrame, logged: pd.DataFrame) -> None:
    test = logged[logged["split"] == "test"].set_index("id")
    predicted = predicted.set_index("id").loc[test.index]
    probs = [c for c in test.columns if c.startswith("prob_")]
    np.testing.assert_allclose(predicted[probs].to_numpy(float), test[probs].to_numpy(float), atol=1e-5)
    assert (predicted["prediction"] == test["prediction"]).all()


def test_predict_reproduces_a_text_run_and_serves_it_as_pyfunc(compose, tracking_uri, tmp_path, monkeypatch):
    _, run_id, logged, manifest = _trained_run(compose, tracking_uri, ["modality=text", "model=lstm"])
    inputs = _test_inputs(logged, manifest, ["text"])
    csv = tmp_path / "texts.csv"
    inputs.to_csv(csv, index=False)
    result = predict.main(
        [f"run_id={run_id}", f"input={csv}", f"output={tmp_path / 'out.csv'}", f"tracking_uri={tracking_uri}"]
    )
    _assert_reproduces(result["predictions"], logged)
    assert result["failures"] == [] and (tmp_path / "out.csv").exists()

    single = predict.main(
        [
            f"run_id={run_id}",
            "input=I am furious, this is unacceptable!",
            f"output={tmp_path / 'one.csv'}",
            f"tracking_uri={tracking_uri}",
        ]
    )
    assert len(single["predictions"]) == 1
    assert single["predictions"].filter(like="prob_").sum(axis=1).iloc[0] == pytest.approx(1.0, abs=1e-5)

    # The same model through MLflow's pyfunc interface, with its signature.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert model.metadata.get_input_schema().input_names() == ["text", "id"]
    assert "prob_anger" in model.metadata.get_output_schema().input_names()
    served = model.predict(inputs)
    _assert_reproduces(served, logged)


def test_predict_rejects_bad_runs_and_wrong_inputs(compose, tracking_uri, tmp_path, capsys):
    _, run_id, _, _ = _trained_run(compose, tracking_uri, ["modality=text", "model=lstm"])
    base = [f"tracking_uri={tracking_uri}", f"output={tmp_path / 'out.csv'}"]

    def error(*argv: str) -> str:
        assert cliargs.run_cli(predict.main, [*base, *argv]) == 2
        return capsys.readouterr().err

    assert "does not exist" in error("run_id=0123456789abcdef", "input=hello")
    wav = tmp_path / "clip.wav"
    wav.write_bytes(b"RIFF")
    assert f"is an audio input, but run {run_id} is a text model" in error(f"run_id={run_id}", f"input={wav}")
    assert "not an existing file" in error(f"run_id={run_id}", f"input={tmp_path / 'missing.png'}")
    table = tmp_path / "bad.csv"
    pd.DataFrame({"audio": ["a.wav"]}).to_csv(table, index=False)
    assert "missing ['text']" in error(f"run_id={run_id}", f"input={table}")

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_run(run_id).info.experiment_id
    bare = client.create_run(experiment, tags={"model": "lstm"}).info.run_id
    client.set_terminated(bare, "FINISHED")
    assert "has no logged model" in error(f"run_id={bare}", "input=hello")
    parent = client.create_run(experiment).info.run_id
    child = client.create_run(experiment, tags={"mlflow.parentRunId": parent, "fold": "fold0"}).info.run_id
    assert f"fold0={child}" in error(f"run_id={parent}", "input=hello")
    ensemble = client.create_run(experiment, tags={"ensemble": "true", "ensemble.members": "a,b"}).info.run_id
    assert "is an ensemble" in error(f"run_id={ensemble}", "input=hello")


def test_predict_an_audio_folder_with_bad_files_predicts_the_rest(compose, tracking_uri, tmp_path, capsys):
    _, run_id, logged, manifest = _trained_run(compose, tracking_uri, ["modality=audio", "model=lstm"])
    inputs = _test_inputs(logged, manifest, ["audio"])
    csv = tmp_path / "clips.csv"
    inputs.to_csv(csv, index=False)
    _assert_reproduces(
        predict.main(
            [
                f"run_id={run_id}",
                f"input={csv}",
                f"tracking_uri={tracking_uri}",
                f"output={tmp_path / 'all.csv'}",
            ]
        )["predictions"],
        logged,
    )
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for i, path in enumerate(inputs["audio"][:2]):
        shutil.copy(path, folder / ("sub" if i else ".") / f"good{i}.wav")
    (folder / "broken.wav").write_bytes(b"this is not audio")
    (folder / "face.png").write_bytes(b"\x89PNG")
    out = tmp_path / "folder.csv"
    argv = [f"run_id={run_id}", f"input={folder}", f"tracking_uri={tracking_uri}", f"output={out}"]
    assert cliargs.run_cli(predict.main, argv) == 0
    written = pd.read_csv(out)
    assert sorted(written["id"]) == ["good0.wav", "sub/good1.wav"]
    failures = pd.read_csv(tmp_path / "folder_failures.csv")
    assert sorted(failures["id"]) == ["broken.wav", "face.png"]
    err = capsys.readouterr().err
    assert "2 input(s) could not be predicted" in err and "cannot decode audio file" in err
    assert "is an image input" in err


def test_mlflow_models_predict_cli_serves_the_logged_model(compose, tracking_uri, tmp_path):
    _, run_id, logged, manifest = _trained_run(compose, tracking_uri, ["modality=text", "model=lstm"])
    inputs = _test_inputs(logged, manifest, ["text"])
    source, output = tmp_path / "in.csv", tmp_path / "out.json"
    inputs.to_csv(source, index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "predict",
            "-m",
            f"runs:/{run_id}/model",
            "-i",
            str(source),
            "-t",
            "csv",
            "-o",
            str(output),
            "--env-manager",
            "local",
        ],
        check=True,
        env=env,
        timeout=600,
    )
    import json

    served = pd.DataFrame(json.loads(output.read_text())["predictions"])
    _assert_reproduces(served, logged)
