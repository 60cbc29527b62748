"""Config composition helpers and the checks that reject incoherent combinations early.

Hydra already rejects unknown group options and unknown keys (listing what exists);
these checks cover what Hydra cannot know: which modalities a model or a corpus supports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from emoexp.modalities import MODALITIES

# The Hydra config groups ship inside the package (package data). In a checkout src/emoexp/conf
# links to the repository's conf/, which resolve() turns back into that path for messages.
CONF_DIR = (Path(__file__).resolve().parent / "conf").resolve()


class ConfigError(ValueError):
    """The composed configuration is incoherent; the message says what to change."""


def instantiate(node: Any, **kwargs: Any) -> Any:
    """Instantiate a config node (``_target_``) with plain Python containers for its arguments."""
    import hydra  # hydra.utils pulls in more than config printing needs
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(node, **kwargs, _convert_="all")
    except InstantiationException as error:
        # Hydra wraps what the target raised; the original (a CorpusError naming data.root, a
        # ValueError of a model) is the message the user needs, and the type callers catch.
        if error.__cause__ is None:
            raise
        raise error.__cause__.with_traceback(error.__cause__.__traceback__) from None


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """Names of the options of a config group (its YAML files)."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def options_supporting(group: str, modality: str, key: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """Options of ``group`` whose ``key`` (a mapping or list of modalities) contains ``modality``."""
    options = []
    for name in group_options(group, conf_dir):
        node = OmegaConf.load(conf_dir / group / f"{name}.yaml").get(key)
        if node is not None and modality in node:
            options.append(name)
    return options


def model_modalities(cfg: DictConfig) -> list[str]:
    """Modalities a model config supports (the keys of ``model.features``)."""
    features = cfg.model.get("features")
    return list(features.keys()) if features is not None else list(cfg.model.get("modalities", []))


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` if modality, data and model do not fit together."""
    modality = cfg.get("modality")
    if modality not in MODALITIES:
        raise ConfigError(f"modality={modality!r} is unknown; choose one of {list(MODALITIES)}.")
    supported = model_modalities(cfg)
    if modality not in supported:
        compatible = options_supporting("model", modality, "features") + options_supporting(
            "model", modality, "modalities"
        )
        raise ConfigError(
            f"model={cfg.model.name} does not support modality={modality} (it supports {supported}). "
            f"Models for {modality}: {sorted(set(compatible))}."
        )
    data_modalities: Sequence[str] = cfg.data.get("modalities", [])
    if modality not in data_modalities:
        compatible = options_supporting("data", modality, "modalities")
        raise ConfigError(
            f"data={cfg.data.name} has no {modality} input (it provides {list(data_modalities)}). "
            f"Corpora with {modality}: {compatible}."
        )
