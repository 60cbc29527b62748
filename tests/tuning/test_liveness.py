"""Claiming queued trials and failing a dead worker's trial, on real SQLite and journal storages."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from emoexp.tuning import liveness
from emoexp.tuning.storage import claim_lock, open_storage

SERVERS = {
    "postgresql": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}


@pytest.fixture(params=["sqlite", "journal"])
def storage_url(request, tmp_path) -> str:
    return (
        f"sqlite:///{tmp_path / 'optuna.db'}"
        if request.param == "sqlite"
        else f"journal:{tmp_path / 'j.log'}"
    )


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


def _study(url: str, queued: int):
    study = optuna.create_study(
        study_name="s", storage=open_storage(url, heartbeat_interval=1, grace_period=2)
    )
    for _ in range(queued):
        study.enqueue_trial({})
    return study


def test_concurrent_workers_claim_each_queued_trial_once_and_create_none(storage_url):
    study = _study(storage_url, queued=4)
    assert sorted(_claim_all(storage_url, "s")) == [0, 1, 2, 3]
    assert len(study.trials) == 4  # a worker with nothing queued creates no trial


@pytest.mark.db
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_claims_are_atomic_on_database_servers(server):
    import uuid

    import sqlalchemy

    url = SERVERS[server]
    try:
        with sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3}).connect():
            pass
    except Exception as error:  # no server: a reason to skip, reported as such
        pytest.skip(f"{server} unreachable: {str(error).splitlines()[0]}")
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
    # SQLite's CURRENT_TIMESTAMP, which Optuna's heartbeat compares, has whole seconds: a silence of
    # 2.5 s can read as 2 s (not stale yet); wait out the grace period plus that resolution.
    time.sleep(3.5)
    assert liveness.fail_stale_trials(study, grace_period=2, retry=retry) == [trial.number]
    assert study.trials[trial.number].state.name == "FAIL"
    [again] = [t for t in study.trials if t.system_attrs.get("failed_trial") == trial.number]
    assert again.state.name == "WAITING" and again.params == study.trials[trial.number].params
    assert liveness.claim(study).number == again.number
