"""The recorder: fail fast before a run exists, never leave a run RUNNING, say what was not written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pytest

from emoexp.engine.recorder import Recorder, TrackingStoreError
from emoexp.train import train


def test_an_unreachable_server_fails_fast_naming_the_uri(compose, tmp_path):
    cfg = compose(["model=svm", "tracking.uri=http://127.0.0.1:1"])
    started = time.monotonic()
    with pytest.raises(TrackingStoreError) as raised:
        train(cfg)
    assert time.monotonic() - started < 40  # the probe's bound (~15 s) plus the data preparation
    assert "http://127.0.0.1:1" in str(raised.value) and "listing experiments" in str(raised.value)


def test_a_store_that_cannot_be_created_is_named(compose):
    with pytest.raises(TrackingStoreError, match=r"sqlite:////proc/x/mlflow\.db"):
        train(compose(["model=svm", "tracking.uri=sqlite:////proc/x/mlflow.db"]))


def test_an_unwritable_artifact_folder_is_refused_before_any_run(compose, tmp_path, tracking_uri):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the artifact folder should be")
    client = mlflow.MlflowClient(tracking_uri)
    client.create_experiment("blocked", artifact_location=(blocker / "artifacts").as_uri())
    with pytest.raises(TrackingStoreError, match="not writable"):
        train(compose(["model=svm", "tracking.experiment=blocked"]))
    assert client.search_runs([client.get_experiment_by_name("blocked").experiment_id]) == []


def test_a_run_whose_artifacts_fail_ends_failed_with_the_traceback_kept_locally(tmp_path, tracking_uri):
    blocker = tmp_path / "not-a-folder"
    recorder = Recorder(tracking_uri)
    experiment = recorder.client.create_experiment("late", artifact_location=(blocker / "a").as_uri())
    run_id = recorder.create_run(experiment, "r", {})
    recorder.log_metrics(run_id, {"train/loss": 1.0}, step=3)
    blocker.write_text("the artifact folder became unusable after the run started")
    try:
        recorder.log_text(run_id, "x", "config.yaml")
    except OSError as error:
        recorder.stop(run_id, error, fallback_dir=tmp_path / "out")
    run = recorder.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert "config.yaml" not in run.data.tags["error"] or "Error" in run.data.tags["error"]
    assert run.data.metrics["train/loss"] == 1.0  # what was logged before stays
    assert "Traceback" in (tmp_path / "out" / "error.txt").read_text()


def test_points_that_cannot_be_written_are_spooled_and_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries take minutes
    recorder = Recorder("http://127.0.0.1:1", retry_s=0.5, spool_dir=tmp_path)
    recorder.log_metrics("0" * 32, {"val/uar": 0.5, "val/loss": 1.0}, step=7)
    recorder.flush()
    assert recorder.unwritten == 2
    points = [json.loads(line) for line in (tmp_path / "unwritten.jsonl").read_text().splitlines()]
    assert {(p["key"], p["step"]) for p in points} == {("val/uar", 7), ("val/loss", 7)}


def test_an_interruption_ends_killed_and_resumable(tracking_uri):
    import signal

    from emoexp.interruption import TrainingInterrupted

    recorder = Recorder(tracking_uri)
    experiment = recorder.client.create_experiment("killed")
    run_id = recorder.create_run(experiment, "r", {})
    recorder.hold(run_id)
    recorder.stop(run_id, TrainingInterrupted(signal.SIGTERM))
    run = recorder.client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["interrupted"] == "true" and run.data.tags["interrupted_by"] == "SIGTERM"
    assert "emoexp.lease" not in run.data.tags  # released: a resume may take it


def test_a_protected_run_never_gets_a_point_twice(tracking_uri):
    recorder = Recorder(tracking_uri)
    experiment = recorder.client.create_experiment("protected")
    run_id = recorder.create_run(experiment, "r", {})
    recorder.log_metrics(run_id, {"val/uar": 0.1}, step=5)
    recorder.log_params(run_id, {"seed": "1"})
    recorder.flush()
    again = Recorder(tracking_uri)
    again.protect(run_id)
    again.log_metrics(run_id, {"val/uar": 0.2}, step=5)  # a replay after resuming from last.ckpt
    again.log_metrics(run_id, {"val/uar": 0.3}, step=6)
    again.log_params(run_id, {"seed": "1", "new": "x"})
    again.end(run_id)
    history = [(m.step, m.value) for m in again.client.get_metric_history(run_id, "val/uar")]
    assert sorted(history) == [(5, 0.1), (6, 0.3)]
    assert again.client.get_run(run_id).data.params == {"seed": "1", "new": "x"}
    assert again.client.get_run(run_id).info.status == "FINISHED"


def test_a_stale_spool_file_is_not_needed_when_the_store_answers(tmp_path, tracking_uri):
    recorder = Recorder(tracking_uri, spool_dir=tmp_path)
    experiment = recorder.client.create_experiment("fine")
    run_id = recorder.create_run(experiment, "r", {})
    recorder.log_metrics(run_id, {"a": 1.0})
    recorder.end(run_id)
    assert recorder.unwritten == 0 and not (Path(tmp_path) / "unwritten.jsonl").exists()


def test_points_are_written_in_the_background_and_flush_waits_for_them(tracking_uri, monkeypatch):
    from emoexp.engine import recorder as recorder_module

    recorder = Recorder(tracking_uri)
    run_id = recorder.create_run(recorder.client.create_experiment("slow"), "r", {})
    write = recorder.client.log_batch

    def slow_write(*args, **kwargs):
        time.sleep(0.5)  # a store far away
        return write(*args, **kwargs)

    monkeypatch.setattr(recorder.client, "log_batch", slow_write)
    started = time.monotonic()
    for step in range(recorder_module.FLUSH_EVERY_POINTS * 3):
        recorder.log_metrics(run_id, {"train/loss": float(step)}, step=step)
    assert time.monotonic() - started < 0.5  # three batches handed over; training did not wait
    recorder.log_metrics(run_id, {"train/loss": -1.0}, step=10_000)  # still buffered
    recorder.flush()
    steps = [m.step for m in recorder.client.get_metric_history(run_id, "train/loss")]
    assert sorted(steps) == [*range(recorder_module.FLUSH_EVERY_POINTS * 3), 10_000]
    recorder.end(run_id)


def test_a_dataset_inserted_meanwhile_by_another_run_is_linked_not_failed(tracking_uri, monkeypatch):
    # Two tuner workers logging the same dataset at once: MLflow's SQL store looks the dataset up,
    # then inserts it, so the later insert fails on the unique key. That interleaving cannot be
    # forced inside MLflow, so the first call of this run raises what the store raised in CI.
    from mlflow.exceptions import MlflowException

    recorder = Recorder(tracking_uri)
    experiment = recorder.client.create_experiment("shared-dataset")
    first, second = (recorder.create_run(experiment, name, {}) for name in ("a", "b"))
    dataset = {"name": "embedded_audio", "digest": "f33db5f9", "source": "emoexp.embedded/x"}
    dataset.update(schema="{}", profile="{}")
    recorder.log_dataset(first, **dataset)  # the other worker's insert, committed

    real, calls = recorder.client.log_inputs, []

    def racing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
                "datasets.name, datasets.digest"
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(recorder.client, "log_inputs", racing)
    recorder.log_dataset(second, **dataset)

    assert len(calls) == 2
    for run_id in (first, second):
        [logged] = recorder.client.get_run(run_id).inputs.dataset_inputs
        assert (logged.dataset.name, logged.dataset.digest) == ("embedded_audio", "f33db5f9")


def test_other_dataset_errors_are_not_swallowed(tracking_uri, monkeypatch):
    from mlflow.exceptions import MlflowException

    recorder = Recorder(tracking_uri, retry_s=0.1)
    run_id = recorder.create_run(recorder.client.create_experiment("bad"), "r", {})

    def broken(*args, **kwargs):
        raise MlflowException("INVALID_PARAMETER_VALUE: schema too long")

    monkeypatch.setattr(recorder.client, "log_inputs", broken)
    with pytest.raises(MlflowException, match="schema too long"):
        recorder.log_dataset(run_id, name="d", digest="1", source="s", schema="{}", profile="{}")
