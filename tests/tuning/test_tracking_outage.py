"""A worker that starts while the MLflow tracking server is down waits for it; no trial is lost to it.

A real ``mlflow server`` (SQLite backend, served artifacts) on a free port of 127.0.0.1: up for the
study's setup, stopped, then started again once the worker has said that it waits (a hook on the
worker's probe orders the two, not a sleep). The study ends with its n_trials real trials.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from emoexp.engine.recorder import Recorder, TrackingStoreError
from emoexp.tuning import storage as storage_module
from emoexp.tuning.tuner import Tuner, settings_from_config

WAIT_S = 180.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``mlflow server`` on 127.0.0.1:``port``, its store and artifacts under ``folder``."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.uri = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}", "--serve-artifacts",
                   "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"]  # fmt: skip
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + WAIT_S
        while not self.answers():
            assert self.process.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        with contextlib.suppress(ProcessLookupError):  # its workers, should one outlive it
            os.killpg(self.process.pid, signal.SIGKILL)


def _tuner(overrides: list[str]) -> Tuner:
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="tune", overrides=overrides, return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return Tuner(cfg, settings_from_config(cfg, sweeper, "svm"), list(overrides))


def test_a_worker_waits_for_an_unreachable_tracking_server_instead_of_failing_trials(
    tmp_path, cache_dir, monkeypatch, caplog
):
    (tmp_path / "server").mkdir()
    server = Server(tmp_path / "server", _free_port())
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = ["hparams_search=svm", "debug=fast", "model.preprocessing.k_best=32",
                 "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=svm-outage", "tuner.final_run=false",
                 "tuner.threads_per_worker=1", f"paths.output_dir={tmp_path / 'out'}",
                 f"paths.cache_dir={cache_dir}", f"tracking.uri={server.uri}",
                 f"hydra.sweeper.storage={url}"]  # fmt: skip
    server.start()
    try:
        _tuner(overrides).setup()
        server.stop()  # the tracking server goes away before the worker starts

        waiting = threading.Event()
        connect = Recorder.connect.__func__

        def hooked(cls, uri, *args, **kwargs):
            try:
                return connect(cls, uri, *args, **kwargs)
            except TrackingStoreError:
                waiting.set()  # the worker found the server down and waits ...
                raise

        monkeypatch.setattr(Recorder, "connect", classmethod(hooked))
        results: dict = {}
        worker = threading.Thread(target=lambda: results.update(ran=_tuner(overrides).work()), daemon=True)
        with caplog.at_level(logging.WARNING, logger="emoexp.tuning.tuner"):
            worker.start()
            assert waiting.wait(WAIT_S)
            server.start()  # ... and the server comes back
            worker.join(WAIT_S)
    finally:
        server.stop()
    assert results.get("ran") == 2
    assert f"the tracking store {server.uri} does not answer: waiting up to" in caplog.text
    study = optuna.load_study(study_name="svm-outage", storage=storage_module.open_storage(url))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]  # n_trials real trials


def test_a_trial_whose_run_cannot_be_created_goes_back_to_the_queue_not_to_fail(tmp_path, cache_dir, caplog):
    """The store goes away between the worker's probe and the trial's run: the trial is not lost."""
    from emoexp.tuning import liveness
    from emoexp.tuning.tracking import PARENT_ATTR
    from emoexp.tuning.tuner import TRACKING_RETRIES_ATTR

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = ["hparams_search=svm", "debug=fast", "model.preprocessing.k_best=32",
                 "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=svm-gone", "tuner.final_run=false",
                 "tuner.threads_per_worker=1", f"paths.output_dir={tmp_path / 'out'}",
                 f"paths.cache_dir={cache_dir}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                 f"hydra.sweeper.storage={url}"]  # fmt: skip
    worker = _tuner(overrides)
    worker.setup()
    study = worker.load_study(worker.open_storage(), create=False)
    recorder, experiment_id = worker._mlflow()
    # The trial's own config names a store that does not answer (tracking.uri is a volatile key).
    gone = _tuner([*overrides, f"tracking.uri=http://127.0.0.1:{_free_port()}"])
    trial = liveness.claim(study)
    with caplog.at_level(logging.WARNING, logger="emoexp.tuning.tuner"):
        told = gone.run_trial(study, trial, study.user_attrs[PARENT_ATTR], recorder, experiment_id)
    assert told is None and "the trial is back in the queue (1/3)" in caplog.text
    [queued] = study.trials
    assert queued.state.name == "WAITING" and queued.system_attrs[TRACKING_RETRIES_ATTR] == 1

    assert worker.work() == 1  # the same trial, once the store answers
    [done] = study.trials
    assert done.number == trial.number and done.state.name == "COMPLETE"
