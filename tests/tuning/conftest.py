"""Helpers for tuning tests: real Hydra composition of conf/tune.yaml, real storages under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

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
