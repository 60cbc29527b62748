"""emoexp's tuner on a real SLURM cluster: an ``sbatch --array`` of workers on one PostgreSQL study,
logging over HTTP to a real MLflow tracking server (docs/tuning.md, docs/scaling.md): the sweep, a
tracking server restarted mid-sweep, and a worker requeued (``scontrol requeue``) mid-trial."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pytest
import yaml

from emoexp.tuning.tracking import PARENT_ATTR
from emoexp.tuning.tuner import FINAL_ATTR, RESUME_ATTR

ROOT = Path(__file__).resolve().parents[2]
TUNE_ARRAY = ROOT / "scripts" / "slurm" / "tune_array.sbatch"
PROBE_DIR = ROOT / "tests" / "scale"  # step_probe.StepProbe: slower training steps
N_TRIALS = 4
# Tiny one-thread trials: two epochs of a pinned small LSTM on the debug subset.
FAST = [
    "hparams_search=audio_lstm",
    "debug=fast",
    "trainer.max_epochs=2",
    "model.net.hidden_size=16",
    "model.net.num_layers=1",
    "model.features.audio.n_mfcc=20",
    "tuner.heartbeat_interval=2",
    "tuner.grace_period=60",
    "tuner.final_run=false",
    "pruner=none",
]


def _setup(args: list[str], storage: str, tracking_uri: str, folder: Path, env: dict[str, str]) -> None:
    """Step 1 of docs/tuning.md's cluster recipe, on the 'login node': create and queue the study."""
    result = subprocess.run(
        [sys.executable, "-m", "emoexp.tune", *args, "tuner.role=setup", f"hydra.sweeper.storage={storage}",
         f"tracking.uri={tracking_uri}", f"hydra.run.dir={folder / 'setup'}"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _storage(url: str) -> optuna.storages.RDBStorage:
    """One storage (one connection pool) for a test's many reads of its study."""
    return optuna.storages.RDBStorage(url)


def _logs(folder: Path) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted((folder / "logs").glob("*.out")))


def _trial_runs(client: mlflow.MlflowClient, parent_id: str) -> dict[int, list]:
    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
        max_results=1000,
    )
    by_number: dict[int, list] = {}
    for run in children:
        if run.data.tags.get("optuna.role") != "trial":
            continue  # the final run
        by_number.setdefault(int(run.data.tags["optuna.trial"]), []).append(run)
    return by_number


def test_an_sbatch_array_of_two_workers_runs_one_study_with_one_mlflow_run_per_trial(
    slurm, mlflow_server, fresh_database, tmp_path, cache_dir
):
    storage = fresh_database("optuna")
    study_name = f"cluster-{uuid.uuid4().hex[:8]}"
    args = [*FAST, f"hydra.sweeper.n_trials={N_TRIALS}", f"paths.cache_dir={cache_dir}"]
    args.append(f"hydra.sweeper.study_name={study_name}")
    env = slurm.env(EMOEXP_STORAGE=storage, EMOEXP_TRACKING=mlflow_server, ARGS=" ".join(args))
    _setup(args, storage, mlflow_server, tmp_path, env)
    (tmp_path / "logs").mkdir()  # the script's --output folder: SLURM does not create it

    job = slurm.submit(TUNE_ARRAY, options=["--array=0-1", *slurm.cpu_job], cwd=tmp_path, env=env)
    slurm.wait(job, timeout=600)

    tasks = slurm.records(job)
    assert len(tasks) == 2, tasks
    assert all(t["JobState"] == "COMPLETED" and t["ExitCode"] == "0:0" for t in tasks), _logs(tmp_path)
    ran = [int(n) for n in re.findall(r"ran (\d+) trial\(s\)", _logs(tmp_path))]
    assert len(ran) == 2 and sum(ran) == N_TRIALS, _logs(tmp_path)  # every trial ran once, in one worker

    study = optuna.load_study(study_name=study_name, storage=storage)
    errors = {t.number: t.user_attrs.get("error") for t in study.trials if t.state.name != "COMPLETE"}
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * N_TRIALS, (errors, _logs(tmp_path)[-4000:])

    client = mlflow.MlflowClient(mlflow_server)
    parent_id = study.user_attrs[PARENT_ATTR]
    parent = client.get_run(parent_id)
    assert parent.data.tags["optuna.role"] == "study" and parent.info.run_name == study_name
    by_number = _trial_runs(client, parent_id)
    assert sorted(by_number) == list(range(N_TRIALS))
    for trial in study.trials:
        [run] = by_number[trial.number]  # exactly one MLflow run per trial, a child of the study's run
        assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.metrics["val/uar_best"] == trial.value
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the tracking server
        config = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text())
        # the artifact holds the trial's own configuration
        assert config["optimizer"]["lr"] == pytest.approx(trial.params["optimizer.lr"])


