"""A study's fixed settings: everything a trial trains with that the search does not choose.

Trials of one study are comparable only when they share these settings (epochs, samples,
protocol, data, label scheme, ...). The study records them when it is created (a fingerprint and
the flattened settings, as a study user attribute); a worker or a final step whose own fixed
settings differ is refused, with the keys that differ. Left out: the searched keys, what only says
where things go or how fast they run (:data:`emoexp.engine.resume.VOLATILE_KEYS`), the tuner's
own settings and the pruner, which decide how the study runs, not what a trial trains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from emoexp.config import ConfigError
from emoexp.engine.resume import is_volatile

FIXED_ATTR = "emoexp:fixed_settings"
NOT_FIXED = ("tuner", "pruner", "hydra", "task_name")
"""Top-level keys of the tune config that are not a trial's training settings."""


def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        flat: dict[str, str] = {}
        for key, value in node.items():
            flat |= _flatten(value, f"{prefix}{key}.")
        return flat or {prefix.rstrip("."): "{}"}
    return {prefix.rstrip("."): json.dumps(node, sort_keys=True, default=str)}


def _under(key: str, roots: Iterable[str]) -> bool:
    return any(key == root or key.startswith(f"{root}.") for root in roots)


def fixed_settings(
    cfg: DictConfig, searched: Iterable[str], space_fixed: dict[str, str] | None = None
) -> dict[str, str]:
    """The flattened fixed settings of ``cfg`` (key -> JSON value, interpolations unresolved).

    Args:
        cfg: A composed ``tune`` config (without its ``hydra`` node).
        searched: The search space's sampled keys (``+`` prefixes allowed); a config group's key
            (``optimizer``) leaves out the whole group.
        space_fixed: The search space's plain values (``seed: 7``), applied to every trial: they
            are recorded as written, in place of the config's value.
    """
    space_fixed = {k.lstrip("+~"): v for k, v in (space_fixed or {}).items()}
    roots = [*NOT_FIXED, *(key.lstrip("+~") for key in searched), *space_fixed]
    flat = _flatten(OmegaConf.to_container(cfg, resolve=False))
    flat = {k: v for k, v in flat.items() if not _under(k, roots) and not is_volatile(k)}
    flat |= {k: json.dumps(str(v)) for k, v in space_fixed.items()}
    return dict(sorted(flat.items()))


def fingerprint(settings: dict[str, str]) -> str:
    """A short hash of flattened fixed settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def record(settings: dict[str, str]) -> dict[str, Any]:
    """The study user attribute that records ``settings``."""
    return {"fingerprint": fingerprint(settings), "settings": settings}


def check(recorded: dict[str, Any] | None, settings: dict[str, str], study_name: str) -> None:
    """Refuse ``settings`` unless they are the study's recorded fixed settings.

    Raises:
        ConfigError: The fixed settings differ; the message names each key that differs, with
            the study's value and this command's.
    """
    if not recorded or recorded.get("fingerprint") == fingerprint(settings):
        return
    theirs = recorded.get("settings") or {}
    keys = sorted(k for k in set(theirs) | set(settings) if theirs.get(k) != settings.get(k))
    shown = "; ".join(
        f"{k}: study {theirs.get(k, '(unset)')}, here {settings.get(k, '(unset)')}" for k in keys[:12]
    )
    more = f" and {len(keys) - 12} more" if len(keys) > 12 else ""
    raise ConfigError(
        f"study {study_name!r} was created with other fixed settings, and its trials would not be "
        f"comparable with this command's: {shown}{more}. Run with the study's settings, or give this "
        "search another hydra.sweeper.study_name."
    )
