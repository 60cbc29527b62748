"""A pre-empted tuner worker (SIGTERM, as SLURM sends) leaves its trial to be resumed, not failed.

The worker is a real ``python -m emoexp.tune tuner.role=worker`` subprocess; a test-only callback
(tests/scale/step_probe.py) slows its training steps and leaves a marker per step, so the signal
comes inside the second epoch, deterministically. The restarted worker has a new output folder, as
a requeued cluster job does, and continues the same trial in the same MLflow run from last.ckpt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow

from emoexp.tuning.tuner import RESUME_ATTR

ROOT = Path(__file__).resolve().parents[2]
STUDY = "audio_lstm-embedded_audio-ekman7"
EPOCHS = 3
WAIT_S = 300.0


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


def test_a_preempted_worker_leaves_its_trial_to_be_resumed_in_the_same_run(
    tmp_path, tune_overrides, tuner_process, load_study, mlflow_runs
):
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

    # The requeued job: the same command with a new output folder.
    second = _worker([*overrides, f"paths.output_dir={tmp_path / 'requeued'}"], tmp_path, "second")
    assert second.wait(WAIT_S) == 0, (tmp_path / "second.log").read_text()[-4000:]

    [trial] = load_study(storage, STUDY).trials
    assert trial.number == 0 and trial.state.name == "COMPLETE"
    [resumed] = [r for r in mlflow_runs(tracking_uri) if r.data.tags.get("optuna.role") == "trial"]
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed"] == "1" and resumed.data.tags["optuna.state"] == "COMPLETE"
    client = mlflow.MlflowClient(tracking_uri)
    for key in ("val/uar", "val/loss", "train/loss"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert len(steps) == EPOCHS and steps == sorted(set(steps)), (key, steps)  # none twice
