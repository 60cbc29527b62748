"""Which trials are alive: claiming queued trials, heartbeats, and failing a dead worker's trial.

A study holds exactly ``n_trials`` trials because they are queued up front (WAITING) and workers
only ever *claim* a queued trial (the WAITING -> RUNNING transition ``Study.ask`` uses, made
atomic by the storage or, on SQLite, by :func:`emoexp.tuning.storage.claim_lock`); they never
create one. A worker beats for its RUNNING trial; a trial whose worker was killed stops beating
and, after the grace period, any worker fails it and ``RetryHeartbeatStaleTrialCallback`` queues a
copy with the same parameters.

No two hosts' wall clocks are ever compared. Every beat is stamped, and every silence judged,
with the *storage's* time (:func:`storage_clock`):

* PostgreSQL and MySQL/MariaDB keep Optuna's own heartbeat, which the database server stamps
  (``now()``) and judges against its own ``now()``; :class:`ServerClock` reads the same clock for
  the final run's claim.
* SQLite and journal files (one file server) beat by touching a file per trial in
  ``<storage file>.beats/``: the file server stamps its modification time, and "now" is the
  modification time of a file touched a moment ago (:class:`FileClock`). A slow or locked SQLite
  file does not delay a beat.

A beat that fails is logged as a warning and counted (trial user attribute
``heartbeat_failures``). A live worker whose beats came late and whose trial was declared stale
meanwhile keeps its result: it *adopts* the retry copy of its trial while that copy is still
queued (:class:`Ownership`), so the parameters are trained once and counted once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

FAILURES_ATTR = "heartbeat_failures"
ADOPTED_ATTR = "emoexp:adopted_from"
BEATS_SUFFIX = ".beats"

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- clocks
class Clock(Protocol):
    """The storage's time, in seconds; comparable only with the same clock's other readings."""

    def now(self) -> float:
        """The storage's current time."""
        ...


class ServerClock:
    """A database server's time (``SELECT CURRENT_TIMESTAMP``), through the storage's engine.

    Args:
        engine: A SQLAlchemy engine connected to the study's database.
    """

    def __init__(self, engine: Any):
        self.engine = engine

    def now(self) -> float:
        """The server's ``CURRENT_TIMESTAMP`` as seconds (a naive value is read as UTC)."""
        import sqlalchemy

        with self.engine.connect() as connection:
            stamp = connection.execute(sqlalchemy.text("SELECT CURRENT_TIMESTAMP")).scalar()
        if isinstance(stamp, str):  # SQLite answers text
            stamp = datetime.fromisoformat(stamp)
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


class FileClock:
    """A file server's time: the modification times that it stamps on touched files.

    Args:
        folder: A folder on the storage's file system (created when missing).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._clock = self.folder / f"clock-{socket.gethostname()}-{os.getpid()}"

    def stamp(self, name: str) -> float:
        """Touch ``<folder>/<name>`` (the file server sets its time); return that time."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        path.touch()  # no explicit time: the (file) server stamps its own
        return path.stat().st_mtime

    def last(self, name: str) -> float | None:
        """When ``<folder>/<name>`` was last touched, or ``None`` if it never was."""
        try:
            return (self.folder / name).stat().st_mtime
        except FileNotFoundError:
            return None

    def now(self) -> float:
        """The file server's time now (the stamp of a file of this process touched now)."""
        return self.stamp(self._clock.name)


def _unwrap(storage: Any) -> Any:
    """The storage behind Optuna's cache wrapper (``_CachedStorage``), else ``storage`` itself."""
    from optuna.storages._cached_storage import _CachedStorage

    return storage._backend if isinstance(storage, _CachedStorage) else storage


def beat_folder(storage: Any) -> Path | None:
    """Where a file storage's (SQLite, journal) beat files live; ``None`` for a database server."""
    backend = _unwrap(storage)
    journal = getattr(getattr(backend, "_backend", None), "_file_path", None)
    if journal is not None:
        return Path(str(journal) + BEATS_SUFFIX)
    engine = getattr(backend, "engine", None)
    if engine is not None and engine.url.get_backend_name() == "sqlite":
        return Path(str(engine.url.database) + BEATS_SUFFIX)
    return None


