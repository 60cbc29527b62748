"""The tuner in one process on a real SQLite storage and MLflow store: failures, pruning, CV, Pareto."""

from __future__ import annotations

import math

import optuna
import pytest

from emoexp.tuning.pruning import TrialPruningCallback
from emoexp.tuning.storage import open_storage

STUDY = "audio_lstm-embedded_audio-ekman7"


def _by_role(runs, role):
    return [r for r in runs if r.data.tags.get("optuna.role") == role]


def _artifacts(client, run_id, path=""):
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_failed_trial_is_fail_the_study_goes_on_and_only_the_final_run_reads_test(
    tmp_path, tune_overrides, run_tune, load_study, mlflow_runs
):
    import mlflow

    storage_url = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Warm start with a configuration that cannot train (a dropout probability must be <= 1).
    study = optuna.create_study(study_name=STUDY, storage=open_storage(storage_url), direction="maximize")
    study.enqueue_trial({"model.net.dropout": 5.0})
    overrides = tune_overrides("hydra.sweeper.n_trials=3")

    summary = run_tune(overrides)

    study = load_study(storage_url, STUDY)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "dropout" in study.trials[0].user_attrs["error"]
    assert summary["best"][0]["number"] in (1, 2)
    runs = mlflow_runs(tracking_uri)
    trials = {int(r.data.tags["optuna.trial"]): r for r in _by_role(runs, "trial")}
    assert sorted(trials) == [0, 1, 2]
    assert trials[0].info.status == "FAILED" and trials[0].data.tags["optuna.state"] == "FAIL"
    assert "dropout" in trials[0].data.tags["error"]
    [parent] = _by_role(runs, "study")
    for number in (1, 2):
        run = trials[number]
        assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert "val/uar_best" in run.data.metrics
        assert not [k for k in run.data.metrics if k.startswith("test/")]  # test lock
        assert math.isclose(run.data.metrics["val/uar_best"], study.trials[number].value, abs_tol=1e-6)
    [final] = _by_role(runs, "final")
    assert final.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert final.data.tags["optuna.best_trial"] == str(summary["best"][0]["number"])
    assert "test/uar" in final.data.metrics and "final/test/uar" in parent.data.metrics
    assert parent.info.status == "FINISHED"
    assert parent.data.params["study_name"] == STUDY and parent.data.params["storage"] == storage_url
    assert parent.data.params["pruner"] == "MedianPruner" and parent.data.params["sampler"] == "TPESampler"
    assert parent.data.metrics["best/val/uar_best"] == pytest.approx(study.best_value)
    assert parent.data.metrics["trials/fail"] == 1 and parent.data.metrics["trials/complete"] == 2
    assert {k for k in parent.data.tags if k.startswith("best.")} >= {
        "best.optimizer.lr",
        "best.model.net.dropout",
    }
    artifacts = _artifacts(mlflow.MlflowClient(tracking_uri), parent.info.run_id)
    for name in ("trials.csv", "best_trials.json", "plots/optimization_history.png",
                 "plots/param_importances.png", "plots/parallel_coordinate.png"):  # fmt: skip
        assert name in artifacts, artifacts

    # The same command again: nothing left to run, and the best configuration is not tested twice.
    run_tune(overrides)
    assert len(load_study(storage_url, STUDY).trials) == 3
    runs = mlflow_runs(tracking_uri)
    assert len(_by_role(runs, "final")) == 1 and len(_by_role(runs, "trial")) == 3


def test_pruned_trials_are_pruned_in_optuna_and_in_mlflow(
    tmp_path, tune_overrides, run_tune, load_study, mlflow_runs
):
    # A pruner that always prunes once its warm-up epoch is over: deterministic PRUNED trials.
    overrides = tune_overrides(
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=3",
        "trainer.num_sanity_val_steps=2",  # sanity validation must not be reported
        "pruner=none",
        "pruner._target_=optuna.pruners.ThresholdPruner",
        "+pruner.upper=-1.0",
        "+pruner.n_warmup_steps=1",
    )
    summary = run_tune(overrides)

    study = load_study(f"sqlite:///{tmp_path / 'optuna.db'}", STUDY)
    for trial in study.trials:
        assert trial.state.name == "PRUNED"
        assert sorted(trial.intermediate_values) == [0, 1]  # one report per validation epoch
        assert trial.user_attrs["epochs"] == 2
        assert "(worker 0)" in trial.user_attrs["worker"]
    assert summary["best"] == [] and summary["counts"]["pruned"] == 2
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trials = _by_role(mlflow_runs(tracking_uri), "trial")
    assert len(trials) == 2
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    for run in trials:
        assert run.data.tags["optuna.state"] == "PRUNED" and run.info.status == "FINISHED"
        assert "error" not in run.data.tags
        assert len(client.get_metric_history(run.info.run_id, "val/uar")) == 2  # stopped before epoch 3
    assert not _by_role(mlflow_runs(tracking_uri), "final")  # nothing completed: nothing tested


