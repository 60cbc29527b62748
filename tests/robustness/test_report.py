"""Robustness reports of real trained runs, read back from a real MLflow store.

An SVM on embedded audio functionals (fast, and its noise curve is steep) is trained with
``evaluate.robustness=true``; a small BiLSTM (the served emoexp model folder, the path
``emoexp.predict`` takes) is reported through the command line. The clean condition must
reproduce each run's logged test metric: it is the same model on the same samples.
"""

from __future__ import annotations

import itertools

import mlflow
import pandas as pd
import pytest

from emoexp import cliargs, robustness
from emoexp.train import train

NOISE = ["snr_30db", "snr_20db", "snr_10db", "snr_5db", "snr_0db"]


def _run(tracking_uri: str, experiment: str):
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run.info.run_id


def _artifacts(client, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, "robustness")}


def test_training_with_robustness_logs_a_report_whose_noise_curve_falls(compose, tracking_uri, capsys):
    cfg = compose(
        [
            "modality=audio",
            "model=svm",
            "protocol=holdout",
            "data.max_samples=420",
            "evaluate.robustness=true",
            "evaluate.robustness_families=[noise]",
        ],
    )
    train(cfg)
    client, run_id = _run(tracking_uri, cfg.tracking.experiment)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "robustness.error" not in run.data.tags
    metrics = run.data.metrics
    assert metrics["robust/clean/none/uar"] == pytest.approx(metrics["test/uar"], abs=1e-6)
    curve = [metrics["robust/clean/none/uar"], *(metrics[f"robust/noise/{lv}/uar"] for lv in NOISE)]
    # Monotone in expectation: no level better than the milder one beyond sampling noise, and
    # the loudest noise far below the clean score.
    assert all(b <= a + 0.05 for a, b in itertools.pairwise(curve)), curve
    assert curve[-1] < curve[0] - 0.15, curve
    assert {"robustness/report.csv", "robustness/noise.png", "robustness/group_gaps.csv"} <= _artifacts(
        client, run_id
    )
    table = pd.read_csv(client.download_artifacts(run_id, "robustness/report.csv"))
    assert list(table["level"]) == ["none", *NOISE] and (table["failed"] == 0).all()
    assert table["delta_uar"].iloc[-1] == pytest.approx(curve[-1] - curve[0])
    gaps = pd.read_csv(client.download_artifacts(run_id, "robustness/group_gaps.csv"))
    assert set(gaps["group_column"]) == {"group_gender"} and set(gaps["level"]) == {"none", *NOISE}
    assert gaps["excludes_zero"].dtype == bool and (gaps["ci_low"] <= gaps["ci_high"]).all()

    # The command line on the same run: another family; the same seed gives the same report.
    robustness.main([f"run_id={run_id}", "families=noise", f"tracking_uri={tracking_uri}"])
    again = pd.read_csv(client.download_artifacts(run_id, "robustness/report.csv"))
    pd.testing.assert_frame_equal(again, table)
    assert "snr_0db" in capsys.readouterr().out


def test_cli_reports_a_served_lstm_and_rejects_what_it_cannot_report(compose, tracking_uri, capsys):
    cfg = compose(["modality=audio", "model=lstm", "trainer.max_epochs=1"])
    train(cfg)
    client, run_id = _run(tracking_uri, cfg.tracking.experiment)
    report = robustness.main(
        [f"run_id={run_id}", "families=gain,phone", f"tracking_uri={tracking_uri}", "n_resamples=200"]
    )
    metrics = client.get_run(run_id).data.metrics
    assert metrics["robust/clean/none/uar"] == pytest.approx(metrics["test/uar"], abs=1e-5)
    for family in ("gain", "phone"):
        assert f"robustness/{family}.png" in _artifacts(client, run_id)
        for level in report.table.loc[report.table["family"] == family, "level"]:
            assert 0.0 <= metrics[f"robust/{family}/{level}/accuracy"] <= 1.0
    capsys.readouterr()

    def error(*argv: str) -> str:
        assert cliargs.run_cli(robustness.main, [f"tracking_uri={tracking_uri}", *argv]) == 2
        return capsys.readouterr().err

    assert "do not fit this audio model" in error(f"run_id={run_id}", "families=blur")
    assert "unknown robustness families ['nosie']" in error(f"run_id={run_id}", "families=nosie")
    assert "does not exist" in error("run_id=0123456789abcdef")
    bare = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    assert "has no config.yaml" in error(f"run_id={bare}")


def test_a_cross_validated_run_is_reported_per_fold_and_averaged_on_the_parent(compose, tracking_uri):
    cfg = compose(
        [
            "modality=audio",
            "model=svm",
            "protocol=kfold",
            "model.search.classifier.model__C=[1.0]",
            "evaluate.robustness=true",
            "evaluate.robustness_families=[gain]",
        ]
    )
    train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    [parent] = [r for r in runs if "fold" not in r.data.tags]
    folds = [r for r in runs if "fold" in r.data.tags]
    assert len(folds) == cfg.protocol.n_splits and "robustness.error" not in parent.data.tags
    for run in (parent, *folds):
        metrics = run.data.metrics
        assert metrics["robust/clean/none/uar"] == pytest.approx(metrics["test/uar"], abs=1e-6)
        assert "robustness/gain.png" in _artifacts(client, run.info.run_id)
    mean = sum(f.data.metrics["robust/gain/plus_20db/uar"] for f in folds) / len(folds)
    assert parent.data.metrics["robust/gain/plus_20db/uar"] == pytest.approx(mean, abs=1e-6)