def storage_clock(storage: Any) -> Clock:
    """The clock of ``storage``: its file server's (SQLite, journal) or its database server's."""
    folder = beat_folder(storage)
    return FileClock(folder) if folder is not None else ServerClock(_unwrap(storage).engine)


# ------------------------------------------------------------------------------------- claims
def _trial_id(study: Any, number: int) -> int:
    storage = study._storage
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number
    )


def _uses_optuna_heartbeat(storage: Any) -> bool:
    """Database servers beat natively (server time); SQLite and the journal beat by file."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return callable(interval) and interval() is not None and beat_folder(storage) is None


def _beat_once(storage: Any, trial_id: int) -> None:
    """One beat for ``trial_id``, stamped by the storage's server."""
    if _uses_optuna_heartbeat(storage):
        storage.record_heartbeat(trial_id)
    else:
        FileClock(beat_folder(storage)).stamp(f"trial-{trial_id}")


def take(study: Any, trial_id: int) -> bool:
    """Atomically move ``trial_id`` from WAITING to RUNNING; whether this call did.

    The trial beats first: a queued trial that ran before (an interrupted trial released to the
    queue) has an old beat, which must not make it look stale the moment it runs again.
    """
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    try:
        _beat_once(storage, trial_id)
        return bool(storage.set_trial_state_values(trial_id, state=TrialState.RUNNING))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another worker took and finished it meanwhile


def claim(study: Any) -> Any | None:
    """Atomically take one queued (WAITING) trial of ``study``; ``None`` when none is left."""
    import optuna
    from optuna.trial import TrialState

    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = _trial_id(study, frozen.number)
        if take(study, trial_id):
            return optuna.trial.Trial(study, trial_id)
    return None


# -------------------------------------------------------------------------------- heartbeats
class Ownership:
    """The trial a worker's result belongs to, kept right while its beats may come late.

    Normally the trial it claimed. When another worker declared that trial stale (its beats
    were late, not missing for good) and queued a retry copy, the worker *adopts* the copy while
    it is still queued: the copy is claimed here, the running ``trial`` object is pointed at it,
    and the result is told to it. A copy that another worker already runs is left to it.

    Args:
        study: The study.
        trial: The claimed trial (re-pointed on adoption).
    """

    def __init__(self, study: Any, trial: Any):
        self.study = study
        self.trial = trial
        self.claimed = trial.number
        self.lost = False

    @property
    def trial_id(self) -> int:
        """The storage id of the trial this worker now owns."""
        return self.trial._trial_id

    def check(self) -> bool:
        """Whether the owned trial is still RUNNING here (adopting its queued retry if need be)."""
        from optuna.trial import TrialState

        if self.lost:
            return False
        frozen = self.study._storage.get_trial(self.trial_id)
        if frozen.state == TrialState.RUNNING:
            return True
        retry = self._queued_retry(frozen.number)
        if retry is not None and take(self.study, retry._trial_id):
            self._adopt(retry)
            return True
        self.lost = True
        log.warning(
            "trial %d was declared stale (its heartbeats came late) and its retry runs elsewhere: "
            "this worker's result for it will not be counted",
            frozen.number,
        )
        return False

    def _queued_retry(self, number: int) -> Any | None:
        from optuna.trial import TrialState

        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if (frozen.system_attrs.get("retry_history") or [None])[-1] == number:
                return frozen
        return None

    def _adopt(self, retry: Any) -> None:
        import optuna

        stale = self.trial.number
        retry_id = _trial_id(self.study, retry.number)
        # The same Trial object, re-pointed: the pruning callback already holds it.
        optuna.trial.Trial.__init__(self.trial, self.study, retry_id)
        self.trial.set_user_attr(ADOPTED_ATTR, self.claimed)
        log.warning(
            "trial %d was declared stale while this worker was still training it (late heartbeats): "
            "adopted its queued retry, trial %d, which gets this result",
            stale,
            retry.number,
        )