def _wait_until_both_workers_train(
    slurm, job: str, client: mlflow.MlflowClient, study_name: str, storage: Any, folder: Path
) -> None:
    """Wait until both trials are RUNNING and their MLflow runs exist (past connect: training).

    ``storage`` is one storage object for the whole wait: a URL would open a connection pool per poll.
    """
    deadline = time.monotonic() + 300
    while True:
        with contextlib.suppress(KeyError):  # KeyError: no study or parent run yet
            study = optuna.load_study(study_name=study_name, storage=storage)
            running = [t for t in study.trials if t.state.name == "RUNNING"]
            if len(running) == 2 and len(_trial_runs(client, study.user_attrs[PARENT_ATTR])) == 2:
                return
        assert slurm.states(job), f"the workers ended too early:\n{_logs(folder)}"
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job], timeout=30)
            pytest.fail(f"the two workers were not training within 300 s:\n{_logs(folder)}")
        time.sleep(0.5)


def test_a_tracking_server_restarted_mid_sweep_loses_nothing_the_workers_wrote(
    slurm, mlflow_service, mlflow_server, fresh_database, tmp_path, cache_dir
):
    storage = fresh_database("optuna")
    study_name = f"cluster-restart-{uuid.uuid4().hex[:8]}"
    slow = [  # 2 s per training step, 8 steps: both trials are training when the server goes
        "+callbacks.probe._target_=step_probe.StepProbe",
        f"+callbacks.probe.marker_dir={tmp_path / 'markers'}",
        "+callbacks.probe.seconds=2",
    ]
    args = [*FAST, *slow, "hydra.sweeper.n_trials=2", f"paths.cache_dir={cache_dir}"]
    args.append(f"hydra.sweeper.study_name={study_name}")
    env = slurm.env(
        EMOEXP_STORAGE=storage, EMOEXP_TRACKING=mlflow_server, ARGS=" ".join(args), PYTHONPATH=str(PROBE_DIR)
    )
    _setup(args, storage, mlflow_server, tmp_path, env)
    (tmp_path / "logs").mkdir()
    job = slurm.submit(TUNE_ARRAY, options=["--array=0-1", *slurm.cpu_job], cwd=tmp_path, env=env)
    client = mlflow.MlflowClient(mlflow_server)

    _wait_until_both_workers_train(slurm, job, client, study_name, _storage(storage), tmp_path)
    mlflow_service.stop()  # the workers go on training; their writes wait (bounded retries)
    time.sleep(5)
    mlflow_service.start()  # the same port, database and artifact folder
    slurm.wait(job, timeout=600)

    assert all(t["ExitCode"] == "0:0" for t in slurm.records(job)), _logs(tmp_path)
    assert "Connection refused" in _logs(tmp_path)  # the workers did write during the outage
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2, _logs(tmp_path)
    parent_id = study.user_attrs[PARENT_ATTR]
    by_number = _trial_runs(client, parent_id)
    for trial in study.trials:
        [run] = by_number[trial.number]
        assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.metrics["val/uar_best"] == trial.value
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/uar")]
        assert len(steps) == len(set(steps)) == 2  # both epochs, each once
    progress = sorted(m.step for m in client.get_metric_history(parent_id, "trials/finished"))
    assert progress == [0, 1]  # the study's per-trial progress on its parent run


def _history(client: mlflow.MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _wait_for_first_epoch(
    slurm, job: str, client: mlflow.MlflowClient, study_name: str, storage: Any, folder: Path
) -> str:
    """Poll the tracking server until trial 0's run has logged its first epoch; return the run's id.

    Training steps take 0.5 s each (the probe), so the run is then inside its second epoch.
    ``storage`` is one storage object for the whole wait: a URL would open a connection pool per poll.
    """
    deadline = time.monotonic() + 300
    while True:
        with contextlib.suppress(KeyError):  # no study or parent run yet
            study = optuna.load_study(study_name=study_name, storage=storage)
            [run] = _trial_runs(client, study.user_attrs[PARENT_ATTR]).get(0, [None])
            if run is not None and _history(client, run.info.run_id, "val/uar"):
                return run.info.run_id
        assert slurm.states(job), f"the worker ended before trial 0 logged an epoch:\n{_logs(folder)}"
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job], timeout=30)
            pytest.fail(f"trial 0 logged no epoch within 300 s:\n{_logs(folder)}")
        time.sleep(0.5)


