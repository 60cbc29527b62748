"""``python -m emoexp.ensemble`` on runs in a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from emoexp import cliargs, ensemble
from emoexp.comparison.runs import load_predictions
from emoexp.ensembles import combine


def _options(tracking_uri: str, **kwargs) -> ensemble.EnsembleOptions:
    return ensemble.EnsembleOptions(tracking_uri=tracking_uri, **kwargs)


@pytest.mark.parametrize("method", ["soft", "weighted", "majority"])
def test_an_ensemble_of_identical_members_equals_the_member(log_run, tracking_uri, synthetic, method):
    frame = synthetic.predictions(0.6, seed=0)
    member = log_run(model="lstm", seed=0, predictions=frame)
    twin = log_run(model="lstm_copy", seed=0, predictions=frame)
    result = ensemble.run(_options(tracking_uri, runs=[member, twin], method=method))
    client = mlflow.MlflowClient(tracking_uri)
    logged = client.get_run(result["run_id"])
    original = client.get_run(member)
    predictions = load_predictions(client, result["run_id"])
    reference = frame.sort_values(["split", "id"]).reset_index(drop=True)
    assert predictions[["split", "id", "target", "prediction"]].equals(
        reference[["split", "id", "target", "prediction"]]
    )
    if method != "majority":  # majority vote outputs vote shares, not probabilities
        np.testing.assert_allclose(
            predictions.filter(like="prob_"), reference.filter(like="prob_"), atol=1e-6
        )
    for name in ("test/uar", "test/accuracy", "test/f1_macro", "val/uar", "val/uar_best"):
        assert logged.data.metrics[name] == pytest.approx(original.data.metrics[name], abs=1e-6), name
    tags = logged.data.tags
    assert tags["ensemble"] == "true" and tags["ensemble.method"] == method
    assert tags["ensemble.members"] == f"{member},{twin}" and tags["label_scheme"] == "ekman7"
    assert tags["seed"] == "0" and tags["modality"] == "audio" and "fusion" not in tags
    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"predictions.csv", "ensemble.json", "config.yaml", "reports", "plots"} <= artifacts
    assert "test/ece" in logged.data.metrics


def test_soft_voting_of_different_members_beats_them_and_late_fusion_is_tagged(log_run, tracking_uri):
    members = [
        log_run(model=model, modality=modality, seed=0, skill=0.55, experiment=f"emoexp-{modality}")
        for model, modality in (("lstm", "audio"), ("lstm", "text"), ("cnn", "visual"))
    ]
    result = ensemble.run(_options(tracking_uri, runs=members, method="soft"))
    client = mlflow.MlflowClient(tracking_uri)
    best_member = max(client.get_run(m).data.metrics["test/accuracy"] for m in members)
    assert result["ensemble"].metrics["test/accuracy"] > best_member
    tags = client.get_run(result["run_id"]).data.tags
    assert tags["modality"] == "multimodal" and tags["fusion"] == "late"
    assert tags["ensemble.member_models"] == "audio/lstm,text/lstm,visual/cnn"
    assert (
        client.get_experiment(client.get_run(result["run_id"]).info.experiment_id).name == "emoexp-ensembles"
    )


def test_stacking_never_sees_test_predictions(log_run, tracking_uri, synthetic, monkeypatch):
    frames = [synthetic.predictions(s, seed=0, salt=str(s)) for s in (0.5, 0.6, 0.7)]
    members = [log_run(model=f"m{i}", seed=0, predictions=f) for i, f in enumerate(frames)]
    seen: list[np.ndarray] = []
    original_fit = LogisticRegression.fit

    def recording_fit(self, X, y, *args, **kwargs):  # noqa: N803
        seen.append(np.asarray(X))
        return original_fit(self, X, y, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", recording_fit)
    result = ensemble.run(_options(tracking_uri, runs=members, method="stacking", log=False))
    built = result["ensemble"]
    split = built.predictions["split"].to_numpy()
    # Every row any meta-learner was fitted on is a validation row ...
    fitted = np.concatenate(built.guard.fitted_rows)
    assert len(fitted) and (split[fitted] == "val").all()
    # ... and every feature row it saw is a validation row's member log-probabilities.
    aligned = [f.sort_values(["split", "id"]).reset_index(drop=True) for f in frames]
    features = np.log(np.clip(np.stack([f.filter(like="prob_").to_numpy() for f in aligned]), 1e-7, 1))
    features = features.transpose(1, 0, 2).reshape(len(split), -1)
    test_rows = {tuple(np.round(row, 6)) for row in features[split == "test"]}
    val_rows = {tuple(np.round(row, 6)) for row in features[split == "val"]}
    assert sum(len(x) for x in seen) == len(fitted)
    for matrix in seen:
        for row in np.round(matrix, 6):
            assert tuple(row) in val_rows and tuple(row) not in test_rows
    # Changing the test labels cannot change the stacked test predictions.
    relabelled = [
        f.assign(target=np.where(f["split"] == "test", synthetic.classes[0], f["target"])) for f in frames
    ]
    others = [log_run(model=f"r{i}", seed=0, predictions=f) for i, f in enumerate(relabelled)]
    again = ensemble.run(_options(tracking_uri, runs=others, method="stacking", log=False))["ensemble"]
    test = built.predictions["split"] == "test"
    np.testing.assert_allclose(
        again.predictions.loc[test].filter(like="prob_"), built.predictions.loc[test].filter(like="prob_")
    )
    assert built.metrics["test/uar"] > 0.6


def test_the_guard_refuses_test_rows():
    guard = combine.ValidationOnlyFit()
    split = np.array(["val", "val", "test"])
    with pytest.raises(combine.TestLeakError, match="validation"):
        guard.fit(LogisticRegression(), np.zeros((3, 2)), np.array([0, 1, 0]), np.array([0, 1, 2]), split)


def test_regression_members_are_averaged_and_stacked(log_run, tracking_uri, synthetic):
    frames = [synthetic.regression(noise) for noise in (0.3, 0.5)]
    members = [log_run(model=f"reg{i}", seed=0, predictions=f) for i, f in enumerate(frames)]
    averaged = ensemble.run(_options(tracking_uri, runs=members, method="soft", log=False))["ensemble"]
    order = frames[0].sort_values(["split", "id"]).index
    expected = ((frames[0]["valence_pred"] + frames[1]["valence_pred"]) / 2).loc[order].to_numpy()
    np.testing.assert_allclose(averaged.predictions["valence_pred"], expected, atol=1e-9)
    stacked = ensemble.run(_options(tracking_uri, runs=members, method="stacking"))
    metrics = stacked["ensemble"].metrics
    assert {"test/ccc", "test/valence_ccc", "test/arousal_mae", "val/ccc_best"} <= set(metrics)
    client = mlflow.MlflowClient(tracking_uri)
    best_member = max(client.get_run(m).data.metrics["test/ccc"] for m in members)
    assert metrics["test/ccc"] > best_member - 0.05
    record = json.loads(Path(client.download_artifacts(stacked["run_id"], "ensemble.json")).read_text())
    assert record["meta_learner_fitted_on"] == "validation rows only"
    assert {"reports/regression_report.csv"} <= {
        a.path for a in client.list_artifacts(stacked["run_id"], "reports")
    }


def test_top_k_members_and_bad_member_sets(log_run, tracking_uri, synthetic, capsys):
    for skill, model in ((0.3, "a"), (0.9, "b"), (0.6, "c")):
        log_run(model=model, seed=0, skill=skill)
    result = ensemble.run(
        _options(tracking_uri, experiment=["emoexp-audio"], top_k=2, method="weighted", log=False)
    )
    assert {m.run.tags["model"] for m in result["ensemble"].members} == {"b", "c"}
    weights = result["ensemble"].combined.weights["holdout"]
    assert len(weights) == 2 and weights[0] > weights[1]  # the better member (by val UAR) weighs more

    fewer = synthetic.predictions(0.6, seed=0).iloc[5:]
    short = log_run(model="short", seed=0, predictions=fewer)
    full = log_run(model="full", seed=0)
    assert cliargs.run_cli(ensemble.main, [f"tracking_uri={tracking_uri}", f"runs={short},{full}"]) == 2
    assert "do not cover the same samples" in capsys.readouterr().err
    regression = log_run(model="va", seed=0, predictions=synthetic.regression(0.3))
    assert cliargs.run_cli(ensemble.main, [f"tracking_uri={tracking_uri}", f"runs={full},{regression}"]) == 2
    assert "different label schemes" in capsys.readouterr().err
    assert cliargs.run_cli(ensemble.main, [f"tracking_uri={tracking_uri}", "runs=nope,nada"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (
        cliargs.run_cli(ensemble.main, [f"tracking_uri={tracking_uri}", "top_k=2", "select_by=test/uar"]) == 2
    )
    assert "test split is locked" in capsys.readouterr().err
    assert (
        cliargs.run_cli(ensemble.main, [f"tracking_uri={tracking_uri}", f"runs={full}", "method=median"]) == 2
    )
    assert "choose one of" in capsys.readouterr().err


def test_ensemble_of_cross_validated_runs_works_fold_by_fold(log_cv_run, tracking_uri):
    members = [log_cv_run(model=m, skill=s) for m, s in (("a", 0.6), ("b", 0.6), ("c", 0.55))]
    result = ensemble.run(_options(tracking_uri, runs=members, method="stacking"))
    built = result["ensemble"]
    assert set(built.predictions["fold"]) == {"fold0", "fold1", "fold2"}
    # One meta-learner per fold, fit on that fold's validation rows only.
    split, fold = built.predictions["split"].to_numpy(), built.predictions["fold"].to_numpy()
    for rows in built.guard.fitted_rows:
        assert (split[rows] == "val").all() and len(set(fold[rows])) == 1
    for name in ("test/uar", "test/uar_std", "test/uar_ci_low", "val/uar_best"):
        assert name in built.metrics
    logged = mlflow.MlflowClient(tracking_uri).get_run(result["run_id"])
    assert logged.data.tags["protocol"] == "kfold"
