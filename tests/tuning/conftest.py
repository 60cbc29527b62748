"""Helpers for tuning tests: real Hydra composition of conf/tune.yaml, real storages under tmp_path.

Database servers (``database_server``) are the local PostgreSQL and MariaDB of docs/tuning.md; a
test that needs one that does not answer is skipped with the reason, or fails where the servers
must exist (``EMOEXP_REQUIRE_DATABASES=1``, set by ``.ci/run``: CI never skips them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_WAIT_S = 180.0  # how long an mlflow server may take to answer after its start

SERVERS = {
    "postgresql": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
"""The database servers a study can live on, by kind (``database_server`` checks that they answer)."""

# Small, fast trials: tiny data, two epochs, a small pinned LSTM (pinned keys leave the search space).
FAST = [
    "debug=fast",
    "trainer.max_epochs=2",
    "model.net.hidden_size=16",
    "model.net.num_layers=1",
    "model.features.audio.n_mfcc=20",
    "tuner.heartbeat_interval=1",
    "tuner.grace_period=3",
    "tuner.threads_per_worker=1",
]


@pytest.fixture
def tune_overrides(tmp_path: Path, cache_dir: Path) -> Callable[..., list[str]]:
    """Overrides for a study whose storage, MLflow store and outputs live under ``tmp_path``."""

    def make(*extra: str, storage: str | None = None, search: str = "audio_lstm") -> list[str]:
        return [
            f"hparams_search={search}",
            *FAST,
            f"paths.output_dir={tmp_path / 'out'}",
            f"paths.cache_dir={cache_dir}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"hydra.sweeper.storage={storage or 'sqlite:///' + str(tmp_path / 'optuna.db')}",
            *extra,
        ]

    return make


def _compose_tune(overrides: list[str]):
    """Compose conf/tune.yaml (with its hydra node, as the tuner reads hydra.sweeper)."""
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="tune", overrides=overrides, return_hydra_config=True)


def _run_tune(overrides: list[str]):
    """Run the tuner in this process, as ``python -m emoexp.tune`` would."""
    from hydra import compose, initialize_config_dir

    from emoexp.config import CONF_DIR
    from emoexp.tuning import tune

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="tune", overrides=overrides, return_hydra_config=True)
        return tune(cfg, overrides)


def _tuner(overrides: list[str], hparams_search: str = "svm"):
    """A Tuner as ``python -m emoexp.tune`` builds it (composed here, in the caller's thread)."""
    from omegaconf import OmegaConf

    from emoexp.tuning.tuner import Tuner, settings_from_config

    cfg = _compose_tune(overrides)
    sweeper = cfg.hydra.sweeper
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return Tuner(cfg, settings_from_config(cfg, sweeper, hparams_search), list(overrides))


def unreachable(url: str) -> str | None:
    """Why the database server of ``url`` cannot be reached (a reason to skip), or ``None`` if it answers."""
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3}).connect():
            return None
    except Exception as error:  # any failure to connect is a reason to skip, reported as such
        return f"{url.split('@')[-1]} unreachable: {str(error).splitlines()[0]}"


def _free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TrackingServer:
    """A real ``mlflow server`` on 127.0.0.1:``port`` (SQLite backend, served artifacts) under ``folder``."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.uri = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server and wait until it answers (its database and artifacts are kept between starts)."""
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}", "--serve-artifacts",
                   "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"]  # fmt: skip
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + SERVER_WAIT_S
        while not self.answers():
            assert self.process.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)

    def answers(self) -> bool:
        """Whether the server answers its health check."""
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server at once (SIGKILL to its process group), as a crash would."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        """Stop the server and its workers (no-op when not started)."""
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


def tune_command(overrides: list[str]) -> list[str]:
    """The command line of the tuner in a subprocess."""
    return [sys.executable, "-m", "emoexp.tune", *overrides]


def subprocess_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")


def run_subprocess(command: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _load_study(storage_url: str, name: str):
    import optuna

    from emoexp.tuning.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage_url))


def _mlflow_runs(tracking_uri: str, experiment: str = "emoexp-audio") -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000) if found else []


@pytest.fixture
def compose_tune() -> Callable[[list[str]], object]:
    """Compose conf/tune.yaml with its hydra node."""
    return _compose_tune


@pytest.fixture
def make_tuner() -> Callable[..., object]:
    """Build a :class:`~emoexp.tuning.tuner.Tuner` from overrides (``hparams_search`` names the space)."""
    return _tuner


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[TrackingServer]:
    """An ``mlflow server`` on a free port, its files under ``tmp_path/server``; not started yet.

    Stopped at the end of the test. Until started, nothing answers on its port (``uri``).
    """
    folder = tmp_path / "server"
    folder.mkdir()
    server = TrackingServer(folder, _free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_server() -> Callable[[str], str]:
    """The URL of the ``postgresql`` or ``mariadb`` server (:data:`SERVERS`); skip when it does not answer."""

    def url(kind: str) -> str:
        reason = unreachable(SERVERS[kind])
        if reason and os.environ.get("EMOEXP_REQUIRE_DATABASES") == "1":
            pytest.fail(f"{reason} (EMOEXP_REQUIRE_DATABASES=1: the database tests must run here)")
        if reason:
            pytest.skip(reason)
        return SERVERS[kind]

    return url


@pytest.fixture
def run_tune() -> Callable[[list[str]], object]:
    """Run the tuner in-process on overrides."""
    return _run_tune


@pytest.fixture
def load_study() -> Callable[[str, str], object]:
    """Load a study from a storage URL."""
    return _load_study


@pytest.fixture
def mlflow_runs() -> Callable[..., list]:
    """All runs of an experiment in an MLflow store."""
    return _mlflow_runs


@pytest.fixture
def tuner_process() -> Callable[..., object]:
    """Run ``python -m emoexp.tune`` in a subprocess from the repository root."""

    def run(overrides: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
        return run_subprocess(tune_command(overrides), ROOT, timeout)

    return run


@pytest.fixture
def start_tuner(tmp_path: Path) -> Callable[..., subprocess.Popen]:
    """Start ``python -m emoexp.tune`` in the background (its own process group, output to a log)."""

    def start(overrides: list[str], log_name: str = "tuner.log") -> subprocess.Popen:
        log = open(tmp_path / log_name, "ab")  # noqa: SIM115 - closed with the process by the caller
        return subprocess.Popen(
            tune_command(overrides), cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    return start


@pytest.fixture
def train_process() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python train.py ARGS`` in a subprocess from the repository root."""

    def run(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
        return run_subprocess([sys.executable, "train.py", *args], ROOT, timeout)

    return run
