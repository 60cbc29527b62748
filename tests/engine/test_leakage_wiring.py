"""The leakage guard runs before a run is recorded: its findings go to the run, ``fail`` creates none."""

from __future__ import annotations

import mlflow
import pytest

from emoexp.data.leakage import LeakageError
from emoexp.train import train


def _text_corpus(tmp_path, copies: int):
    rows = ["text,label"]
    for i in range(30):
        for emotion in ("anger", "joy", "sadness"):
            rows += [f"item {i} of a long sentence about feeling {emotion} today,{emotion}"] * copies
    table = tmp_path / "texts.csv"
    table.write_text("\n".join(rows) + "\n")
    return ["data=text_table", f"data.root={table}", "modality=text", "model=svm", "label_scheme=native"]


def test_duplicates_across_splits_are_reported_on_the_run(compose, tracking_uri, tmp_path):
    train(compose(_text_corpus(tmp_path, copies=2)))
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("emoexp-text").experiment_id])
    assert run.data.metrics["leakage/exact_duplicates"] > 0
    assert "reports/leakage.csv" in [a.path for a in client.list_artifacts(run.info.run_id, "reports")]


def test_leakage_fail_stops_before_any_run(compose, tracking_uri, tmp_path):
    with pytest.raises(LeakageError, match="leakage=drop"):
        train(compose([*_text_corpus(tmp_path, copies=2), "leakage=fail"]))
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("emoexp-text")
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []
