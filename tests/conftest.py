"""Shared fixtures: real Hydra composition, a per-test MLflow store, a per-session data cache."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# One intra-op thread: on small CPU machines OpenMP threads fighting other processes are
# many times slower than one (measured: a BiLSTM step 0.26 s with 1 thread, 2.8 s with 2 under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data/feature cache for the whole session (the embedded corpora are generated once)."""
    return tmp_path_factory.mktemp("emoexp-cache")


@pytest.fixture
def compose(tmp_path: Path, cache_dir: Path) -> Callable[..., object]:
    """Compose ``conf/train.yaml`` with overrides, writing outputs and runs under ``tmp_path``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from emoexp.config import CONF_DIR

    def _compose(overrides: list[str] | tuple[str, ...] = (), debug: bool = True):
        base = [
            f"paths.output_dir={tmp_path / 'outputs'}",
            f"paths.cache_dir={cache_dir}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        ]
        if debug:
            base.append("debug=fast")
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name="train", overrides=[*base, *overrides])

    return _compose


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """The per-test MLflow store used by ``compose``."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _forget_the_process_wide_tracking_uri():
    """A test that calls ``mlflow.set_tracking_uri`` must not redirect the next test's runs.

    MLflow keeps the URI in a module global that outlives the test; there is no public reset
    (``set_tracking_uri("")`` means ``./mlruns``), so the global goes back to unset.
    """
    yield
    import sys

    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None:
        utils._tracking_uri = None
