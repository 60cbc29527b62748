"""Metric points written in the background are all in the store when a run is interrupted."""

from __future__ import annotations

import signal
import time

import torch

PROBES = [
    "+callbacks.probe._target_=step_probe.StepProbe",
    "+callbacks.step_metrics._target_=step_metrics.StepMetrics",
]


def test_sigterm_leaves_every_point_up_to_the_last_checkpoint_in_the_store(
    tmp_path, start_train, store_runs, metric_history
):
    markers = tmp_path / "markers"
    overrides = [
        "trainer.max_epochs=3",
        *PROBES,
        f"+callbacks.probe.marker_dir={markers}",
        "+callbacks.probe.seconds=0.3",
    ]
    process = start_train(overrides)
    deadline = time.monotonic() + 900
    while not (markers / "epoch1-batch1").exists():  # past the epoch 0 checkpoint, inside epoch 1
        assert process.poll() is None, process.stdout.read()[-5000:]
        assert time.monotonic() < deadline, "training did not reach epoch 1"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 128 + signal.SIGTERM, output[-5000:]
    [run] = store_runs()
    assert run.info.status == "KILLED", output[-5000:]
    checkpoint = tmp_path / "outputs" / "checkpoints" / "last.ckpt"
    last = torch.load(checkpoint, map_location="cpu", weights_only=True)
    stored = {int(value) for _, value in metric_history(run.info.run_id, "probe/step")}
    # Every point Lightning handed to the logger before the checkpoint. The interrupted batch's own
    # step point (global_step itself) is still in Lightning's logger connector when the guard saves
    # last.ckpt and raises, so it never reaches the recorder.
    handed_over = set(range(1, last["global_step"]))
    assert last["global_step"] > 1 and handed_over <= stored, (last["global_step"], sorted(stored))
    assert "unwritten" not in output  # nothing was spooled: every point reached the store
