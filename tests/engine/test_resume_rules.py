"""Resume cannot join the wrong run: fingerprints, leases, finished and failed runs, missing checkpoints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from emoexp.config import ConfigError
from emoexp.engine.lease import LEASE_TAG, Lease, _process_start
from emoexp.engine.resume import config_fingerprint
from emoexp.train import train

SVM = ["model=svm"]
LSTM = ["trainer.max_epochs=1"]


def _runs(tracking_uri: str, experiment: str = "emoexp-audio") -> list:
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]) if found else []


def _as_killed(tracking_uri: str, run_id: str) -> None:
    """What a process killed mid-run leaves behind (interrupted, KILLED, lease gone)."""
    client = mlflow.MlflowClient(tracking_uri)
    client.set_tag(run_id, "interrupted", "true")
    client.set_terminated(run_id, "KILLED")


def test_resume_of_a_run_made_with_another_config_is_refused_naming_what_differs(compose, tracking_uri):
    train(compose(SVM))
    [run] = _runs(tracking_uri)
    _as_killed(tracking_uri, run.info.run_id)
    with pytest.raises(ConfigError) as raised:
        train(compose([*SVM, "seed=7", f"resume={run.info.run_id}"]))
    assert "seed: '42' -> '7'" in str(raised.value) and "resume_force=true" in str(raised.value)
    assert mlflow.MlflowClient(tracking_uri).get_run(run.info.run_id).info.status == "KILLED"


def test_a_forced_resume_rewrites_tags_and_config_to_the_new_truth(compose, tracking_uri):
    train(compose(SVM))
    [run] = _runs(tracking_uri)
    _as_killed(tracking_uri, run.info.run_id)
    cfg = compose([*SVM, "seed=7", f"resume={run.info.run_id}", "resume_force=true"])
    train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    resumed = client.get_run(run.info.run_id)
    assert len(_runs(tracking_uri)) == 1 and resumed.info.status == "FINISHED"
    assert resumed.data.tags["seed"] == "7"
    assert resumed.data.tags["config_fingerprint"] == config_fingerprint(cfg)
    assert "seed" in resumed.data.tags["emoexp.params_stale"].split(",")
    now = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text())
    before = yaml.safe_load(
        Path(client.download_artifacts(run.info.run_id, "previous/config.yaml")).read_text()
    )
    assert (now["seed"], before["seed"]) == (7, 42)


def test_a_run_held_by_a_live_process_is_never_joined_and_is_freed_when_it_dies(compose, tracking_uri):
    train(compose(SVM))
    [run] = _runs(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    holder = subprocess.Popen(["sleep", "600"])
    try:
        lease = Lease("", holder.pid, _process_start(holder.pid), 0.0)
        lease = Lease(Lease.mine().host, lease.pid, lease.started, lease.heartbeat)
        client.set_tag(run.info.run_id, LEASE_TAG, lease.dumps())
        client.set_tag(run.info.run_id, "interrupted", "true")
        client.update_run(run.info.run_id, status="RUNNING")
        with pytest.raises(ConfigError, match=f"held by a live process, pid {holder.pid}"):
            train(compose([*SVM, f"resume={run.info.run_id}"]))
        train(compose([*SVM, "resume=true"]))  # does not take the held run: a new one starts
        runs = _runs(tracking_uri)
        assert len(runs) == 2 and client.get_run(run.info.run_id).info.status == "RUNNING"
    finally:
        holder.kill()
        holder.wait()
    train(compose([*SVM, "resume=true"]))  # the holder is gone: its run is marked KILLED, then resumed
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resumed"] == "1"
    assert resumed.data.tags["interrupted_by"] == "lost" and LEASE_TAG not in resumed.data.tags
    assert len(_runs(tracking_uri)) == 2


def test_finished_and_failed_runs_are_not_resumed(compose, tracking_uri):
    train(compose(SVM))
    [run] = _runs(tracking_uri)
    with pytest.raises(ConfigError, match="finished already"):
        train(compose([*SVM, f"resume={run.info.run_id}"]))
    client = mlflow.MlflowClient(tracking_uri)
    client.set_tag(run.info.run_id, "interrupted", "true")
    client.set_tag(run.info.run_id, "error", "ValueError: boom")
    client.set_terminated(run.info.run_id, "FAILED")
    with pytest.raises(ConfigError, match=r"FAILED .*ValueError: boom"):
        train(compose([*SVM, f"resume={run.info.run_id}"]))
    train(compose([*SVM, "resume=true"]))  # a FAILED run is not an interrupted one: a new run
    assert len(_runs(tracking_uri)) == 2 and client.get_run(run.info.run_id).info.status == "FAILED"


def test_resume_true_finds_the_run_from_another_output_dir_and_refuses_a_lost_checkpoint(
    compose, tracking_uri, tmp_path
):
    train(compose(LSTM))
    [run] = _runs(tracking_uri)
    _as_killed(tracking_uri, run.info.run_id)
    recorded = run.data.tags["output_dir"]
    moved = [*LSTM, "resume=true", f"paths.output_dir={tmp_path / 'requeued'}"]
    train(compose(moved))  # a requeued job: new output folder, same config fingerprint
    client = mlflow.MlflowClient(tracking_uri)
    resumed = client.get_run(run.info.run_id)
    assert len(_runs(tracking_uri)) == 1 and resumed.info.status == "FINISHED"
    assert resumed.data.tags["output_dir"] == recorded and resumed.data.tags["resumed"] == "1"

    _as_killed(tracking_uri, run.info.run_id)
    shutil.rmtree(Path(recorded) / "checkpoints")
    with pytest.raises(ConfigError, match=r"last\.ckpt does not exist.*resume_restart=true"):
        train(compose(moved))
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    train(compose([*moved, "resume_restart=true"]))
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
