"""Which trials are alive: claiming queued trials, heartbeats, and failing a dead worker's trial.

A study holds exactly ``n_trials`` trials because they are queued up front (WAITING) and workers
only ever *claim* a queued trial (the WAITING -> RUNNING transition ``Study.ask`` uses, made
atomic by the storage or, on SQLite, by :func:`emoexp.tuning.storage.claim_lock`); they never
create one. A worker beats for its RUNNING trial; a
trial whose worker was killed stops beating and, after the grace period, any worker fails it and
``RetryHeartbeatStaleTrialCallback`` queues a copy with the same parameters. RDB storages keep
Optuna's own heartbeat; the journal storage, which has none, keeps it in a trial system attribute.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

HEARTBEAT_ATTR = "emoexp:heartbeat"

log = logging.getLogger(__name__)


def _trial_id(study: Any, number: int) -> int:
    storage = study._storage
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number
    )


def claim(study: Any) -> Any | None:
    """Atomically take one queued (WAITING) trial of ``study``; ``None`` when none is left."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = _trial_id(study, frozen.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.trial.Trial(study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker took and finished it meanwhile
    return None


def _uses_optuna_heartbeat(storage: Any) -> bool:
    """RDB storages (also behind Optuna's cache wrapper) beat natively; the journal storage does not."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return callable(interval) and interval() is not None


@contextmanager
def heartbeat(study: Any, trial: Any, interval: float) -> Iterator[None]:
    """Beat for ``trial`` every ``interval`` seconds while the block runs (in a daemon thread)."""
    storage = study._storage
    trial_id = trial._trial_id

    def beat() -> None:
        if _uses_optuna_heartbeat(storage):
            storage.record_heartbeat(trial_id)
        else:
            storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                beat()
            except Exception:  # a missed beat only risks a retry, never the trial itself
                continue

    beat()
    thread = threading.Thread(target=loop, name=f"heartbeat-trial-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=max(1.0, interval))


@contextmanager
def beating(beat: Callable[[], None], interval: float, name: str = "heartbeat") -> Iterator[None]:
    """Call ``beat`` now and every ``interval`` seconds while the block runs (in a daemon thread).

    A failed beat is logged and retried at the next interval: it only risks the claim being
    taken over after the grace period, never the work itself.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                beat()
            except Exception as error:
                log.warning(
                    "%s failed (%s: %s); retrying in %.0f s", name, type(error).__name__, error, interval
                )

    beat()
    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=max(1.0, interval))


def claim_alive(claim: dict[str, Any], grace_period: float) -> bool:
    """Whether a claim (``{"owner", "heartbeat": time.time() of its last beat}``) is still held.

    The rule of the journal storage's trials: a claim is dead once its holder has not beaten
    for ``grace_period`` seconds.
    """
    return time.time() - float(claim.get("heartbeat", 0.0)) <= grace_period


def fail_stale_trials(study: Any, grace_period: float, retry: Any) -> list[int]:
    """Fail RUNNING trials whose worker stopped beating, queue their retries; return their numbers."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    if _uses_optuna_heartbeat(storage):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        gone = before - {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        # Of the trials that stopped running meanwhile, the stale ones are FAIL without a recorded error.
        return sorted(
            t.number
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.number in gone and not t.user_attrs.get("error")
        )
    failed = []
    now = time.time()
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = frozen.datetime_start.timestamp() if isinstance(frozen.datetime_start, datetime) else now
        last = max(float(frozen.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started)
        if now - last <= grace_period:
            continue
        try:
            if storage.set_trial_state_values(_trial_id(study, frozen.number), state=TrialState.FAIL):
                failed.append(frozen.number)
                retry(study, storage.get_trial(_trial_id(study, frozen.number)))
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return failed
