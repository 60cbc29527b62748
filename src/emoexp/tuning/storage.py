"""Opening the study's storage: a local SQLite/journal file or a PostgreSQL/MySQL server.

Every worker of a study opens the same storage URL. Database servers (PostgreSQL, MySQL) use
Optuna's heartbeat, stamped and judged by the server's clock: a worker's RUNNING trial that stops
beating for ``grace_period`` seconds is failed and, through ``RetryHeartbeatStaleTrialCallback``,
queued again with the same parameters. SQLite and journal files beat by file (their file server's
clock, :mod:`emoexp.tuning.liveness`), with the same behaviour. :func:`study_lock` makes a step
that reads and then writes the study (setup, claiming the final run) atomic on every storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emoexp.config import ConfigError

JOURNAL_PREFIX = "journal:"
DRIVERS = {
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "psycopg": "psycopg[binary]",
    "MySQLdb": "mysqlclient",
}


class StorageError(ConfigError):
    """The study storage cannot be opened; the message says which URL (password-free) and why."""


def resolve_url(url: str) -> str:
    """Make a local SQLite or journal path absolute (so every worker and ``optuna-dashboard`` agree)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///")).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        return f"sqlite:///{path.resolve()}"
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url.removeprefix(JOURNAL_PREFIX).removeprefix("//")).expanduser()
        return f"{JOURNAL_PREFIX}{(path if path.is_absolute() else Path.cwd() / path).resolve()}"
    if "://" not in url:
        raise StorageError(
            f"storage {url!r} is not a storage URL; use sqlite:///optuna.db, journal:optuna.log, "
            "postgresql+psycopg2://user@host:5432/db or mysql+pymysql://user@host:3306/db."
        )
    return url


def redact(url: str) -> str:
    """The URL without its password (safe to log and to show in MLflow)."""
    if url.startswith(JOURNAL_PREFIX) or url.startswith("sqlite"):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by open_storage; never echo a secret
        return url.split("@")[-1] if "@" in url else url


def is_journal(url: str) -> bool:
    """True for an Optuna journal-file storage URL (``journal:PATH``)."""
    return url.startswith(JOURNAL_PREFIX)


def claim_lock(url: str) -> contextlib.AbstractContextManager[Any]:
    """A lock around claiming and failing trials where the storage cannot make them atomic.

    PostgreSQL, MySQL and the journal make a queued trial's WAITING -> RUNNING transition atomic.
    Python's SQLite driver reads outside the transaction that writes, so two workers could claim
    the same trial: on SQLite (one machine by nature) the workers take turns through a lock file.
    """
    url = resolve_url(url)
    if not url.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock  # a dependency of torch

    return FileLock(url.removeprefix("sqlite:///") + ".lock", timeout=600)


def _lock_key(study_name: str) -> str:
    """A short, stable name of a study's lock (MySQL lock names have at most 64 characters)."""
    return "emoexp-" + hashlib.sha256(study_name.encode()).hexdigest()[:40]


@contextlib.contextmanager
def study_lock(url: str, study_name: str, timeout: float = 600.0) -> Iterator[None]:
    """Hold the study's exclusive lock (setup's count-and-enqueue, claiming the final run).

    One machine's files (SQLite, journal) take an ``fcntl`` lock file beside the storage
    (``<file>.study.lock``); PostgreSQL and MySQL/MariaDB take a server-side lock bound to the
    session (``pg_advisory_lock``, ``GET_LOCK``), which the server releases when a holder dies.

    Raises:
        StorageError: The lock was not obtained within ``timeout`` seconds.
    """
    url = resolve_url(url)
    if url.startswith("sqlite:///") or is_journal(url):
        from filelock import FileLock, Timeout  # a dependency of torch

        path = url.removeprefix("sqlite:///").removeprefix(JOURNAL_PREFIX) + ".study.lock"
        try:
            with FileLock(path, timeout=timeout, thread_local=False):
                yield
        except Timeout as error:
            raise StorageError(f"the study lock {path} was not free within {timeout:.0f} s") from error
        return
    with _server_lock(url, _lock_key(study_name), timeout):
        yield


