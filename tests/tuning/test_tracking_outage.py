"""A worker that starts while the MLflow tracking server is down waits for it; no trial is lost to it.

A real ``mlflow server`` (SQLite backend, served artifacts) on a free port of 127.0.0.1: up for the
study's setup, stopped, then started again once the worker has said that it waits (a hook on the
worker's probe orders the two, not a sleep). The study ends with its n_trials real trials.
"""

from __future__ import annotations

import logging
import threading

import optuna

from emoexp.engine.recorder import Recorder, TrackingStoreError
from emoexp.tuning import storage as storage_module

WAIT_S = 180.0


def test_a_worker_waits_for_an_unreachable_tracking_server_instead_of_failing_trials(
    tmp_path, cache_dir, monkeypatch, caplog, make_tuner, tracking_server
):
    server = tracking_server
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = ["hparams_search=svm", "debug=fast", "model.preprocessing.k_best=32",
                 "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=svm-outage", "tuner.final_run=false",
                 "tuner.threads_per_worker=1", f"paths.output_dir={tmp_path / 'out'}",
                 f"paths.cache_dir={cache_dir}", f"tracking.uri={server.uri}",
                 f"hydra.sweeper.storage={url}"]  # fmt: skip
    server.start()
    try:
        make_tuner(overrides).setup()
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
        work = make_tuner(overrides).work
        worker = threading.Thread(target=lambda: results.update(ran=work()), daemon=True)
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


def test_a_trial_whose_run_cannot_be_created_goes_back_to_the_queue_not_to_fail(
    tmp_path, cache_dir, caplog, make_tuner, tracking_server
):
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
    worker = make_tuner(overrides)
    worker.setup()
    study = worker.load_study(worker.open_storage(), create=False)
    recorder, experiment_id = worker._mlflow()
    # The trial's own config names a store that does not answer (tracking.uri is a volatile key).
    gone = make_tuner([*overrides, f"tracking.uri={tracking_server.uri}"])  # never started: no answer
    trial = liveness.claim(study)
    with caplog.at_level(logging.WARNING, logger="emoexp.tuning.tuner"):
        told = gone.run_trial(study, trial, study.user_attrs[PARENT_ATTR], recorder, experiment_id)
    assert told is None and "the trial is back in the queue (1/3)" in caplog.text
    [queued] = study.trials
    assert queued.state.name == "WAITING" and queued.system_attrs[TRACKING_RETRIES_ATTR] == 1

    assert worker.work() == 1  # the same trial, once the store answers
    [done] = study.trials
    assert done.number == trial.number and done.state.name == "COMPLETE"
