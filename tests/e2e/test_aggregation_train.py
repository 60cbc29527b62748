"""End to end: aggregated / soft labels, balanced weights and the dataset report in a real MLflow store."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pandas as pd

from emoexp.train import train


def _run(tracking_uri: str):
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("emoexp-audio").experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def _artifact(client, run_id: str, path: str) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run_id, path))


def test_dawid_skene_soft_labels_log_agreement_and_dataset_report(compose, tracking_uri):
    # protocol=holdout: every class in every split of the 84 samples, so the report has no zero row.
    cfg = compose(
        ["aggregation=dawid_skene", "label_scheme.target=soft", "trainer.max_epochs=1", "protocol=holdout"]
    )
    metrics = train(cfg)
    client, run = _run(tracking_uri)
    assert run.info.status == "FINISHED"
    logged = run.data.metrics
    # The embedded annotators agree moderately (individual accuracies around 0.7).
    assert 0.2 < logged["data/fleiss_kappa"] < 0.8
    assert 0.2 < logged["data/krippendorff_alpha"] < 0.8
    assert math.isclose(logged["data/fleiss_kappa"], logged["data/krippendorff_alpha"], abs_tol=0.05)
    assert run.data.params["aggregation.name"] == "dawid_skene"
    assert run.data.params["label_scheme.target"] == "soft"
    assert math.isfinite(logged["train/loss"]) and 0 <= metrics["test/uar"] <= 1

    by_split = _artifact(client, run.info.run_id, "reports/class_by_split.csv").set_index("class")
    assert by_split.loc["total", "total"] == logged["data/samples"]
    assert (by_split.drop(index="total")[["train", "val", "test"]] > 0).all().all()
    report = _artifact(client, run.info.run_id, "reports/dataset_report.csv").set_index("class")
    assert {
        "train",
        "val",
        "test",
        "total",
        "train_share",
        "group_gender=female",
        "group_gender=male",
    } <= set(report.columns)
    assert report.loc["total", ["group_gender=female", "group_gender=male"]].sum() == logged["data/samples"]
    # Evaluation truth is the Dawid-Skene label: the logged test targets cover the test split.
    predictions = _artifact(client, run.info.run_id, "predictions.csv")
    assert (predictions["split"] == "test").sum() == by_split.loc["total", "test"]


def test_balanced_class_weights_and_sampler_train_and_are_reported(compose, tracking_uri):
    cfg = compose(
        [
            "aggregation=majority",
            "label_scheme.class_weights=balanced",
            "datamodule.sampler=balanced",
            "trainer.max_epochs=1",
        ]
    )
    train(cfg)
    client, run = _run(tracking_uri)
    assert run.info.status == "FINISHED"
    report = _artifact(client, run.info.run_id, "reports/dataset_report.csv").set_index("class")
    classes = list(cfg.label_scheme.classes)
    train_counts = report.loc[classes, "train"].to_numpy(dtype=float)
    expected = train_counts.sum() / (len(classes) * train_counts)
    np.testing.assert_allclose(report.loc[classes, "loss_weight"], expected, rtol=1e-6)
    assert run.data.params["label_scheme.class_weights"] == "balanced"
