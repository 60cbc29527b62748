"""Bind every ``_target_`` of a config to its signature, so a typo'd key is found before a run exists.

Hydra checks config *groups* and known keys of structured configs, but a ``+trainer.max_epoch=1``
(Hydra's own suggestion for a typo) or a misspelt model argument only fails when the object is
built, deep into a run. Binding each node's keys to ``inspect.signature`` of its target (as
torchtune validates its recipes) names the key and the closest valid one up front.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from emoexp.config import ConfigError

# Keys Hydra's instantiate reads itself; never arguments of the target.
INSTANTIATE_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})
# Sub-trees that are not instantiated by a run: search spaces and Hydra's own settings.
SKIPPED_ROOTS = frozenset({"hydra", "hparams_search"})


def locate(path: str) -> Any:
    """Import ``package.module.Name`` (attributes of attributes allowed).

    Raises:
        ConfigError: If nothing by that path can be imported.
    """
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            break
        return obj
    raise ConfigError(f"_target_={path!r} cannot be imported; check the module and name.")


def target_nodes(cfg: DictConfig, prefix: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every ``(key path, node)`` with a ``_target_``, depth first, outside :data:`SKIPPED_ROOTS`."""
    items: Any = cfg.items_ex(resolve=False) if isinstance(cfg, DictConfig) else enumerate(cfg)
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if not prefix and key in SKIPPED_ROOTS:
            continue
        if isinstance(value, DictConfig):
            if "_target_" in value:
                yield path, value
            yield from target_nodes(value, path)
        elif isinstance(value, ListConfig):
            yield from target_nodes(value, path)


def check_node(path: str, node: DictConfig) -> None:
    """Raise :class:`ConfigError` if a key of ``node`` is not an argument of its target.

    Arguments the run adds when it builds the object (``num_outputs``, callbacks, ...) may be
    missing; only keys the target cannot take are errors.
    """
    target = locate(str(node._target_))
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # a builtin without an introspectable signature: nothing to check
    parameters = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    names = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in node:
        if key in INSTANTIATE_KEYS or key in names:
            continue
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f"did you mean {path}.{close[0]}? " if close else ""
        raise ConfigError(
            f"{path}.{key} is not an argument of {node._target_}: {hint}"
            f"Valid keys of {path}: {sorted(n for n in names if n != 'self')}."
        )


def check_targets(cfg: DictConfig) -> None:
    """Bind every ``_target_`` node of ``cfg`` (see :func:`check_node`)."""
    for path, node in target_nodes(cfg):
        check_node(path, node)


def missing_values(cfg: DictConfig) -> list[str]:
    """Keys still ``???`` in ``cfg`` (outside :data:`SKIPPED_ROOTS`)."""
    return sorted(k for k in OmegaConf.missing_keys(cfg) if k.split(".")[0] not in SKIPPED_ROOTS)
