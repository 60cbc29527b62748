"""A pre-empted tuner worker (SIGTERM, as SLURM sends) leaves its trial to be resumed, not failed.

The worker is a real ``python -m emoexp.tune tuner.role=worker`` subprocess; a test-only callback
(tests/scale/step_probe.py) slows its training steps and leaves a marker per step, so the signal
comes inside the second epoch, deterministically. The restarted worker has a new output folder, as
a requeued cluster job does, and continues the same trial in the same MLflow run from last.ckpt.
A pre-emption while the tracking server is down (a real ``mlflow server``, killed first) ends in
SIGKILL, as SLURM's KillWait does: the trial then takes the dead-worker path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from emoexp.tuning.tuner import RESUME_ATTR

ROOT = Path(__file__).resolve().parents[2]
STUDY = "audio_lstm-embedded_audio-ekman7"
EPOCHS = 3
WAIT_S = 300.0
KILL_WAIT_S = 5.0
"""SLURM's KillWait (30 s on the test cluster): a job's processes get SIGKILL this long after SIGTERM."""


def _worker(overrides: list[str], tmp_path: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT / "tests" / "scale"))  # fmt: skip
    log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    command = [sys.executable, "-m", "emoexp.tune", *overrides, "tuner.role=worker",
               f"hydra.run.dir={tmp_path / name}"]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_for_marker(marker: Path, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not marker.exists():
        assert process.poll() is None, f"the worker ended before {marker.name}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {marker.name} in {WAIT_S:.0f} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.1)


@pytest.mark.parametrize("run_id", ["recorded", "looked_up"])
def test_a_preempted_worker_leaves_its_trial_to_be_resumed_in_the_same_run(
    run_id, tmp_path, tune_overrides, tuner_process, load_study, mlflow_runs
):
    """``looked_up``: the trial went back without its run id (as when the tracking store did not
    answer at the pre-emption); the worker that resumes it finds the run by the trial's number."""
    markers = tmp_path / "markers"
    overrides = tune_overrides(
        "hydra.sweeper.n_trials=1", "tuner.final_run=false", "pruner=none", f"trainer.max_epochs={EPOCHS}",
        "+callbacks.probe._target_=step_probe.StepProbe", f"+callbacks.probe.marker_dir={markers}",
        "+callbacks.probe.seconds=0.3",
    )  # fmt: skip
    tuner_process([*overrides, "tuner.role=setup", f"hydra.run.dir={tmp_path / 'setup'}"])

    first = _worker(overrides, tmp_path, "first")
    _wait_for_marker(markers / "epoch1-batch0", first, tmp_path / "first.log")  # inside epoch 2
    os.kill(first.pid, signal.SIGTERM)  # pre-empted
    assert first.wait(WAIT_S) == 128 + signal.SIGTERM, (tmp_path / "first.log").read_text()[-4000:]

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    [trial] = load_study(storage, STUDY).trials
    assert trial.state.name == "WAITING"  # back in the queue, not RUNNING until the grace period
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    [run] = [r for r in mlflow_runs(tracking_uri) if r.data.tags.get("optuna.role") == "trial"]
    assert run.info.status == "KILLED" and run.data.tags["interrupted_by"] == "SIGTERM"
    assert trial.system_attrs[RESUME_ATTR] == {"trial": 0, "run_id": run.info.run_id}
    if run_id == "looked_up":  # what _release_interrupted records when the store does not answer
        study = load_study(storage, STUDY)
        study._storage.set_trial_system_attr(trial._trial_id, RESUME_ATTR, {"trial": 0, "run_id": None})

    # The requeued job: the same command with a new output folder, in another worker (array task).
    requeued = [*overrides, f"paths.output_dir={tmp_path / 'requeued'}", "tuner.worker_id=1"]
    second = _worker(requeued, tmp_path, "second")
    assert second.wait(WAIT_S) == 0, (tmp_path / "second.log").read_text()[-4000:]

    [trial] = load_study(storage, STUDY).trials
    assert trial.number == 0 and trial.state.name == "COMPLETE"
    [resumed] = [r for r in mlflow_runs(tracking_uri) if r.data.tags.get("optuna.role") == "trial"]
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed"] == "1" and resumed.data.tags["optuna.state"] == "COMPLETE"
    # tuner.* (another worker_id) is not part of the run's config fingerprint: the run is not rewritten
    assert resumed.data.tags["config_fingerprint"] == run.data.tags["config_fingerprint"]
    assert "emoexp.params_stale" not in resumed.data.tags
    client = mlflow.MlflowClient(tracking_uri)
    assert "previous" not in [a.path for a in client.list_artifacts(run.info.run_id)]
    for key in ("val/uar", "val/loss", "train/loss"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert len(steps) == EPOCHS and steps == sorted(set(steps)), (key, steps)  # none twice


def test_a_worker_preempted_while_the_tracking_server_is_down_leaves_its_trial_to_be_retried(
    tmp_path, tune_overrides, tuner_process, load_study, tracking_server
):
    """SIGTERM while the tracking server is down, SIGKILL after the job's grace, as SLURM does.

    The worker cannot mark its run KILLED: it is still retrying that write (bounded, logged) when it
    is killed, so its trial is neither released nor finished. It takes the dead-worker path: the
    next worker fails it after ``tuner.grace_period``, records why on its run once the server is
    back, and runs a copy with the same parameters. No trial lost, none counted twice.
    """
    markers = tmp_path / "markers"
    overrides = tune_overrides(
        "hydra.sweeper.n_trials=1", "tuner.final_run=false", "pruner=none", f"trainer.max_epochs={EPOCHS}",
        "+callbacks.probe._target_=step_probe.StepProbe", f"+callbacks.probe.marker_dir={markers}",
        "+callbacks.probe.seconds=0.3", "datamodule.batch_size=16", f"tracking.uri={tracking_server.uri}",
    )  # fmt: skip
    tracking_server.start()
    tuner_process([*overrides, "tuner.role=setup", f"hydra.run.dir={tmp_path / 'setup'}"])
    first = _worker(overrides, tmp_path, "first")
    _wait_for_marker(markers / "epoch1-batch0", first, tmp_path / "first.log")  # inside epoch 2
    tracking_server.kill()  # the server goes away at once (a crash; training goes on) ...
    os.kill(first.pid, signal.SIGTERM)  # ... and the job is pre-empted
    with pytest.raises(subprocess.TimeoutExpired):  # still retrying its writes when the grace ends
        first.wait(KILL_WAIT_S)
    first.kill()
    first.wait(WAIT_S)
    first_log = (tmp_path / "first.log").read_text()
    assert "Received SIGTERM: stopping at the end of a training batch" in first_log, first_log[-4000:]

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    [trial] = load_study(storage, STUDY).trials
    assert (
        trial.state.name == "RUNNING" and RESUME_ATTR not in trial.system_attrs
    )  # neither released nor told

    tracking_server.start()  # the server comes back; the requeued job starts
    second = _worker([*overrides, f"paths.output_dir={tmp_path / 'requeued'}"], tmp_path, "second")
    assert second.wait(WAIT_S) == 0, (tmp_path / "second.log").read_text()[-4000:]
    second_log = (tmp_path / "second.log").read_text()
    assert "trial 0: worker died: no heartbeat for 3 s" in second_log, second_log[-4000:]

    killed, retry = load_study(storage, STUDY).trials
    assert (killed.state.name, retry.state.name) == ("FAIL", "COMPLETE")
    assert retry.system_attrs["retry_history"] == [0] and retry.params == killed.params
    client = mlflow.MlflowClient(tracking_server.uri)
    experiment = client.get_experiment_by_name("emoexp-audio")
    runs = client.search_runs([experiment.experiment_id], "tags.`optuna.role` = 'trial'")
    by_number = {int(r.data.tags["optuna.trial"]): r for r in runs}
    assert len(runs) == len(by_number) == 2  # one run per trial
    assert by_number[0].info.status == "FAILED" and "no heartbeat" in by_number[0].data.tags["error"]
    assert by_number[1].info.status == "FINISHED" and by_number[1].data.tags["optuna.state"] == "COMPLETE"
    steps = sorted(m.step for m in client.get_metric_history(by_number[1].info.run_id, "val/uar"))
    assert len(steps) == len(set(steps)) == EPOCHS
