"""tracking.privacy=pseudonymise: no speaker id, sample id, raw text or data path in the whole record.

The record is scanned as a reader of the store would see it: every param, tag, metric name and run
name, every artifact of every run (checkpoints and zipped files included), the logged models'
files, and the attributes of a tuning study. The MLflow store itself lives in its own folder
(its location is MLflow's own metadata, chosen by whoever created the store).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from emoexp.tracking.privacy import Pseudonymiser, load_salt
from emoexp.train import train

EMOTIONS = ["anger", "happiness", "sadness", "neutral"]
WORDS = {"anger": "furious rage", "happiness": "joyful glad", "sadness": "tearful gloomy", "neutral": "plain"}


@pytest.fixture
def secret_corpus(tmp_path: Path) -> Path:
    """A text CSV whose speakers, ids and sentences carry markers the scan looks for."""
    folder = tmp_path / "SecretCorpusFolder"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = [
        {
            "text": f"Secretsentence{i} I feel {WORDS[EMOTIONS[i % 4]]} {rng.integers(10**6)}",
            "label": EMOTIONS[i % 4],
            "who": f"Speakername{i % 10}",
            "uid": f"Secretid{i}",
        }
        for i in range(120)
    ]
    pd.DataFrame(rows).to_csv(folder / "texts.csv", index=False)
    return folder / "texts.csv"


def _overrides(tmp_path: Path, corpus: Path, *extra: str) -> list[str]:
    return [
        "modality=text",
        "data=text_table",
        f"data.root={corpus}",
        "data.corpus.speaker_column=who",
        "data.corpus.id_column=uid",
        "label_scheme=native",
        f"paths.output_dir={tmp_path / 'SecretOutputs'}",
        f"tracking.uri=sqlite:///{tmp_path / 'store' / 'mlflow.db'}",
        *extra,
    ]


def _texts_of(path: Path) -> list[str]:
    texts = [path.read_bytes().decode("latin-1")]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            texts += [archive.read(name).decode("latin-1") for name in archive.namelist()]
    return texts


def _scan(uri: str, markers: list[str], download: Path) -> set[tuple[str, str]]:
    """Every (where, marker) found in the store's runs, artifacts and logged models."""
    client = mlflow.MlflowClient(uri)
    found: set[tuple[str, str]] = set()

    def check(where: str, *texts: str) -> None:
        found.update((where, marker) for marker in markers for text in texts if marker in text)

    experiments = [e.experiment_id for e in client.search_experiments()]
    for run in client.search_runs(experiments):
        run_id = run.info.run_id
        check(f"{run_id} record", json.dumps(run.data.params), json.dumps(run.data.tags), run.info.run_name)
        check(f"{run_id} metric names", " ".join(run.data.metrics))
        for entry in run.inputs.dataset_inputs:
            dataset = entry.dataset
            check(
                f"{run_id} dataset input",
                dataset.name,
                dataset.source,
                dataset.schema or "",
                dataset.profile or "",
            )
        local = Path(client.download_artifacts(run_id, "", dst_path=str(download / run_id)))
        for path in (p for p in local.rglob("*") if p.is_file()):
            check(f"{run_id}/{path.relative_to(local)}", *_texts_of(path))
    for model in client.search_logged_models(experiments):
        local = Path(
            mlflow.artifacts.download_artifacts(
                model.artifact_location, dst_path=str(download / model.model_id)
            )
        )
        for path in (p for p in local.rglob("*") if p.is_file()):
            check(f"model {model.model_id}/{path.relative_to(local)}", *_texts_of(path))
    return found


MARKERS = ["Speakername", "Secretid", "Secretsentence", "SecretCorpusFolder", "SecretOutputs"]


def test_a_pseudonymised_record_holds_no_speaker_id_text_or_path(compose, tmp_path, secret_corpus, cache_dir):
    for model in ("svm", "lstm"):
        train(
            compose([*_overrides(tmp_path, secret_corpus, "tracking.privacy=pseudonymise"), f"model={model}"])
        )
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    assert _scan(uri, [*MARKERS, str(cache_dir)], tmp_path / "download") == set()

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 2
    predictions = pd.read_csv(client.download_artifacts(runs[0].info.run_id, "predictions.csv"))
    assert (
        predictions["speaker"].str.startswith("spk-").all() and predictions["id"].str.startswith("id-").all()
    )
    # The same salt gives the same pseudonyms: two runs' predictions still pair sample by sample.
    other = pd.read_csv(client.download_artifacts(runs[1].info.run_id, "predictions.csv"))
    assert set(predictions["id"]) == set(other["id"])
    assert runs[0].data.params["data.root"].startswith("path-")
    assert json.loads(runs[0].inputs.dataset_inputs[0].dataset.source)["uri"].startswith("path-")


def test_the_default_records_what_the_docs_say_and_the_scan_finds_it(compose, tmp_path, secret_corpus):
    train(compose([*_overrides(tmp_path, secret_corpus), "model=svm"]))
    found = {
        marker
        for _, marker in _scan(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", MARKERS, tmp_path / "dl")
    }
    # Speaker and sample ids (predictions.csv) and paths (params, the dataset source) are recorded
    # by default; texts are not.
    assert found == {"Speakername", "Secretid", "SecretCorpusFolder", "SecretOutputs"}


def _tune(overrides: list[str]) -> None:
    """Run the tuner in this process, as ``python -m emoexp.tune`` would."""
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR
    from emoexp.tuning import tune

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        tune(compose(config_name="tune", overrides=overrides, return_hydra_config=True), overrides)


def test_a_tuning_study_stores_no_path_either(tmp_path, secret_corpus, cache_dir):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _tune(
        [
            "hparams_search=svm",
            *_overrides(tmp_path, secret_corpus, "tracking.privacy=pseudonymise"),
            f"paths.cache_dir={cache_dir}",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.n_trials=2",
            "model.preprocessing.k_best=all",
        ]
    )
    study = optuna.load_study(study_name=None, storage=storage)
    assert len(study.trials) == 2 and all(t.user_attrs.get("overrides") for t in study.trials)
    assert {t.state.name for t in study.trials} == {"COMPLETE"}  # k_best=all keeps every feature
    attributes = json.dumps([study.user_attrs, [t.user_attrs for t in study.trials]], default=str)
    assert not [m for m in MARKERS if m in attributes]
    assert _scan(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", MARKERS, tmp_path / "dl") == set()


def test_path_pseudonyms_are_stable_and_resolvable_on_this_machine_only(tmp_path):
    salt = load_salt(None, tmp_path / "cache")
    assert (
        salt == load_salt(None, tmp_path / "cache")
        and (tmp_path / "cache" / "privacy_salt").stat().st_mode & 0o077 == 0
    )
    index = tmp_path / "cache" / "privacy_paths.json"
    privacy = Pseudonymiser(salt, [str(tmp_path / "data" / "x.csv")], index=index)
    token = privacy.value(str(tmp_path / "outputs"))
    assert token.startswith("path-") and privacy.reveal(token) == str(tmp_path / "outputs")
    assert Pseudonymiser(b"another salt").value(str(tmp_path / "outputs")) != token
    assert str(tmp_path / "data") not in privacy.redact(f"FileNotFoundError: {tmp_path / 'data' / 'y.wav'}")
