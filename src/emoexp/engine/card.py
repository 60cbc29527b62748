"""The protocol card: what a run's figures were measured on, recorded with the run (docs/protocols.md).

A card separates the protocol's *definition* (corpus and its sample set, label set and mapping,
derived targets, split kind and parameters, grouping, fold count) from the *instance* one seed
made of it (the folds, their fingerprints and sizes). The protocol hash covers the definition
only, so seeds and folds of one protocol share a hash and ``compare`` can refuse to rank runs
whose hashes differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from emoexp.config import instantiate
from emoexp.data import schema
from emoexp.data.splits import TEST, TRAIN, VAL, Fold

if TYPE_CHECKING:
    from emoexp.engine.preflight import RunPlan
    from emoexp.engine.recorder import Recorder

CARD_VERSION = 1
CARD_ARTIFACT = "protocol_card.json"
HASH_TAG = "protocol.hash"
KIND_TAG = "protocol.kind"
GROUPING_TAG = "protocol.grouping"
VERSION_TAG = "protocol.card_version"
NO_GROUPING = "none"
PARTS = (TRAIN, VAL, TEST)
# Audio and image inputs are file paths: only the file name identifies the sample, the folder
# is wherever this machine keeps the corpus (another cache, another mount).
_PATH_INPUTS = (schema.AUDIO, schema.IMAGE)


def protocol_card(plan: RunPlan) -> dict[str, Any]:
    """The protocol card of a checked run.

    Args:
        plan: The run's plan (config, prepared scheme, manifest and folds).

    Returns:
        A JSON-ready dict: ``card_version``, ``protocol_hash``, ``definition`` (what the hash
        covers: ``corpus``, ``labels``, ``split``), ``label_scheme`` (the scheme's name),
        ``corpus`` (sample and speaker counts) and ``instance`` (``seed`` and one entry per fold
        with its fingerprint and its sizes per split and class).
    """
    cfg, manifest = plan.cfg, plan.manifest
    definition = {
        "corpus": {"name": str(cfg.data.name), "samples_fingerprint": corpus_fingerprint(manifest)},
        "labels": label_definition(plan.scheme, manifest),
        "split": split_definition(cfg.protocol, len(plan.folds)),
    }
    stratify = plan.scheme.stratify_labels(manifest)
    return {
        "card_version": CARD_VERSION,
        "protocol_hash": protocol_hash(definition),
        "definition": definition,
        "label_scheme": str(plan.scheme.name),
        "corpus": {"samples": len(manifest), "speakers": int(manifest[schema.SPEAKER].nunique())},
        "instance": {
            "seed": cfg.get("seed"),
            "folds": [fold_entry(manifest, fold, stratify) for fold in plan.folds],
        },
    }


def record_card(recorder: Recorder, run_id: str, plan: RunPlan) -> dict[str, Any]:
    """Log the run's card as ``protocol_card.json`` and tag ``protocol.hash/kind/grouping/card_version``.

    Returns:
        The card that was logged.
    """
    card = protocol_card(plan)
    split = card["definition"]["split"]
    recorder.log_json(run_id, card, CARD_ARTIFACT)
    recorder.set_tags(
        run_id,
        {
            HASH_TAG: card["protocol_hash"],
            KIND_TAG: split["kind"],
            GROUPING_TAG: split["grouping"] or NO_GROUPING,
            VERSION_TAG: str(CARD_VERSION),
        },
    )
    return card


def protocol_hash(definition: Mapping[str, Any]) -> str:
    """A short SHA-256 of a card's definition (key order and container types do not matter)."""
    text = json.dumps(definition, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def corpus_fingerprint(manifest: pd.DataFrame) -> str:
    """Which samples the run used: a hash of every sample id with its inputs.

    File inputs count by their file name, so the same corpus in another folder keeps its
    fingerprint; a subset (``data.max_samples``) or another modality's rows change it.
    """
    columns = [c for c in schema.INPUT_COLUMNS.values() if c in manifest.columns]
    inputs = [_input_keys(manifest[c], c in _PATH_INPUTS) for c in columns]
    return schema.fingerprint(
        "\t".join((sample_id, *values))
        for sample_id, *values in zip(manifest[schema.ID].astype(str), *inputs, strict=True)
    )


def _input_keys(column: pd.Series, is_path: bool) -> list[str]:
    """One string per sample: the text, a file's name, or ``""`` for no input."""
    present = column.notna()
    values = column.astype(str).where(present, "")
    if is_path:
        return [PurePath(v).name if v else "" for v in values]
    return values.tolist()


def label_definition(scheme: Any, manifest: pd.DataFrame) -> dict[str, Any]:
    """The label set a scheme predicts, its native -> scheme mapping and its derived targets.

    Only the scheme's public attributes are read (``class_names``, ``dimension_names``, and
    ``labels``/``mapping`` where the scheme has them), so every kind of scheme answers alike.
    """
    labels = getattr(scheme, "labels", None)
    return {
        "classes": list(scheme.class_names),
        "dimensions": list(scheme.dimension_names),
        "labels": list(labels) if isinstance(labels, list | tuple) else [],
        "mapping": _mapping(scheme),
        "derived_targets": sorted(scheme.derived_targets(manifest)),
    }


def _mapping(scheme: Any) -> dict[str, str | None]:
    """The scheme's native -> scheme label mapping, or its parts' (a multi-task scheme keeps it there)."""
    own = getattr(scheme, "mapping", None)
    if isinstance(own, Mapping):
        return {str(k): None if v is None else str(v) for k, v in sorted(own.items())}
    merged: dict[str, str | None] = {}
    if dataclasses.is_dataclass(scheme):
        for item in dataclasses.fields(scheme):
            part = getattr(scheme, item.name, None)
            if part is not scheme and isinstance(getattr(part, "mapping", None), Mapping):
                merged.update(_mapping(part))
    return dict(sorted(merged.items()))


def split_definition(protocol_cfg: Any, n_folds: int) -> dict[str, Any]:
    """Split kind, parameters, grouping variable, the independence assertion and the fold count.

    The grouping and the assertion are the protocol object's own (``group``,
    ``speaker_independent``): what :mod:`emoexp.data.splits` really enforced, not a guess from
    the name.
    """
    protocol = instantiate(protocol_cfg)
    parameters = OmegaConf.to_container(protocol_cfg, resolve=True)
    kind, target = parameters.pop("name", protocol.name), parameters.pop("_target_", "")
    independent = bool(getattr(protocol, "speaker_independent", False))
    group = getattr(protocol, "group", None)
    return {
        "kind": str(kind),
        "target": str(target),
        "parameters": dict(sorted(parameters.items())),
        "grouping": str(group) if independent and group else None,
        "speaker_independent_asserted": independent,
        "folds": int(n_folds),
    }


def fold_entry(manifest: pd.DataFrame, fold: Fold, stratify: np.ndarray | None) -> dict[str, Any]:
    """One fold of the instance: its fingerprint, and sizes per split (and per class, with classes).

    ``speakers_shared`` counts the speakers found in more than one split: 0 for a speaker-independent
    protocol, usually most speakers for a random one.
    """
    speakers = manifest[schema.SPEAKER].astype(str).to_numpy()
    entry: dict[str, Any] = {
        "name": fold.name,
        "fingerprint": fold.fingerprint(manifest),
        "sizes": {part: int(fold.mask(part).sum()) for part in PARTS},
        "speakers": {part: len(set(speakers[fold.mask(part)])) for part in PARTS},
    }
    seen_in = pd.Series(fold.assignment).groupby(speakers).nunique()
    entry["speakers_shared"] = int((seen_in > 1).sum())
    if stratify is not None:
        labels = pd.Series(np.asarray(stratify)).astype(str)
        entry["class_sizes"] = {
            part: {str(k): int(v) for k, v in sorted(labels[fold.mask(part)].value_counts().items())}
            for part in PARTS
        }
    return entry


def flatten_definition(card: Mapping[str, Any]) -> dict[str, Any]:
    """The card's definition as ``{"split.kind": ..., "labels.classes": [...], ...}``."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        # The native -> scheme mapping is one field, compared whole like the class list.
        if isinstance(value, Mapping) and value and prefix != "labels.mapping":
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value

    walk("", card.get("definition", {}))
    return flat


def card_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The definition fields in which two cards differ, as ``(field, value in a, value in b)``."""
    left, right = flatten_definition(a), flatten_definition(b)
    return [
        (k, left.get(k), right.get(k)) for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)
    ]
