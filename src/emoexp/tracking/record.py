"""What a run records so it can be reproduced: config, seed, commit, data, environment."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
TRACKED_PACKAGES = (
    "emoexp",
    "torch",
    "torchaudio",
    "torchvision",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "optuna",
    "mlflow",
    "transformers",
    "timm",
    "scikit-learn",
    "numpy",
    "pandas",
)


def flatten_config(cfg: DictConfig | dict, prefix: str = "") -> dict[str, str]:
    """Flatten a (resolved) config to ``{"model.net.hidden_size": "128", ...}`` for MLflow params."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, str] = {}

    def visit(node: Any, key: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                visit(v, f"{key}.{k}" if key else str(k))
        else:
            flat[key] = str(node)[:MAX_PARAM_LENGTH]

    visit(container, prefix)
    return flat


def git_commit(path: str | Path = ".") -> str:
    """Return the current git commit of ``path`` (``+dirty`` if modified), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def environment() -> dict[str, Any]:
    """Python, platform and versions of the packages that decide a run's numbers."""
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions}