@contextmanager
def heartbeat(study: Any, trial: Any, interval: float, owner: Ownership | None = None) -> Iterator[Ownership]:
    """Beat for ``trial`` every ``interval`` seconds while the block runs (in a daemon thread).

    Each beat also checks that the trial is still this worker's (:meth:`Ownership.check`). A
    failed beat is logged and counted, and the count is written to the trial (user attribute
    ``heartbeat_failures``) once the storage answers again.

    Yields:
        The worker's :class:`Ownership` of the trial (``owner``, or a new one).
    """
    owner = owner or Ownership(study, trial)
    failures = [0, 0]  # [counted, written to the trial]

    def beat() -> None:
        if not owner.check():
            return
        _beat_once(study._storage, owner.trial_id)
        if failures[0] != failures[1]:
            owner.trial.set_user_attr(FAILURES_ATTR, failures[0])
            failures[1] = failures[0]

    def failed(error: BaseException) -> None:
        failures[0] += 1

    with beating(beat, interval, f"heartbeat of trial {trial.number}", failed):
        yield owner


@contextmanager
def beating(
    beat: Callable[[], None],
    interval: float,
    name: str = "heartbeat",
    on_error: Callable[[BaseException], None] | None = None,
) -> Iterator[None]:
    """Call ``beat`` now and every ``interval`` seconds while the block runs (in a daemon thread).

    A failed beat is logged as a warning (and passed to ``on_error``) and retried at the next
    interval: it only risks the claim being taken over after the grace period, never the work.
    """
    stop = threading.Event()

    def attempt() -> None:
        try:
            beat()
        except Exception as error:
            if on_error is not None:
                on_error(error)
            log.warning("%s failed (%s: %s); retrying in %.0f s", name, type(error).__name__, error, interval)

    def loop() -> None:
        while not stop.wait(interval):
            attempt()

    attempt()
    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=max(1.0, interval))


def claim_alive(claim: dict[str, Any], grace_period: float, now: float) -> bool:
    """Whether a claim (``{"owner", "heartbeat": its last beat by the storage's clock}``) is held.

    Args:
        claim: The claim, its ``heartbeat`` read from the same clock as ``now``.
        grace_period: Seconds of silence after which the holder counts as dead.
        now: The storage's time now (:func:`storage_clock`).
    """
    return now - float(claim.get("heartbeat", 0.0)) <= grace_period


# ------------------------------------------------------------------------------- stale trials
def fail_stale_trials(study: Any, grace_period: float, retry: Any) -> list[int]:
    """Fail RUNNING trials whose worker stopped beating, queue their retries; return their numbers."""
    storage = study._storage
    if _uses_optuna_heartbeat(storage):
        return _fail_stale_natively(study)
    from optuna.trial import TrialState

    clock = FileClock(beat_folder(storage))
    failed = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = _trial_id(study, frozen.number)
        last = clock.last(f"trial-{trial_id}")
        if last is None:  # claimed before the first beat: give it its first beat
            clock.stamp(f"trial-{trial_id}")
            continue
        if clock.now() - last > grace_period and _fail(study, trial_id):
            failed.append(frozen.number)
            retry(study, storage.get_trial(trial_id))
    return failed


def _fail(study: Any, trial_id: int) -> bool:
    import optuna
    from optuna.trial import TrialState

    try:
        return bool(study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _fail_stale_natively(study: Any) -> list[int]:
    """Optuna's server-timed stale check (PostgreSQL, MySQL): the numbers of the trials failed *here*.

    As ``optuna.storages.fail_stale_trials``, but it says which trials this call failed: of two
    workers checking together, only the one whose FAIL took effect records the trial and retries it.
    """
    import copy

    storage = study._storage
    callback = storage.get_heartbeat_stale_trial_callback()
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        if _fail(study, trial_id):
            frozen = copy.deepcopy(storage.get_trial(trial_id))
            if callback is not None:
                callback(study, frozen)
            failed.append(frozen.number)
    return sorted(failed)


def release(study: Any, trial: Any) -> bool:
    """Put an interrupted RUNNING trial back in the queue (WAITING): the next claim resumes it.

    Returns:
        Whether the trial was released (``False`` when it had been failed as stale meanwhile).
    """
    import optuna
    from optuna.trial import TrialState

    try:
        return bool(study._storage.set_trial_state_values(trial._trial_id, state=TrialState.WAITING))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
