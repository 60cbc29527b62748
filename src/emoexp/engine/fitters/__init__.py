"""Fitters: one small contract behind which Lightning and scikit-learn models train on a fold.

A fitter turns a :class:`~emoexp.engine.fitters.base.FoldContext` into a
:class:`~emoexp.engine.fitters.base.FittedFold`; the fold epilogue
(:mod:`emoexp.engine.epilogue`) then does everything that is the same for every fitter. A new
kind of model registers its fitter in :data:`FITTERS` under the ``model.kind`` of its YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emoexp.config import ConfigError


def _lightning(ctx: Any) -> Any:
    from emoexp.engine.fitters.lightning import fit_lightning  # torch/lightning: only when training

    return fit_lightning(ctx)


def _sklearn(ctx: Any) -> Any:
    from emoexp.engine.fitters.sklearn import fit_sklearn

    return fit_sklearn(ctx)


FITTERS: dict[str, Callable[[Any], Any]] = {"lightning": _lightning, "sklearn": _sklearn}


def fitter_for(model_cfg: Any) -> Callable[[Any], Any]:
    """The fitter of ``model.kind`` (``lightning`` when the YAML does not say).

    Raises:
        ConfigError: For an unknown kind, listing the known ones.
    """
    kind = str(model_cfg.get("kind") or "lightning")
    if kind not in FITTERS:
        raise ConfigError(f"model.kind={kind!r} is unknown; choose one of {sorted(FITTERS)}.")
    return FITTERS[kind]