def test_pruning_callback_is_optuna_integrations_lightning_callback():
    from lightning.pytorch import Callback
    from optuna_integration import PyTorchLightningPruningCallback

    assert issubclass(PyTorchLightningPruningCallback, Callback)  # the unified `lightning` package
    assert issubclass(TrialPruningCallback, PyTorchLightningPruningCallback)


def _one_cross_validated_trial(tmp_path, tune_overrides, run_tune, load_study, *extra: str):
    """Tune one trial under k-fold cross-validation (``extra`` overrides on top); that trial."""
    run_tune(tune_overrides("hydra.sweeper.n_trials=1", "protocol=kfold", "tuner.final_run=false", *extra))
    [trial] = load_study(f"sqlite:///{tmp_path / 'optuna.db'}", STUDY).trials
    return trial


def test_cross_validated_trial_reports_the_running_mean_over_folds(
    tmp_path, tune_overrides, run_tune, load_study, mlflow_runs
):
    trial = _one_cross_validated_trial(
        tmp_path, tune_overrides, run_tune, load_study, "protocol.n_splits=2", "pruner=none"
    )
    assert trial.state.name == "COMPLETE"
    steps = trial.intermediate_values
    assert sorted(steps) == [0, 1, 2, 3]  # fold * max_epochs + epoch
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [study_run] = _by_role(runs, "study")
    # Fold runs inherit the trial's tags; the trial's own run is the study run's child.
    [trial_run] = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study_run.info.run_id]
    folds = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == trial_run.info.run_id),
        key=lambda r: r.data.tags["fold"],
    )  # fmt: skip
    best = [[m.value for m in client.get_metric_history(f.info.run_id, "val/uar_best")] for f in folds]
    assert [steps[0], steps[1]] == pytest.approx(best[0])  # fold 0: its own best so far
    assert [steps[2], steps[3]] == pytest.approx([(best[0][-1] + v) / 2 for v in best[1]])  # running mean
    assert steps[3] == pytest.approx(trial.value)  # the mean over folds is the trial's value


def test_cross_validated_trial_pruned_by_fold_reports_fold_means_and_stops_between_folds(
    tmp_path, tune_overrides, run_tune, load_study
):
    # tuner.cv_pruning=fold: one report per finished fold (the mean so far, at step 1, 2, ...),
    # and the pruner decides before the next fold. A pruner that prunes every reported value
    # stops each trial after its first fold, never inside one.
    trial = _one_cross_validated_trial(
        tmp_path,
        tune_overrides,
        run_tune,
        load_study,
        "protocol.n_splits=3",
        "trainer.max_epochs=2",
        "tuner.cv_pruning=fold",
        "pruner=none",
        "pruner._target_=optuna.pruners.ThresholdPruner",
        "+pruner.upper=-1.0",
    )
    assert trial.state.name == "PRUNED"
    assert sorted(trial.intermediate_values) == [1]  # one fold finished, no per-epoch reports
    assert trial.user_attrs["epochs"] == 2  # the whole first fold, nothing of the second


def test_cross_validated_trial_by_fold_completes_with_one_report_per_fold(
    tmp_path, tune_overrides, run_tune, load_study
):
    trial = _one_cross_validated_trial(
        tmp_path, tune_overrides, run_tune, load_study, "protocol.n_splits=2", "tuner.cv_pruning=fold"
    )
    assert trial.state.name == "COMPLETE"
    steps = trial.intermediate_values
    assert sorted(steps) == [1, 2]  # after fold 0, after fold 1
    assert steps[2] == pytest.approx(trial.value)  # the mean over both folds is the trial's value


def test_an_unknown_cv_pruning_mode_is_refused_naming_the_key(tmp_path, tune_overrides, run_tune):
    from emoexp.config import ConfigError

    overrides = tune_overrides("hydra.sweeper.n_trials=1", "tuner.cv_pruning=folds")
    refused = r"tuner.cv_pruning='folds' is unknown; choose one of \['epoch', 'fold'\]"
    with pytest.raises(ConfigError, match=refused):
        run_tune(overrides)


def test_multi_objective_study_reports_the_pareto_front(
    tmp_path, tune_overrides, run_tune, load_study, mlflow_runs
):
    import mlflow

    overrides = tune_overrides(
        "hydra.sweeper.n_trials=3", "tuner.final_run=false", search="audio_lstm_pareto"
    )
    summary = run_tune(overrides)

    study = load_study(f"sqlite:///{tmp_path / 'optuna.db'}", "audio_lstm_pareto-embedded_audio-ekman7")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val/uar_best", "model/parameters"]
    assert all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in study.trials)
    assert {b["number"] for b in summary["best"]} == {t.number for t in study.best_trials}
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = mlflow_runs(tracking_uri)
    for run in _by_role(runs, "trial"):
        number = int(run.data.tags["optuna.trial"])
        assert study.trials[number].values[1] == run.data.metrics["model/parameters"]
    [parent] = _by_role(runs, "study")
    artifacts = _artifacts(mlflow.MlflowClient(tracking_uri), parent.info.run_id)
    assert {"pareto_front.csv", "plots/pareto_front.png", "best_trials.json"} <= artifacts
