"""Leases: which live process holds an MLflow run, so that two jobs never share one run.

A run's holder writes the tag ``emoexp.lease`` (host, pid, the pid's start time, heartbeat time)
when it opens the run, refreshes the heartbeat from a background thread and removes the tag when
the run ends. A lease is *live* while its process is alive on this host (checked directly, so a
``kill -9`` frees it at once), or, for a holder on another host, while its heartbeat is younger
than :data:`LEASE_TTL_S`. The tuner's trials can use the same functions (docs/design.md#resume-and-leases).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

LEASE_TAG = "emoexp.lease"
HEARTBEAT_S = 30.0
# Three missed heartbeats: long enough for a slow store, short enough for a requeued job to find its run.
LEASE_TTL_S = 3 * HEARTBEAT_S


def _process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (tells a reused pid apart), or ``""``."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


@dataclass(frozen=True)
class Lease:
    """Who holds a run: ``host``, ``pid`` and that process's start time, and the last heartbeat."""

    host: str
    pid: int
    started: str
    heartbeat: float

    @classmethod
    def mine(cls) -> Lease:
        """A lease for this process, with a fresh heartbeat."""
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()), time.time())

    @classmethod
    def parse(cls, text: str | None) -> Lease | None:
        """The lease stored in a tag value, or ``None`` for a missing or unreadable tag."""
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError):
            return None

    def dumps(self) -> str:
        """The tag value."""
        return json.dumps(asdict(self), sort_keys=True)

    def is_live(self, now: float | None = None) -> bool:
        """Whether the holder still runs (see the module docstring)."""
        if self.host == socket.gethostname():
            return _process_start(self.pid) == self.started if self.started else _pid_exists(self.pid)
        return ((now or time.time()) - self.heartbeat) < LEASE_TTL_S

    def describe(self) -> str:
        """``pid 123 on host h (heartbeat 12 s ago)``."""
        return f"pid {self.pid} on host {self.host} (heartbeat {time.time() - self.heartbeat:.0f} s ago)"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Refresh a lease every :data:`HEARTBEAT_S` seconds from a daemon thread until stopped.

    Args:
        write: Called with the lease's tag value; errors are passed to ``on_error`` and the
            heartbeat goes on (a store that is briefly down must not end the run).
        on_error: Told about a failed write.
    """

    def __init__(self, write: Callable[[str], None], on_error: Callable[[BaseException], None]):
        self._write = write
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="emoexp-lease", daemon=True)

    def start(self) -> None:
        """Start beating (the first lease is written by the caller)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write(Lease.mine().dumps())
            except Exception as error:
                self._on_error(error)