def test_a_requeued_worker_resumes_its_trial_in_the_same_mlflow_run_and_one_final_run_follows(
    slurm, mlflow_server, fresh_database, tmp_path, cache_dir
):
    """``scontrol requeue`` of a worker mid-trial: the same trial, the same run, no step twice."""
    storage = fresh_database("optuna")
    study_name = f"cluster-requeue-{uuid.uuid4().hex[:8]}"
    epochs, n_trials = 3, 2
    slow = [  # 0.5 s per training step: the requeue comes inside trial 0's second epoch
        "+callbacks.probe._target_=step_probe.StepProbe",
        f"+callbacks.probe.marker_dir={tmp_path / 'markers'}",
        "+callbacks.probe.seconds=0.5",
    ]
    args = [o for o in FAST if o not in ("trainer.max_epochs=2", "tuner.final_run=false")]
    # a pinned batch size: every trial has the same steps, so the resumed one can be compared
    args += [*slow, f"trainer.max_epochs={epochs}", "datamodule.batch_size=16"]
    args += [f"paths.cache_dir={cache_dir}"]
    args += [f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.study_name={study_name}"]
    env = slurm.env(
        EMOEXP_STORAGE=storage, EMOEXP_TRACKING=mlflow_server, ARGS=" ".join(args), PYTHONPATH=str(PROBE_DIR)
    )
    _setup(args, storage, mlflow_server, tmp_path, env)
    (tmp_path / "logs").mkdir()
    job = slurm.submit(TUNE_ARRAY, options=["--array=0", *slurm.cpu_job], cwd=tmp_path, env=env)
    client = mlflow.MlflowClient(mlflow_server)

    study_storage = _storage(storage)
    run_id = _wait_for_first_epoch(slurm, job, client, study_name, study_storage, tmp_path)
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)  # a pre-emption: SIGTERM
    slurm.wait(job, timeout=120, until=lambda states: states == ["PENDING"])
    [trial, queued] = optuna.load_study(study_name=study_name, storage=study_storage).trials
    assert trial.state.name == "WAITING" and queued.state.name == "WAITING", _logs(tmp_path)
    assert trial.system_attrs[RESUME_ATTR] == {"trial": 0, "run_id": run_id}
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["interrupted_by"] == "SIGTERM", _logs(tmp_path)
    assert 1 <= len(_history(client, run_id, "val/uar")) < epochs  # pre-empted mid-trial
    first_dir = run.data.tags["output_dir"]

    # SLURM holds a requeued job back for a while (BeginTime); let it start now.
    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True, timeout=30)
    slurm.wait(job, timeout=420)
    [record] = slurm.records(job)
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", _logs(tmp_path)
    assert record["Restarts"] == "1"
    assert re.findall(r"ran (\d+) trial\(s\)", _logs(tmp_path)) == [str(n_trials)], _logs(tmp_path)

    finalize = slurm.submit(
        TUNE_ARRAY, options=["--array=0", *slurm.cpu_job], cwd=tmp_path, env={**env, "ROLE": "finalize"}
    )
    slurm.wait(finalize, timeout=420)
    assert all(t["ExitCode"] == "0:0" for t in slurm.records(finalize)), _logs(tmp_path)

    study = optuna.load_study(study_name=study_name, storage=study_storage)
    assert [(t.number, t.state.name) for t in study.trials] == [(0, "COMPLETE"), (1, "COMPLETE")]
    by_number = _trial_runs(client, study.user_attrs[PARENT_ATTR])
    [resumed], [uninterrupted] = by_number[0], by_number[1]  # one run per trial
    assert resumed.info.run_id == run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed"] == "1" and resumed.data.tags["interrupted"] == "false"
    assert resumed.data.tags["optuna.state"] == "COMPLETE"
    assert resumed.data.metrics["val/uar_best"] == study.trials[0].value
    # the requeued start had its own folder, yet the trial continued from the first start's last.ckpt
    assert resumed.data.tags["output_dir"] == first_dir and "worker-0-restart1" not in first_dir
    assert (tmp_path / "outputs" / "tune" / "slurm" / job / "worker-0-restart1").is_dir()
    for key in ("val/uar", "val/loss", "train/loss"):
        steps = _history(client, run_id, key)
        # every epoch once, at the steps of the uninterrupted trial (same batch size)
        assert steps == _history(client, uninterrupted.info.run_id, key) and len(steps) == epochs, key

    final = study.user_attrs[FINAL_ATTR]
    parent_id = study.user_attrs[PARENT_ATTR]
    finals = client.search_runs(
        [resumed.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`optuna.role` = 'final'",
    )
    assert [r.info.run_id for r in finals] == [final["run_id"]] and final["count"] == 1  # one final run
    assert finals[0].info.status == "FINISHED" and "test/uar" in finals[0].data.metrics
