"""Several processes on one study: local workers, a killed worker, database servers, the Hydra sweeper."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid

import optuna
import pytest
from omegaconf import OmegaConf

STUDY = "audio_lstm-embedded_audio-ekman7"


def _trial_runs(runs):
    return [r for r in runs if r.data.tags.get("optuna.role") == "trial"]


def _assert_no_duplicates(study, n_trials):
    finished = [t for t in study.trials if t.state.is_finished()]
    errors = {t.number: (t.state.name, t.user_attrs.get("error")) for t in finished}
    errors = {number: error for number, error in errors.items() if error[0] != "COMPLETE"}
    assert len(finished) == n_trials and not errors, f"trials not COMPLETE: {errors}"
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert len({tuple(sorted(t.params.items())) for t in finished}) == n_trials  # no parameters tried twice


def _ran_per_worker(tmp_path):
    logs = sorted((tmp_path / "out" / "workers").glob("*/worker.log"))
    return [int(m) for log in logs for m in re.findall(r"ran (\d+) trial", log.read_text())]


def test_two_local_workers_share_one_sqlite_study(
    tmp_path, tune_overrides, run_tune, load_study, mlflow_runs
):
    overrides = tune_overrides(
        "hydra.sweeper.n_trials=4", "tuner.n_workers=2", "tuner.final_run=false", "pruner=none"
    )
    run_tune(overrides)  # this process sets up and summarises; two worker processes run the trials

    study = load_study(f"sqlite:///{tmp_path / 'optuna.db'}", STUDY)
    _assert_no_duplicates(study, 4)
    assert sum(_ran_per_worker(tmp_path)) == 4 and len(_ran_per_worker(tmp_path)) == 2
    runs = _trial_runs(mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert sorted(int(r.data.tags["optuna.trial"]) for r in runs) == [0, 1, 2, 3]


def _wait_for(predicate, process, timeout=900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert process.poll() is None, "the tuner exited before the awaited state"
        time.sleep(1)
    raise AssertionError("timed out")


def test_killed_worker_is_resumed_without_rerunning_finished_trials(
    tmp_path, tune_overrides, start_tuner, tuner_process, load_study, mlflow_runs
):
    # The journal file storage has no native heartbeat: emoexp's own liveness check covers it.
    storage_url = f"journal:{tmp_path / 'optuna.log'}"
    overrides = tune_overrides(
        "hydra.sweeper.n_trials=3", "tuner.final_run=false", "pruner=none", storage=storage_url
    )
    process = start_tuner(overrides)

    def one_done_one_running():
        try:
            study = load_study(storage_url, STUDY)
        except (KeyError, FileNotFoundError):
            return None
        states = {t.number: t.state.name for t in study.trials}
        return study if "COMPLETE" in states.values() and "RUNNING" in states.values() else None

    try:
        study = _wait_for(one_done_one_running, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the worker dies mid-trial, without a word
        process.wait()
    before = {t.number: t for t in study.trials if t.state.name == "COMPLETE"}
    [killed] = [t.number for t in load_study(storage_url, STUDY).trials if t.state.name == "RUNNING"]

    tuner_process(overrides)  # the same command again

    study = load_study(storage_url, STUDY)
    assert study.trials[killed].state.name == "FAIL"
    [retry] = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state.name == "COMPLETE" and retry.params == study.trials[killed].params
    for number, trial in before.items():  # finished trials were not run again
        assert study.trials[number].datetime_complete == trial.datetime_complete
        assert study.trials[number].values == trial.values
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3 and len(study.trials) == 4
    runs = _trial_runs(mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    by_number = {}
    for run in runs:
        by_number.setdefault(int(run.data.tags["optuna.trial"]), []).append(run)
    assert all(len(v) == 1 for v in by_number.values())
    [killed_run] = by_number[killed]
    assert killed_run.info.status == "FAILED" and "no heartbeat" in killed_run.data.tags["error"]
    assert {t.number for t in complete} <= set(by_number)


@pytest.mark.db
@pytest.mark.parametrize("server", ["mariadb", "postgresql"])
def test_two_workers_share_a_study_on_a_database_server(
    server, database_server, tune_overrides, run_tune, tmp_path
):
    url = database_server(server)
    name = f"emoexp-test-{server}-{uuid.uuid4().hex[:8]}"  # each run its own study
    overrides = tune_overrides(
        "hydra.sweeper.n_trials=3", "tuner.n_workers=2", "tuner.final_run=false", "pruner=none",
        f"hydra.sweeper.study_name={name}",
        storage=url,
    )  # fmt: skip
    try:
        run_tune(overrides)
        study = optuna.load_study(study_name=name, storage=url)
        _assert_no_duplicates(study, 3)
        assert sum(_ran_per_worker(tmp_path)) == 3
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=url)


def test_hydra_optuna_sweeper_runs_a_three_trial_sweep(tmp_path, cache_dir, train_process, mlflow_runs):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train_process([
        "-m", "hparams_search=audio_lstm", "debug=fast", "trainer.max_epochs=2", "model.net.hidden_size=16",
        "model.net.num_layers=1", "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"paths.cache_dir={cache_dir}", f"tracking.uri={tracking_uri}",
    ])  # fmt: skip

    runs = mlflow_runs(tracking_uri)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert all("val/uar_best" in r.data.metrics for r in runs)
    assert {r.data.params["model.net.hidden_size"] for r in runs} == {"16"}  # pinned on the command line
    # train.py returned the optimised metric to the sweeper: its best is the best logged val/uar_best.
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_value == pytest.approx(max(r.data.metrics["val/uar_best"] for r in runs))
