"""Text corpora saved as Hugging Face datasets on local disk (never downloaded at run time).

``root`` is either a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
(read with ``datasets.load_from_disk``), or a local folder of data files or a loading script
(read with ``datasets.load_dataset(root, **load_kwargs)`` with the hub switched off).
The splits of a ``DatasetDict`` (``train``, ``validation``, ``test``) give ``official_split``.
``ClassLabel`` features name integer labels; a ``Sequence(ClassLabel)`` label column (as in
GoEmotions) makes the corpus multi-label.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from emoexp.data.adapters.base import CorpusError, OnError, Problems, require_root
from emoexp.data.adapters.text_table import TextColumns, split_names_map

_SAVED = ("dataset_dict.json", "dataset_info.json", "state.json")
_LAYOUT = "a folder written by Dataset(Dict).save_to_disk, or a local dataset folder/script"


def _load(base: Path, load_kwargs: Mapping[str, Any]) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    try:
        if any((base / name).is_file() for name in _SAVED):
            return datasets.load_from_disk(str(base))
        return datasets.load_dataset(str(base), **dict(load_kwargs))
    except Exception as error:
        raise CorpusError(
            f"cannot load a Hugging Face dataset from data.root={base}: {type(error).__name__}: {error}. "
            f"Expected {_LAYOUT}."
        ) from error


def _label_feature(features: Any, column: str) -> tuple[list[str] | None, bool]:
    """``(ClassLabel names or None, whether the column is a sequence)`` of a label feature."""
    feature = features.get(column) if features is not None else None
    inner = getattr(feature, "feature", None)
    names = getattr(feature, "names", None) or getattr(inner, "names", None)
    return (list(names) if names else None), inner is not None


def _chosen_splits(loaded: Any, splits: Sequence[str] | None, corpus: str) -> dict[str | None, Any]:
    """``{split: dataset}`` of a loaded ``DatasetDict`` (``{None: dataset}`` for one ``Dataset``).

    Raises:
        CorpusError: If ``splits`` names a split the dataset does not have.
    """
    parts = dict(loaded) if hasattr(loaded, "keys") else {None: loaded}
    if splits is None:
        return parts
    unknown = sorted(set(splits) - set(parts))
    if unknown:
        raise CorpusError(f"{corpus}: data.corpus.splits {unknown} are not in the dataset ({sorted(parts)}).")
    return {name: parts[name] for name in splits}


def load_hf_dataset(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
    root: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    speaker_column: str | None = None,
    id_column: str | None = None,
    group_columns: Sequence[str] = (),
    mapping: Mapping[str, str | None] | None = None,
    label_names: Sequence[str] | None = None,
    multilabel: bool | None = None,
    splits: Sequence[str] | None = None,
    split_names: Mapping[str, str | None] | None = None,
    load_kwargs: Mapping[str, Any] | None = None,
    corpus: str = "hf_dataset",
    on_error: OnError = "raise",
) -> pd.DataFrame:
    """Load a local Hugging Face text dataset as a manifest.

    Args:
        root: Local dataset folder (see the module docstring).
        text_column: Text column.
        label_column: Label column (``ClassLabel``, string, or a sequence of them).
        speaker_column: Speaker/author column; without it each sample is its own speaker.
        id_column: Sample id column; without it ids are ``<split>-<row>``.
        group_columns: Columns copied as ``group_<column>``.
        mapping: Native label name -> canonical emotion (``None`` drops single-label samples).
        label_names: Vocabulary in id order; by default the ``ClassLabel`` names.
        multilabel: Multi-label samples; by default true when the label column is a sequence.
        splits: Splits of a ``DatasetDict`` to load (default all).
        split_names: Split name -> ``train``/``val``/``test``/``None`` (left out), merged over the
            usual spellings (train, validation/val/dev, test).
        load_kwargs: Extra ``datasets.load_dataset`` arguments (e.g. ``data_files``) for non-saved folders.
        corpus: Corpus name written to the manifest.
        on_error: ``"raise"`` on the first bad row, or ``"skip"`` and list it.

    Returns:
        A manifest of texts (see :func:`~emoexp.data.adapters.text_table.load_text_table`).

    Raises:
        CorpusError: On a missing or unreadable dataset, column or split, or (``on_error="raise"``) a bad row.
    """
    base = require_root(root, corpus, _LAYOUT)
    problems = Problems(corpus, on_error, _LAYOUT)
    parts = _chosen_splits(_load(base, load_kwargs or {}), splits, corpus)
    names_map = split_names_map(corpus, split_names)
    unnamed = [split for split in parts if split is not None and split.lower() not in names_map]
    if unnamed:
        raise CorpusError(
            f"{corpus}: split {unnamed[0]!r} has no official_split; map it with "
            f"'++data.corpus.split_names.{unnamed[0]}=train|val|test|null' or choose data.corpus.splits."
        )
    rows = []
    for split, dataset in parts.items():
        official = None if split is None else names_map[split.lower()]
        if split is not None and official is None:
            continue
        feature_names, is_sequence = _label_feature(dataset.features, label_column)
        spec = TextColumns(
            corpus,
            text_column,
            label_column,
            speaker_column,
            None,
            id_column,
            tuple(group_columns),
            mapping or {},
            label_names if label_names is not None else feature_names,
            is_sequence if multilabel is None else multilabel,
        )
        frame = dataset.to_pandas()
        source = f"{base}[{split}]" if split is not None else str(base)
        spec.check_columns(frame, source)
        rows += spec.rows(
            frame, lambda i, s=source: f"{s} row {i}", problems, f"{split or corpus}-", official
        )
    return problems.finish(rows, root)