@contextlib.contextmanager
def _server_lock(url: str, key: str, timeout: float) -> Iterator[None]:
    """A session lock on a PostgreSQL or MySQL server, held on its own connection."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    postgres = url.startswith("postgresql")
    if postgres:
        number = int(key.removeprefix("emoexp-")[:15], 16)  # a signed 64-bit advisory lock key
        take = sqlalchemy.text("SELECT pg_try_advisory_lock(:k)").bindparams(k=number)
        give = sqlalchemy.text("SELECT pg_advisory_unlock(:k)").bindparams(k=number)
    else:
        take = sqlalchemy.text("SELECT GET_LOCK(:k, 1)").bindparams(k=key)
        give = sqlalchemy.text("SELECT RELEASE_LOCK(:k)").bindparams(k=key)
    timeout_s = int(os.environ.get("EMOEXP_DB_CONNECT_TIMEOUT", "10"))
    engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": timeout_s})
    deadline = time.monotonic() + timeout
    try:
        connection = engine.connect()
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StorageError(f"the study lock on {redact(url)} is unreachable: {reason}") from error
    try:
        with connection:
            while not connection.execute(take).scalar():
                connection.rollback()  # no transaction left open while waiting
                if time.monotonic() > deadline:
                    raise StorageError(
                        f"the study lock {key} on {redact(url)} was not free within {timeout:.0f} s"
                    )
                time.sleep(0.2)
            connection.commit()
            try:
                yield
            finally:
                with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):  # a dead session drops it anyway
                    connection.execute(give)
                    connection.commit()
    finally:
        engine.dispose()


def open_storage(
    url: str, heartbeat_interval: int = 10, grace_period: int = 30, max_retry: int | None = 1
) -> Any:
    """Open (and on first use create) the storage at ``url``.

    Args:
        url: ``sqlite:///PATH``, ``journal:PATH``, or any SQLAlchemy URL Optuna's RDB storage takes.
        heartbeat_interval: Seconds between a running trial's heartbeats (RDB storages).
        grace_period: Seconds without a heartbeat after which a trial counts as dead.
        max_retry: How many times a dead worker's trial is queued again (``None``: always).

    Raises:
        StorageError: The server is unreachable, the driver is missing or the URL is malformed,
            before any trial starts.
    """
    import optuna
    import sqlalchemy.exc

    url = resolve_url(url)
    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix(JOURNAL_PREFIX))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as error:
            raise StorageError(f"journal storage {path} cannot be opened: {error}.") from error
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    native_heartbeat: int | None = heartbeat_interval
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several worker processes write to one SQLite file: wait for the lock rather than fail.
        engine_kwargs = {"connect_args": {"timeout": 120}}
        # SQLite's CURRENT_TIMESTAMP is each writer's own wall clock: beat by file instead.
        native_heartbeat = None
    else:
        engine_kwargs["connect_args"] = {
            "connect_timeout": int(os.environ.get("EMOEXP_DB_CONNECT_TIMEOUT", "10"))
        }
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=native_heartbeat,
            grace_period=grace_period if native_heartbeat else None,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=max_retry
            )
            if native_heartbeat
            else None,
        )
    except ModuleNotFoundError as error:
        package = DRIVERS.get(error.name or "", error.name)
        raise StorageError(
            f"storage {redact(url)} needs the database driver {error.name!r}: pip install {package}."
        ) from error
    except (sqlalchemy.exc.SQLAlchemyError, sqlalchemy.exc.ArgumentError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StorageError(
            f"storage {redact(url)} is unreachable or invalid: {reason}. Check that the database server "
            "is running and the URL (driver, host, port, database, user) is right; for a laptop use "
            "sqlite:///optuna.db."
        ) from error
