"""A real SLURM cluster and a real MLflow tracking server for the cluster tests.

* ``slurm``: the one-node cluster of ``scripts/cluster/up.sh`` (munged, slurmctld, slurmd on
  127.0.0.1, partition ``debug``). As root the fixture runs ``up.sh`` itself, which installs
  Debian's packages when they are missing and is quick when the cluster is up.
* ``mlflow_server``: ``scripts/cluster/mlflow_server.sh`` on a free port, its backend a fresh
  PostgreSQL database (127.0.0.1:5432, user postgres) and its artifacts served over HTTP.
* ``fresh_database``: a new PostgreSQL database (an Optuna study's storage), dropped at the end.

A component that cannot exist here (not root and no SLURM installed, no PostgreSQL server) skips
the tests with the reason; with ``EMOEXP_REQUIRE_CLUSTER=1`` (set by ``.ci/run``) it fails them
instead, so CI never skips them silently.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "cluster"
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
# Options that fit the cluster path's GPU jobs (scripts/slurm/*.sbatch) onto the CPU test node.
CPU_JOB = ["--gres=none", "--mem=2G", "--cpus-per-task=1", "--time=15"]


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail where the cluster must exist (``EMOEXP_REQUIRE_CLUSTER=1``)."""
    if os.environ.get("EMOEXP_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"{reason} (EMOEXP_REQUIRE_CLUSTER=1: the cluster tests must run here)")
    pytest.skip(reason)


def job_env(**extra: str) -> dict[str, str]:
    """The environment of ``sbatch`` (exported to the job): this interpreter first on PATH, one thread."""
    env = dict(os.environ)
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        MLFLOW_ENABLE_ASYNC_LOGGING="false",
        GIT_PYTHON_REFRESH="quiet",
    )
    env.update(extra)
    return env


@dataclass
class Slurm:
    """The test cluster: submit jobs, follow them through ``squeue``/``scontrol`` (no accounting daemon)."""

    cpu_job: tuple[str, ...] = tuple(CPU_JOB)

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        """The environment of a job (:func:`job_env`)."""
        return job_env(**extra)

    def submit(self, script: Path, *args: str, options: list[str], cwd: Path, env: dict[str, str]) -> str:
        """``sbatch --parsable`` a script; return the job id (of an array: the array's id)."""
        result = subprocess.run(
            ["sbatch", "--parsable", *options, str(script), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"sbatch failed: {result.stderr}"
        return result.stdout.strip().split(";")[0]

    def states(self, job: str) -> list[str]:
        """States of the job's (or array's) tasks still in the queue: PENDING, RUNNING, COMPLETING..."""
        result = subprocess.run(
            ["squeue", "--noheader", "--jobs", job, "--format=%T"], capture_output=True, text=True, timeout=30
        )
        return result.stdout.split()

    def wait(self, job: str, timeout: float, until: Callable[[list[str]], bool] | None = None) -> None:
        """Wait until the job left the queue (or ``until(states)``); cancel it and fail on timeout."""
        until = until or (lambda states: not states)
        deadline = time.monotonic() + timeout
        while not until(self.states(job)):
            if time.monotonic() > deadline:
                subprocess.run(["scancel", job], timeout=30)
                pytest.fail(f"job {job} still {self.states(job)} after {timeout:.0f} s: cancelled")
            time.sleep(1)

    def records(self, job: str) -> list[dict[str, str]]:
        """``scontrol show job`` of every task of a finished job (kept by slurmctld for MinJobAge)."""
        result = subprocess.run(
            ["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30, check=True
        )
        return [dict(re.findall(r"(\w+)=(\S*)", block)) for block in result.stdout.split("\n\n") if block]


def _run_up() -> None:
    result = subprocess.run(
        [str(SCRIPTS / "up.sh")], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/cluster/up.sh failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def slurm() -> Slurm:
    """The one-node test cluster, brought up when we are root; skipped where it cannot exist."""
    if os.geteuid() == 0 and (shutil.which("sinfo") or shutil.which("apt-get")):
        _run_up()  # installs, configures and starts what is missing; about 0.1 s when up
    elif shutil.which("sinfo") is None:
        unavailable("no SLURM here: sinfo is missing, and scripts/cluster/up.sh needs root and apt-get")
    state = subprocess.run(
        ["sinfo", "--noheader", "--partition=debug", "--format=%t"], capture_output=True, text=True
    ).stdout.strip()
    if state.rstrip("*~#") not in ("idle", "mix", "alloc"):
        unavailable(
            f"SLURM partition debug is not up (sinfo: {state or 'nothing'}); run scripts/cluster/up.sh"
        )
    return Slurm()


def _postgres_admin():
    import psycopg2

    try:
        connection = psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5
        )
    except psycopg2.OperationalError as error:
        reason = str(error).strip().splitlines()[0]
        unavailable(f"no PostgreSQL server at 127.0.0.1:5432 (user postgres): {reason}")
    connection.autocommit = True
    return connection


@pytest.fixture(scope="session")
def fresh_database() -> Iterator[Callable[[str], str]]:
    """Create PostgreSQL databases ``emoexp_<purpose>_<random>``; return their URLs; drop them at the end."""
    created: list[str] = []

    def create(purpose: str) -> str:
        name = f"emoexp_{purpose}_{uuid.uuid4().hex[:8]}"
        admin = _postgres_admin()
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        created.append(name)
        return f"{POSTGRES}/{name}"

    yield create
    if created:
        admin = _postgres_admin()
        for name in created:
            with contextlib.suppress(Exception), admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MlflowService:
    """The test session's ``mlflow server`` (scripts/cluster/mlflow_server.sh), which a test may restart."""

    env: dict[str, str]
    uri: str = ""

    def _script(self, action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SCRIPTS / "mlflow_server.sh"), action],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def start(self) -> str:
        """Start the server (or find it answering); return its URI."""
        started = self._script("start")
        if started.returncode != 0:
            pytest.fail(f"scripts/cluster/mlflow_server.sh start failed:\n{started.stderr[-3000:]}")
        self.uri = started.stdout.strip().splitlines()[-1]
        return self.uri

    def stop(self) -> None:
        """Stop the server (its database and artifacts stay)."""
        self._script("stop")


@pytest.fixture(scope="session")
def mlflow_service(
    fresh_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowService]:
    """An ``mlflow server`` on 127.0.0.1 (fresh PostgreSQL backend, served artifacts), started."""
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        EMOEXP_MLFLOW_PORT=str(_free_port()),
        EMOEXP_MLFLOW_BACKEND=fresh_database("mlflow"),
        EMOEXP_MLFLOW_DIR=str(tmp_path_factory.mktemp("mlflow-server")),
    )
    service = MlflowService(env)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def mlflow_server(mlflow_service: MlflowService) -> str:
    """The tracking URI of the session's MLflow server (started again if a test left it stopped)."""
    return mlflow_service.start()
