"""The modality registry: the one place that answers what a modality is and how its inputs are read.

A run has one modality: ``text``, ``audio`` or ``visual`` (unimodal, each reading one manifest
column) or ``multimodal`` (a fusion model reading every input column). Config checks, the sample
schema, data preparation, serving and the tests all ask this module
(docs/design.md#2-one-sample-schema-one-modality-registry), so adding a modality is one entry
in :data:`REGISTRY` plus its ``conf/modality/<name>.yaml``, features and models.

The registry is the bottom of the config layer: it imports nothing from emoexp (``emoexp.config``
derives its options from it) and nothing heavy (pandas is only named for type checking). The
checks that turn an unusable modality into a :class:`~emoexp.config.ConfigError` live with their
callers (:func:`emoexp.config.validate`, :func:`emoexp.data.schema.samples_with_input`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

TEXT, AUDIO, VISUAL, MULTIMODAL = "text", "audio", "visual", "multimodal"


@dataclass(frozen=True)
class Modality:
    """One modality.

    Attributes:
        name: The ``modality=`` option.
        columns: Manifest columns its models read (the text itself, or audio/image file paths).
        file_suffixes: Suffixes of files that are one input of this modality (``.txt`` holds one
            text per line); empty for a modality whose inputs come as a table only.
    """

    name: str
    columns: tuple[str, ...]
    file_suffixes: frozenset[str] = frozenset()

    @property
    def is_unimodal(self) -> bool:
        """Whether the modality reads a single input column."""
        return len(self.columns) == 1


_UNIMODAL = (
    Modality(TEXT, ("text",), frozenset({".txt"})),
    Modality(AUDIO, ("audio",), frozenset({".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"})),
    Modality(
        VISUAL, ("image",), frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
    ),
)
REGISTRY: dict[str, Modality] = {
    **{m.name: m for m in _UNIMODAL},
    # Columns sorted: the order served models have always recorded in meta.json.
    MULTIMODAL: Modality(MULTIMODAL, tuple(sorted(c for m in _UNIMODAL for c in m.columns))),
}
"""Every modality a run can have, by name, unimodal ones first."""

MODALITIES: tuple[str, ...] = tuple(REGISTRY)
UNIMODAL: tuple[str, ...] = tuple(m.name for m in _UNIMODAL)
INPUT_COLUMNS: dict[str, str] = {m.name: m.columns[0] for m in _UNIMODAL}
"""Each unimodal modality's manifest column (``visual`` reads ``image``)."""


def unknown_message(modality: str) -> str:
    """The message for a modality that is not registered, naming the ones that are."""
    return f"modality={modality!r} is unknown; choose one of {list(MODALITIES)}."


def get(modality: str) -> Modality:
    """The registry entry of ``modality``.

    Raises:
        KeyError: Naming the known modalities (configs are checked before, by
            :func:`emoexp.config.validate`).
    """
    if modality not in REGISTRY:
        raise KeyError(unknown_message(modality))
    return REGISTRY[modality]


def input_columns(modality: str) -> tuple[str, ...]:
    """The manifest columns a model of ``modality`` reads: its own, or every input column (multimodal)."""
    return get(modality).columns


def modality_of_file(path: Path) -> str | None:
    """The unimodal modality whose input a file is, by its suffix (``None``: no modality's)."""
    suffix = path.suffix.lower()
    return next((m.name for m in _UNIMODAL if suffix in m.file_suffixes), None)


def usable_rows(manifest: pd.DataFrame, modality: str) -> pd.Series:
    """Which samples a model of ``modality`` can use (a boolean mask over ``manifest``'s rows).

    A unimodal model needs its input. A multimodal (fusion) model needs any one of its inputs,
    since fusion models mask absent modalities per sample (in a validated manifest every sample
    has one, so every sample is usable).
    """
    return manifest[list(get(modality).columns)].notna().any(axis=1)


def present_modalities(manifest: pd.DataFrame) -> list[str]:
    """The unimodal modalities whose input column is filled for every sample, in registry order."""
    return [
        m.name for m in _UNIMODAL if m.columns[0] in manifest.columns and manifest[m.columns[0]].notna().all()
    ]


def default_choices(modality: str, conf_dir: Path) -> dict[str, str]:
    """The config groups ``modality=<name>`` selects by default, e.g. ``{"data": ..., "model": ...}``.

    Read from ``<conf_dir>/modality/<name>.yaml`` (``emoexp.config.CONF_DIR``; Hydra applies
    the same file), so the registry and the composed configs cannot disagree.
    """
    from omegaconf import OmegaConf

    node = OmegaConf.load(Path(conf_dir) / "modality" / f"{get(modality).name}.yaml")
    choices = {}
    for entry in node.get("defaults", []):
        for group, option in entry.items():
            choices[str(group).removeprefix("override ").lstrip("/")] = str(option)
    return choices
