"""Helpers for the scale-up tests: ``python train.py`` subprocesses and reading their MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture
def probe_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``step_probe.StepProbe`` importable by in-process Hydra instantiation, its counts reset."""
    monkeypatch.syspath_prepend(str(HERE))
    import step_probe

    step_probe.StepProbe.reached.clear()


def subprocess_env() -> dict[str, str]:
    """The environment of a ``python train.py`` subprocess: one thread, offline, the probe importable."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        MLFLOW_ENABLE_ASYNC_LOGGING="false",
        GIT_PYTHON_REFRESH="quiet",
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


@pytest.fixture
def train_command(tmp_path: Path, cache_dir: Path) -> Callable[[list[str]], list[str]]:
    """``python train.py`` on tiny data with every output (Hydra's too) under ``tmp_path``."""

    def command(overrides: list[str]) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "train.py"),
            "debug=fast",
            f"paths.output_dir={tmp_path / 'outputs'}",
            f"paths.cache_dir={cache_dir}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
            *overrides,
        ]

    return command


@pytest.fixture
def run_train(train_command: Callable[[list[str]], list[str]]) -> Callable[..., None]:
    """Run ``python train.py`` to completion; fail with its output if it fails."""

    def run(overrides: list[str], timeout: float = 1200) -> None:
        result = subprocess.run(
            train_command(overrides),
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]

    return run


@pytest.fixture
def start_train(train_command: Callable[[list[str]], list[str]]) -> Callable[[list[str]], subprocess.Popen]:
    """Start ``python train.py`` in the background (its output in the returned process's pipes)."""

    def start(overrides: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            train_command(overrides),
            cwd=ROOT,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    return start


@pytest.fixture
def store_runs(tracking_uri: str) -> Callable[..., list]:
    """Every run of an experiment (default ``emoexp-audio``) in the test's store, oldest first."""

    def runs(experiment: str = "emoexp-audio") -> list:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri)
        found = client.get_experiment_by_name(experiment)
        return sorted(client.search_runs([found.experiment_id]), key=lambda r: r.info.start_time)

    return runs


@pytest.fixture
def metric_history(tracking_uri: str) -> Callable[[str, str], list[tuple[int, float]]]:
    """``(step, value)`` of every logged point of a metric of a run, in step order."""

    def points(run_id: str, key: str) -> list[tuple[int, float]]:
        import mlflow

        return sorted(
            (m.step, m.value) for m in mlflow.MlflowClient(tracking_uri).get_metric_history(run_id, key)
        )

    return points
