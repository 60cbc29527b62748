"""A training job pre-empted on a real SLURM cluster resumes into the same MLflow run on a real tracking
server, in a new output folder, with no step logged twice (docs/scaling.md).

Two ways in: ``scontrol requeue`` (a pre-emption: SLURM sends SIGTERM and queues the job again), and
SIGUSR1, which ``--signal=USR1@120`` sends two minutes before the time limit: Lightning's
``SLURMEnvironment`` requeues the job itself, and SLURM's SIGTERM follows.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import mlflow
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
JOB = HERE / "train_requeue.sbatch"
PROBE_DIR = ROOT / "tests" / "scale"  # step_probe.StepProbe: slow steps and a marker file per step
EPOCHS = 3
PREEMPT = {
    "scontrol_requeue": lambda job: ["scontrol", "requeue", job],
    "sigusr1_before_time_limit": lambda job: ["scancel", "--signal=USR1", job],
}


def _history(client: mlflow.MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _assert_one_clean_history(client: mlflow.MlflowClient, run_id: str) -> None:
    """One point per epoch of every epoch metric, at an uninterrupted run's steps; one-off metrics once."""
    for key in ("val/uar", "val/loss", "train/loss", "val/uar_best"):
        steps = [step for step, _ in _history(client, run_id, key)]
        per_epoch = steps[0] + 1  # epoch e ends at step (e + 1) * batches - 1
        assert steps == [(e + 1) * per_epoch - 1 for e in range(EPOCHS)], (key, steps)
    for key in ("data/samples", "model/parameters", "test/uar"):
        assert len(_history(client, run_id, key)) == 1, key


def _wait_for_file(path: Path, slurm, job: str, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert slurm.states(job), f"job {job} ended before {path.name}:\n{log.read_text()[-5000:]}"
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job], timeout=30)
            pytest.fail(f"job {job} did not reach {path.name} in {timeout:.0f} s:\n{log.read_text()[-5000:]}")
        time.sleep(0.2)


@pytest.mark.parametrize("preemption", sorted(PREEMPT))
def test_a_requeued_job_resumes_into_the_same_mlflow_run_with_no_step_logged_twice(
    preemption, slurm, mlflow_server, tmp_path, cache_dir
):
    experiment = f"cluster-requeue-{uuid.uuid4().hex[:8]}"
    markers, runs_dir, log = tmp_path / "markers", tmp_path / "runs", tmp_path / "job.out"
    overrides = [
        "debug=fast",
        f"trainer.max_epochs={EPOCHS}",
        "model.net.hidden_size=16",
        "model.net.num_layers=1",
        f"paths.cache_dir={cache_dir}",
        f"tracking.uri={mlflow_server}",
        f"tracking.experiment={experiment}",
        "+callbacks.probe._target_=step_probe.StepProbe",
        f"+callbacks.probe.marker_dir={markers}",
        "+callbacks.probe.seconds=0.5",
    ]
    env = slurm.env(RUNS_DIR=str(runs_dir), PYTHONPATH=str(PROBE_DIR))
    job = slurm.submit(JOB, *overrides, options=[*slurm.cpu_job, f"--output={log}"], cwd=ROOT, env=env)

    _wait_for_file(markers / "epoch1-batch0", slurm, job, log)  # epoch 0 logged, inside epoch 1
    subprocess.run(PREEMPT[preemption](job), check=True, timeout=30)
    slurm.wait(job, timeout=120, until=lambda states: states == ["PENDING"])
    client = mlflow.MlflowClient(mlflow_server)
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "KILLED", log.read_text()[-5000:]
    assert run.data.tags["interrupted"] == "true" and run.data.tags["interrupted_by"] == "SIGTERM"
    assert 1 <= len(_history(client, run.info.run_id, "val/uar")) < EPOCHS

    # SLURM holds a requeued job back for a while (BeginTime); let it start now.
    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True, timeout=30)
    slurm.wait(job, timeout=420)
    [record] = slurm.records(job)
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", log.read_text()[-5000:]
    assert record["Restarts"] == "1"
    assert f"job {job} start 1" in log.read_text()
    if preemption == "sigusr1_before_time_limit":
        assert f"Requeued SLURM job: {job}" in log.read_text()  # Lightning's handler requeued it

    [resumed] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed"] == "1" and resumed.data.tags["interrupted"] == "false"
    # the second start had its own output folder, yet continued from the first one's last.ckpt
    assert resumed.data.tags["output_dir"] == str(runs_dir / f"{job}-0")
    assert (runs_dir / f"{job}-1").is_dir()
    _assert_one_clean_history(client, run.info.run_id)
