"""Everything that can fail without training, checked before an MLflow run exists.

:func:`prepare_run` composes nothing itself (Hydra did); it checks the config (missing values,
cross-group fit, every ``_target_`` bound to its signature, scheme/model compatibility), then
loads the samples, applies the label scheme and makes the protocol's folds. A config or data
error therefore surfaces here, creates no run, and reaches the user as one message
(docs/design.md#run-lifecycle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from emoexp import config as config_checks
from emoexp.config import ConfigError, instantiate
from emoexp.data.adapters.base import CorpusError
from emoexp.data.leakage.guard import LeakageError, LeakageResult, guard_leakage
from emoexp.data.schema import ManifestError
from emoexp.data.splits import Fold, SplitError
from emoexp.engine import binding
from emoexp.engine.fitters import fitter_for
from emoexp.engine.resume import config_fingerprint
from emoexp.engine.samples import prepare_samples
from emoexp.features.augment import check_augmentation, resolve_augmentation
from emoexp.labels.schemes import LabelSchemeError

log = logging.getLogger(__name__)

# Errors that mean "the config or the data is wrong", not "emoexp has a bug": the command line
# shows their message alone, without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CorpusError,
    ManifestError,
    SplitError,
    LabelSchemeError,
    LeakageError,
    FileNotFoundError,
    NotADirectoryError,
    OmegaConfBaseException,
)


@dataclass
class RunPlan:
    """A checked run, ready to be recorded.

    Attributes:
        cfg: The composed config.
        scheme: The label scheme (class weights still unresolved: each fold resolves its own).
        manifest: The run's samples, labels applied.
        folds: The protocol's folds (one for holdout protocols).
        fingerprint: The config fingerprint (what ``resume=true`` matches).
        leakage: What the leakage guard found (``None`` when ``leakage`` is not configured).
    """

    cfg: DictConfig
    scheme: Any
    manifest: pd.DataFrame
    folds: list[Fold]
    fingerprint: str
    leakage: LeakageResult | None = field(default=None)


def check_config(cfg: DictConfig) -> Any:
    """Check the config without touching data; return the instantiated label scheme.

    Raises:
        ConfigError: Naming the key and the fix.
    """
    missing = binding.missing_values(cfg)
    if missing:
        raise ConfigError(
            f"Missing value(s) for {', '.join(missing)}: set them on the command line, e.g. "
            f"{missing[0]}=... (for a corpus: data.root=/path/to/the/corpus)."
        )
    config_checks.validate(cfg)
    resolve_augmentation(cfg)  # augment=auto becomes the option it picks, before anything reads it
    binding.check_targets(cfg)
    scheme = instantiate(cfg.label_scheme)
    fitter_for(cfg.model)
    check_augmentation(cfg)
    if cfg.model.get("kind") == "sklearn":
        from emoexp.engine.fitters.sklearn import estimator_role

        estimator_role(cfg.model, scheme)
    return scheme


def resolve_protocol(cfg: DictConfig, manifest: pd.DataFrame) -> None:
    """Replace a protocol that chooses by the data (``protocol=auto``) with the one it chose.

    Everything recorded afterwards (parameters, run name, card, protocol hash) then names the
    concrete protocol, so an ``auto`` run and an explicit ``protocol=speaker_holdout`` run of the
    same definition compare (docs/design.md#run-lifecycle).
    """
    protocol = instantiate(cfg.protocol)
    if not hasattr(protocol, "resolve"):
        return
    chosen, reason = protocol.resolve(manifest)
    with open_dict(cfg):
        cfg.protocol = OmegaConf.create(chosen)
    log.info("protocol=%s for data=%s: %s.", chosen["name"], cfg.data.name, reason)


def make_folds(cfg: DictConfig, scheme: Any, manifest: pd.DataFrame) -> list[Fold]:
    """The protocol's folds of ``manifest``; a protocol that cannot split it is a config error."""
    resolve_protocol(cfg, manifest)
    protocol = instantiate(cfg.protocol)
    try:
        folds = list(protocol.folds(manifest, scheme.stratify_labels(manifest), cfg.seed))
    except ValueError as error:
        raise SplitError(
            f"protocol={cfg.protocol.name} cannot split the {len(manifest)} samples of data={cfg.data.name}"
            f"{_limit_hint(cfg)}: {error}"
        ) from error
    return folds


def _limit_hint(cfg: DictConfig) -> str:
    limit = cfg.data.get("max_samples")
    return f" (data.max_samples={limit}: raise it or remove it)" if limit else ""


def prepare_run(cfg: DictConfig) -> RunPlan:
    """Check ``cfg`` and prepare its samples and folds; nothing is recorded (see the module docstring).

    Raises:
        ConfigError: For a config error.
        ValueError: A data error (:class:`CorpusError`, :class:`ManifestError`, :class:`SplitError`,
            :class:`LabelSchemeError`), or ``FileNotFoundError`` for a missing corpus path.
    """
    scheme = check_config(cfg)
    manifest = prepare_samples(cfg, scheme)
    folds = make_folds(cfg, scheme, manifest)
    # A class with no training sample (an override that still merges calm into neutral) is an error;
    # one missing from a small validation/test split is scored on nothing there: said, not fatal.
    scheme.check_folds(manifest, folds, parts=("train",))
    try:
        scheme.check_folds(manifest, folds, parts=("val", "test"))
    except LabelSchemeError as error:
        log.warning("%s", error)
    derived = scheme.derived_targets(manifest)
    if derived:
        log.warning(
            "label_scheme=%s: %s are derived from the emotion category of data=%s, not annotated; "
            "figures on them measure the category mapping (tagged derived_targets, shown on the card).",
            scheme.name,
            " and ".join(derived),
            cfg.data.name,
        )
    leakage = check_leakage(cfg, manifest, folds)
    if leakage is not None:
        folds = leakage.folds
    return RunPlan(cfg, scheme, manifest, folds, config_fingerprint(cfg), leakage)


def check_leakage(cfg: DictConfig, manifest: pd.DataFrame, folds: list[Fold]) -> LeakageResult | None:
    """Run the leakage guard of ``cfg.leakage`` (docs/leakage.md) on the folds, before any record."""
    node = cfg.get("leakage")
    if node is None:
        return None
    settings = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "mode"}
    return guard_leakage(manifest, folds, node.get("mode", "warn"), cache_dir=cfg.paths.cache_dir, **settings)
