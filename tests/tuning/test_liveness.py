"""Claiming queued trials, heartbeats and failing a dead worker's trial, on real storages.

SQLite and journal files under tmp_path; PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306)
when they answer. Late heartbeats are provoked by a gate that holds the worker's heartbeat thread,
never by sleeps that usually work; what the tests wait for is the storage's clock passing the grace
period, which they poll for with a bound.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import optuna
import pytest

from emoexp.tuning import liveness
from emoexp.tuning.storage import claim_lock, open_storage

WAIT_S = 30.0  # a bound on every wait: a gate never opened fails the test instead of hanging it


@pytest.fixture(params=["sqlite", "journal"])
def storage_url(request, tmp_path) -> str:
    return (
        f"sqlite:///{tmp_path / 'optuna.db'}"
        if request.param == "sqlite"
        else f"journal:{tmp_path / 'j.log'}"
    )


@pytest.fixture(
    params=["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.db),
            pytest.param("mariadb", marks=pytest.mark.db)]
)  # fmt: skip
def any_storage(request, tmp_path, database_server) -> Iterator[tuple[str, str]]:
    """(storage URL, study name) on every kind of storage: files under tmp_path, or a database server."""
    name = f"liveness-{uuid.uuid4().hex[:8]}"
    if request.param in ("sqlite", "journal"):
        yield (f"sqlite:///{tmp_path / 'optuna.db'}" if request.param == "sqlite"
               else f"journal:{tmp_path / 'j.log'}"), name  # fmt: skip
        return
    url = database_server(request.param)
    yield url, name
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=url)


def _claim_all(url: str, name: str, workers: int = 4) -> list[int]:
    """Workers (threads, each with its own storage connection) claim queued trials until none is left."""
    claimed, lock = [], threading.Lock()

    def worker():
        own = optuna.load_study(study_name=name, storage=open_storage(url, 1, 2))
        while True:
            with claim_lock(url):
                trial = liveness.claim(own)
            if trial is None:
                return
            with lock:
                claimed.append(trial.number)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return claimed


def _study(url: str, queued: int, name: str = "s", grace_period: int = 2):
    study = optuna.create_study(
        study_name=name, storage=open_storage(url, heartbeat_interval=1, grace_period=grace_period)
    )
    for _ in range(queued):
        study.enqueue_trial({})
    return study


def test_concurrent_workers_claim_each_queued_trial_once_and_create_none(storage_url):
    study = _study(storage_url, queued=4)
    assert sorted(_claim_all(storage_url, "s")) == [0, 1, 2, 3]
    assert len(study.trials) == 4  # a worker with nothing queued creates no trial


@pytest.mark.db
@pytest.mark.parametrize("server", ["mariadb", "postgresql"])
def test_claims_are_atomic_on_database_servers(server, database_server):
    url = database_server(server)
    name = f"emoexp-claim-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=open_storage(url, 1, 2))
    try:
        for _ in range(6):
            study.enqueue_trial({})
        assert sorted(_claim_all(url, name)) == list(range(6))
        assert len(study.trials) == 6
    finally:
        optuna.delete_study(study_name=name, storage=url)


def test_a_trial_whose_worker_went_silent_is_failed_and_queued_again(storage_url):
    study = _study(storage_url, queued=1)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    trial = liveness.claim(study)
    trial.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
    with liveness.heartbeat(study, trial, interval=0.2):
        time.sleep(0.6)  # alive and beating ... then the worker dies without a word
    assert liveness.fail_stale_trials(study, grace_period=2, retry=retry) == []  # within the grace period
    time.sleep(3.5)  # the grace period, by the file server's clock (whole seconds on some)
    assert liveness.fail_stale_trials(study, grace_period=2, retry=retry) == [trial.number]
    assert study.trials[trial.number].state.name == "FAIL"
    [again] = [t for t in study.trials if t.system_attrs.get("failed_trial") == trial.number]
    assert again.state.name == "WAITING" and again.params == study.trials[trial.number].params
    assert liveness.claim(study).number == again.number


# ------------------------------------------------------------------------ the storage's clock
def test_the_storage_clock_is_the_storages_not_this_hosts(any_storage, monkeypatch):
    """A host whose wall clock is an hour off stamps and reads the same time as everyone else."""
    url, name = any_storage
    study = _study(url, queued=1, name=name)
    truth = time.time()
    monkeypatch.setattr(time, "time", lambda: truth + 3600.0)  # this host's clock is wrong
    clock = liveness.storage_clock(study._storage)
    assert abs(clock.now() - truth) < 30  # the server's (or file server's) clock, not time.time()
    trial = liveness.claim(study)
    with liveness.heartbeat(study, trial, interval=60):
        pass
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    assert liveness.fail_stale_trials(study, grace_period=2, retry=retry) == []  # just beaten: alive


def test_a_failed_heartbeat_is_logged_and_counted_on_the_trial(storage_url, monkeypatch, caplog):
    study = _study(storage_url, queued=1)
    trial = liveness.claim(study)
    beat_once = liveness._beat_once
    failures = []

    def flaky(storage, trial_id):
        if threading.current_thread().name.startswith("heartbeat") and len(failures) < 2:
            failures.append(trial_id)
            raise OSError("the storage does not answer")
        beat_once(storage, trial_id)

    monkeypatch.setattr(liveness, "_beat_once", flaky)
    logs = caplog.at_level(logging.WARNING, logger="emoexp.tuning.liveness")
    with logs, liveness.heartbeat(study, trial, interval=0.05):
        deadline = time.monotonic() + WAIT_S
        while study.trials[trial.number].user_attrs.get(liveness.FAILURES_ATTR) != 2:
            assert time.monotonic() < deadline, "the failed beats were never counted"
            time.sleep(0.05)
    assert "heartbeat of trial 0 failed (OSError: the storage does not answer)" in caplog.text


def _late_worker(url: str, name: str):
    """Claim the study's trial in a 'worker' (its own connection); the worker's study, trial, heartbeat."""
    own = optuna.load_study(study_name=name, storage=open_storage(url, 1, 1))
    trial = liveness.claim(own)
    trial.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
    return own, trial, liveness.heartbeat(own, trial, interval=0.1)


@pytest.fixture
def gated_beats(monkeypatch) -> threading.Event:
    """A gate for the periodic beats of heartbeat threads (a worker whose beats come late)."""
    gate = threading.Event()
    beat_once = liveness._beat_once

    def late(storage, trial_id):
        if threading.current_thread().name.startswith("heartbeat"):
            assert gate.wait(WAIT_S)
        beat_once(storage, trial_id)

    monkeypatch.setattr(liveness, "_beat_once", late)
    return gate


def _declare_stale(study, number: int) -> None:
    """Another worker's stale check, repeated until the storage's clock passes the grace period."""
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    deadline = time.monotonic() + WAIT_S
    while liveness.fail_stale_trials(study, grace_period=1, retry=retry) != [number]:
        assert time.monotonic() < deadline, "the silent trial was never declared stale"
        time.sleep(0.2)


def test_a_live_worker_declared_stale_keeps_its_result_in_the_queued_retry(any_storage, gated_beats):
    url, name = any_storage
    study = _study(url, queued=1, name=name, grace_period=1)
    own, trial, beats = _late_worker(url, name)
    claimed = trial.number
    with beats as owner:
        _declare_stale(study, claimed)  # its beats are late, it is still training
        [retry] = [t for t in study.trials if t.state.name == "WAITING"]
        gated_beats.set()  # its beats arrive again: the worker adopts the queued retry
        assert owner.check() and owner.trial.number == retry.number
        assert liveness.claim(study) is None  # nobody else can run those parameters again
    own.tell(owner.trial, 0.75)
    states = {t.number: t.state.name for t in study.trials}
    assert states == {claimed: "FAIL", retry.number: "COMPLETE"}
    done = study.trials[retry.number]
    assert done.value == 0.75 and done.params == study.trials[claimed].params
    assert done.user_attrs[liveness.ADOPTED_ATTR] == claimed


def test_a_live_worker_declared_stale_whose_retry_runs_elsewhere_drops_its_result(storage_url, gated_beats):
    study = _study(storage_url, queued=1, grace_period=1)
    _, trial, beats = _late_worker(storage_url, "s")
    with beats as owner:
        _declare_stale(study, trial.number)
        other = liveness.claim(study)  # another worker took the retry at once
        gated_beats.set()
        assert not owner.check() and owner.lost
    study.tell(other, 0.5)
    states = {t.number: t.state.name for t in study.trials}
    assert states == {trial.number: "FAIL", other.number: "COMPLETE"}  # counted once, not twice


def test_an_interrupted_trial_released_to_the_queue_is_claimed_again_with_its_parameters(storage_url):
    study = _study(storage_url, queued=2)
    trial = liveness.claim(study)
    lr = trial.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
    assert liveness.release(study, trial)
    again = liveness.claim(study)
    assert again.number == trial.number and again.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True) == lr
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    assert liveness.fail_stale_trials(study, grace_period=2, retry=retry) == []  # beaten when claimed
