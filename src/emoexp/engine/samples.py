"""Corpus -> samples of the run's modality -> aggregated annotations -> labels of the scheme."""

from __future__ import annotations

from typing import Any

import pandas as pd
from omegaconf import DictConfig

from emoexp.config import instantiate
from emoexp.data import schema
from emoexp.tracking import privacy


def load_corpus(cfg: DictConfig) -> pd.DataFrame:
    """Load the configured corpus as a validated manifest."""
    manifest = instantiate(cfg.data.corpus)
    return schema.validate_manifest(manifest, cfg.data.name)


def prepare_samples(cfg: DictConfig, scheme: Any) -> pd.DataFrame:
    """The run's samples: usable for its modality, annotations aggregated, labels in the scheme.

    Raises:
        emoexp.config.ConfigError: If the corpus has no sample with the run's modality.
    """
    manifest = schema.samples_with_input(load_corpus(cfg), cfg.modality, cfg.data.name)
    if cfg.get("aggregation") is not None:
        # Recompute `emotion` from the annotator labels (aggregation=majority|dawid_skene).
        manifest = instantiate(cfg.aggregation)(manifest)
    pseudonyms = privacy.pseudonymiser_for(cfg.tracking, {"paths": {"cache_dir": cfg.paths.get("cache_dir")}})
    if pseudonyms is not None:
        # Before any split, report or card sees them: every artifact carries the same pseudonyms.
        manifest = pseudonyms.samples(manifest, (schema.ID, schema.SPEAKER))
    return limit_samples(scheme.prepare(manifest), cfg.data.get("max_samples"), scheme)


def limit_samples(manifest: pd.DataFrame, max_samples: int | None, scheme: Any) -> pd.DataFrame:
    """Keep a fixed, class-stratified subset of at most ``max_samples`` samples (for quick runs).

    The subset is drawn with a fixed seed, independent of the run's seed, so that every run
    of a quick experiment sees the same samples.
    """
    if not max_samples or len(manifest) <= max_samples:
        return manifest
    from sklearn.model_selection import train_test_split

    stratify = scheme.stratify_labels(manifest)
    try:
        keep, _ = train_test_split(
            manifest.index, train_size=int(max_samples), random_state=0, stratify=stratify
        )
    except ValueError:
        keep, _ = train_test_split(manifest.index, train_size=int(max_samples), random_state=0)
    return manifest.loc[sorted(keep)].reset_index(drop=True)
