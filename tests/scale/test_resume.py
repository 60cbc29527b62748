"""Interruption-safe runs: signals mark runs interrupted, resume continues them, NaN fails them."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch

from emoexp.engine.resume import config_fingerprint
from emoexp.train import train

PROBE = "+callbacks.probe._target_=step_probe.StepProbe"
EPOCHS = 3


def _artifacts(client, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def _assert_one_clean_history(
    metric_history,
    run_id: str,
    epochs: int,
    once=("data/samples", "model/parameters", "test/uar", "test/ece"),
) -> None:
    """One point per epoch of every epoch metric, at the steps of an uninterrupted run; one of ``once``."""
    for key in ("val/uar", "val/loss", "train/loss", "val/uar_best"):
        steps = [step for step, _ in metric_history(run_id, key)]
        per_epoch = steps[0] + 1  # epoch e ends at step (e + 1) * batches - 1
        assert steps == [(e + 1) * per_epoch - 1 for e in range(epochs)], (key, steps)
    epochs_logged = sorted({int(value) for _, value in metric_history(run_id, "epoch")})
    assert epochs_logged[:epochs] == list(range(epochs))
    for key in once:
        assert len(metric_history(run_id, key)) == 1, key


def test_config_fingerprint_ignores_where_files_go_but_not_what_is_trained(compose):
    base = config_fingerprint(compose([]))
    assert (
        config_fingerprint(compose(["resume=true", "paths.output_dir=/elsewhere", "num_threads=1"])) == base
    )
    assert (
        config_fingerprint(compose(["tracking.uri=sqlite:////tmp/other.db", "datamodule.num_workers=2"]))
        == base
    )
    assert config_fingerprint(compose(["model.net.hidden_size=8"])) != base
    assert config_fingerprint(compose(["seed=7"])) != base
    assert config_fingerprint(compose(["trainer.devices=2"])) != base


def test_nan_loss_marks_the_run_failed_and_keeps_what_was_logged(compose, tracking_uri, metric_history):
    # The learning rate explodes after the first epoch: the loss becomes NaN/inf during epoch 1.
    exploding = (
        "+scheduler={_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 1, gamma: 1e38}"
    )
    cfg = compose([f"trainer.max_epochs={EPOCHS}", exploding])
    with pytest.raises(FloatingPointError, match="not finite"):
        train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("emoexp-audio").experiment_id])
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["error"]
    assert "interrupted" not in run.data.tags
    assert [v for _, v in metric_history(run.info.run_id, "epoch")][:1] == [0.0]
    assert len(metric_history(run.info.run_id, "val/uar")) == 1  # epoch 0, before the NaN
    artifacts = _artifacts(client, run.info.run_id)
    assert {"error.txt", "config.yaml"} <= artifacts
    error_text = Path(client.download_artifacts(run.info.run_id, "error.txt")).read_text()
    assert "Traceback" in error_text and "NonFiniteLossError" in error_text
    checkpoints = cfg.paths.output_dir + "/checkpoints"
    for name in ("best.ckpt", "last.ckpt"):  # the last good state, loadable without unpickling code
        state = torch.load(f"{checkpoints}/{name}", map_location="cpu", weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())


def test_ctrl_c_mid_epoch_then_resume_continues_the_same_run(
    compose, tracking_uri, probe_importable, metric_history, tmp_path
):
    overrides = [
        f"trainer.max_epochs={EPOCHS}",
        PROBE,
        f"+callbacks.probe.marker_dir={tmp_path / 'markers'}",
        "+callbacks.probe.seconds=0",
        "+callbacks.probe.signal_at=epoch1-batch1",
    ]
    cfg = compose(overrides)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("emoexp-audio").experiment_id
    [run] = client.search_runs([experiment])
    assert run.info.status == "KILLED"
    assert run.data.tags["interrupted"] == "true" and run.data.tags["interrupted_by"] == "SIGINT"
    assert len(metric_history(run.info.run_id, "val/uar")) == 1  # epoch 0 only: stopped inside epoch 1
    last = torch.load(f"{cfg.paths.output_dir}/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert (
        last["epoch"] == 1
        and last["global_step"] == (metric_history(run.info.run_id, "val/uar")[0][0] + 1) + 2
    )

    metrics = train(compose([*overrides, "resume=true"]))
    [resumed] = client.search_runs([experiment])
    assert resumed.info.run_id == run.info.run_id
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["interrupted"] == "false" and resumed.data.tags["resumed"] == "1"
    _assert_one_clean_history(metric_history, run.info.run_id, EPOCHS)
    assert metrics["test/uar"] == pytest.approx(resumed.data.metrics["test/uar"])
    assert metrics["val/uar_best"] == pytest.approx(
        max(v for _, v in metric_history(run.info.run_id, "val/uar"))
    )
    assert "predictions.csv" in _artifacts(client, run.info.run_id)


def test_resume_with_nothing_interrupted_starts_a_new_run_and_a_wrong_id_is_refused(compose, tracking_uri):
    from emoexp.config import ConfigError

    with pytest.raises(ConfigError, match="no such run"):
        train(compose(["trainer.max_epochs=1", "resume=0123456789abcdef0123456789abcdef"]))
    train(compose(["trainer.max_epochs=1", "resume=true"]))
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("emoexp-audio").experiment_id])
    assert run.info.status == "FINISHED" and "resumed" not in run.data.tags
    with pytest.raises(ConfigError, match="finished already"):
        train(compose(["trainer.max_epochs=1", f"resume={run.info.run_id}"]))


def test_cross_validation_resumes_the_interrupted_fold_and_reuses_finished_ones(
    compose, tracking_uri, probe_importable, metric_history, tmp_path
):
    epochs = 2
    overrides = [
        "protocol=speaker_kfold",
        "protocol.n_splits=3",
        f"trainer.max_epochs={epochs}",
        PROBE,
        f"+callbacks.probe.marker_dir={tmp_path / 'markers'}",
        "+callbacks.probe.seconds=0",
        "+callbacks.probe.signal_at=epoch1-batch0",
        "+callbacks.probe.occurrence=2",  # Ctrl-C inside the second fold
    ]
    client = mlflow.MlflowClient(tracking_uri)
    with pytest.raises(KeyboardInterrupt):
        train(compose(overrides))
    experiment = client.get_experiment_by_name("emoexp-audio").experiment_id

    def parent_and_children():
        found = client.search_runs([experiment])
        [parent] = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
        return parent, {r.data.tags["fold"]: r for r in found if "mlflow.parentRunId" in r.data.tags}

    parent, children = parent_and_children()
    assert parent.info.status == "KILLED" and parent.data.tags["interrupted"] == "true"
    assert sorted(children) == ["fold0", "fold1"]
    assert children["fold0"].info.status == "FINISHED"
    assert children["fold1"].info.status == "KILLED" and children["fold1"].data.tags["interrupted"] == "true"
    before = {name: run.info.run_id for name, run in children.items()}
    fold0_history = metric_history(before["fold0"], "val/uar")

    metrics = train(compose([*overrides, "resume=true"]))
    resumed, children = parent_and_children()
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    assert sorted(children) == ["fold0", "fold1", "fold2"]
    assert {name: children[name].info.run_id for name in before} == before  # the same child runs
    assert all(child.info.status == "FINISHED" for child in children.values())
    assert metric_history(before["fold0"], "val/uar") == fold0_history  # reused, not retrained
    assert children["fold1"].data.tags["resumed"] == "1"
    for child in children.values():
        _assert_one_clean_history(metric_history, child.info.run_id, epochs, ("model/parameters", "test/uar"))
    fold_uar = [child.data.metrics["test/uar"] for child in children.values()]
    assert resumed.data.metrics["test/uar"] == pytest.approx(sum(fold_uar) / 3)
    assert metrics["test/uar"] == pytest.approx(resumed.data.metrics["test/uar"])
    assert len(metric_history(parent.info.run_id, "test/uar")) == 1
    oof = pd.read_csv(client.download_artifacts(parent.info.run_id, "predictions.csv"))
    test = oof[oof["split"] == "test"]
    assert test["id"].is_unique and len(test) == int(resumed.data.metrics["data/samples"])


@pytest.mark.parametrize("trainer", ["default", "ddp_sim"])
def test_sigterm_mid_epoch_in_a_subprocess_resumes_into_the_same_run(
    trainer, tmp_path, start_train, run_train, store_runs, metric_history
):
    markers = tmp_path / "markers"
    overrides = [
        f"trainer={trainer}",
        f"trainer.max_epochs={EPOCHS}",
        PROBE,
        f"+callbacks.probe.marker_dir={markers}",
        "+callbacks.probe.seconds=0.5",
    ]
    process = start_train(overrides)
    deadline = time.monotonic() + 900
    while not (markers / "epoch1-batch0").exists():  # inside epoch 1 (every setting has >= 2 batches)
        assert process.poll() is None, process.stdout.read()[-5000:]
        assert time.monotonic() < deadline, "training did not reach epoch 1"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)  # as `kill` or a cluster's pre-emption does
    output, _ = process.communicate(timeout=600)
    # Under DDP, Lightning's launcher may SIGKILL rank 0 once rank 1 has exited: after the run was marked.
    expected = {128 + signal.SIGTERM} | ({-signal.SIGKILL} if trainer == "ddp_sim" else set())
    assert process.returncode in expected, output[-5000:]
    [run] = store_runs()
    assert run.info.status == "KILLED", output[-5000:]
    assert run.data.tags["interrupted"] == "true" and run.data.tags["interrupted_by"] == "SIGTERM"
    logged = metric_history(run.info.run_id, "val/uar")
    assert 1 <= len(logged) < EPOCHS
    last = torch.load(
        tmp_path / "outputs" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    per_epoch = logged[0][0] + 1
    assert last["epoch"] == len(logged) and last["global_step"] % per_epoch != 0  # stopped inside an epoch

    run_train([*overrides, "resume=true"])
    [resumed] = store_runs()
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed"] == "1"
    _assert_one_clean_history(metric_history, run.info.run_id, EPOCHS)


def test_a_hard_killed_run_is_marked_killed_by_the_next_start_and_resumes(
    tmp_path, start_train, run_train, store_runs, metric_history
):
    markers = tmp_path / "markers"
    overrides = [
        f"trainer.max_epochs={EPOCHS}",
        PROBE,
        f"+callbacks.probe.marker_dir={markers}",
        "+callbacks.probe.seconds=0.3",
    ]
    process = start_train(overrides)
    deadline = time.monotonic() + 600
    while not (markers / "epoch1-batch0").exists():  # epoch 0 validated and checkpointed
        assert process.poll() is None, process.stdout.read()[-5000:]
        assert time.monotonic() < deadline, "training did not reach epoch 1"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)  # no chance to mark anything: a lost node, the OOM killer
    process.communicate(timeout=60)
    [run] = store_runs()
    assert run.info.status == "RUNNING" and "emoexp.lease" in run.data.tags

    run_train([*overrides, "resume=true"])
    [resumed] = store_runs()
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["interrupted_by"] == "lost" and resumed.data.tags["resumed"] == "1"
    assert "emoexp.lease" not in resumed.data.tags
    epochs = sorted({int(v) for _, v in metric_history(run.info.run_id, "epoch")})
    assert epochs[:EPOCHS] == list(range(EPOCHS))
    steps = [step for step, _ in metric_history(run.info.run_id, "val/uar")]
    assert len(steps) == len(set(steps)) == EPOCHS  # epoch 1 retrained from best/last, never logged twice
