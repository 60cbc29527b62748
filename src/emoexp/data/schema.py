"""The one sample schema shared by every corpus and modality.

See docs/design.md#2-one-sample-schema-one-modality-registry.

A corpus is a *manifest*: a :class:`pandas.DataFrame` with one row per sample and the
columns below. Inputs are file paths (audio, image) or the text itself; group attributes
are columns named ``group_<attribute>`` (e.g. ``group_gender``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from emoexp import modalities
from emoexp.config import ConfigError

ID = "id"
CORPUS = "corpus"
# The input columns are the modality registry's (emoexp.modalities), named here for manifests.
TEXT = modalities.INPUT_COLUMNS[modalities.TEXT]
AUDIO = modalities.INPUT_COLUMNS[modalities.AUDIO]
IMAGE = modalities.INPUT_COLUMNS[modalities.VISUAL]
EMOTION = "emotion"
VALENCE = "valence"
AROUSAL = "arousal"
SPEAKER = "speaker"
ANNOTATIONS = "annotations"
OFFICIAL_SPLIT = "official_split"
LABELS = "labels"
GROUP_PREFIX = "group_"

REQUIRED_COLUMNS: tuple[str, ...] = (ID, CORPUS, SPEAKER)
INPUT_COLUMNS: dict[str, str] = modalities.INPUT_COLUMNS
OPTIONAL_COLUMNS: tuple[str, ...] = (
    TEXT,
    AUDIO,
    IMAGE,
    EMOTION,
    VALENCE,
    AROUSAL,
    ANNOTATIONS,
    OFFICIAL_SPLIT,
    LABELS,
)
MODALITIES: tuple[str, ...] = modalities.MODALITIES


class ManifestError(ValueError):
    """A manifest does not follow the sample schema."""


def group_columns(manifest: pd.DataFrame) -> list[str]:
    """Return the group-attribute columns (``group_*``) of a manifest, sorted."""
    return sorted(c for c in manifest.columns if c.startswith(GROUP_PREFIX))


def available_modalities(manifest: pd.DataFrame) -> list[str]:
    """Return the single modalities whose input column is filled for every sample."""
    return modalities.present_modalities(manifest)


def samples_with_input(manifest: pd.DataFrame, modality: str, source: str = "the corpus") -> pd.DataFrame:
    """The samples a model of ``modality`` can use (:func:`emoexp.modalities.usable_rows`), re-indexed.

    Args:
        manifest: A validated manifest.
        modality: The run's modality.
        source: The corpus name, for the message.

    Raises:
        ConfigError: If no sample has the modality's input.
    """
    usable = manifest.loc[modalities.usable_rows(manifest, modality)].reset_index(drop=True)
    if usable.empty:
        raise ConfigError(f"data={source} has no sample with a {modality} input.")
    return usable


def validate_manifest(manifest: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check that a manifest follows the sample schema and return it with all columns present.

    Args:
        manifest: One row per sample.
        source: Where the manifest came from (corpus name or path), used in error messages.

    Returns:
        The manifest with missing optional columns added (as NaN) and ``id`` as string.

    Raises:
        ManifestError: On a missing required column, an empty manifest, duplicated ids or
            a sample with no input at all.
    """
    if manifest.empty:
        raise ManifestError(f"{source}: the corpus has no samples; check the data root and filters.")
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise ManifestError(f"{source}: manifest lacks required column(s) {missing}.")
    manifest = manifest.copy()
    for column in OPTIONAL_COLUMNS:
        if column not in manifest.columns:
            manifest[column] = np.nan
    manifest[ID] = manifest[ID].astype(str)
    manifest[SPEAKER] = manifest[SPEAKER].astype(str)
    duplicated = manifest[ID][manifest[ID].duplicated()].unique()
    if len(duplicated):
        raise ManifestError(f"{source}: duplicated sample ids, e.g. {list(duplicated[:5])}.")
    no_input = manifest[list(INPUT_COLUMNS.values())].isna().all(axis=1)
    if no_input.any():
        raise ManifestError(
            f"{source}: {int(no_input.sum())} sample(s) have no text, audio or image input, "
            f"e.g. {list(manifest.loc[no_input, ID][:5])}."
        )
    return manifest.reset_index(drop=True)


def fingerprint(rows: Iterable[str]) -> str:
    """Return a short, order-independent SHA-256 fingerprint of string rows."""
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(row.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]
