"""The leakage guard: what a protocol's folds share across train, validation and test.

See docs/leakage.md. Run before training, after the folds are made: it reports group overlap
(speaker, session, sentence, ... where the corpus has them) and exact and near-duplicate inputs
across parts, and then warns, drops the leaking validation/test samples, or fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.data.leakage.detect import (
    EXACT,
    NEAR,
    AudioSettings,
    ImageSettings,
    TextSettings,
    audio_pairs,
    image_pairs,
    text_pairs,
)
from emoexp.data.splits import TEST, TRAIN, VAL, Fold

log = logging.getLogger(__name__)

MODES = ("off", "warn", "drop", "fail")
GROUP_OVERLAP = "group_overlap"
REPORT_COLUMNS = ["fold", "kind", "modality", "split_a", "id_a", "split_b", "id_b", "distance", "detail"]
# Grouping variables looked for when none are given: the speaker, and the recording units a
# corpus may name (IEMOCAP sessions, RAVDESS statements, CREMA-D sentences, scripts, dialogues).
DEFAULT_GROUPS = (
    schema.SPEAKER,
    "group_session",
    "group_sentence",
    "group_statement",
    "group_script",
    "group_dialog",
)
# A dropped sample is in no part: Fold.mask is False for it in train, val and test alike.
DROPPED = ""
_ORDER = {TRAIN: 0, VAL: 1, TEST: 2}


class LeakageError(ValueError):
    """Train, validation and test share (near-)duplicate samples and ``leakage=fail`` was chosen."""


@dataclass(frozen=True)
class LeakageResult:
    """What the guard found and the folds to train on.

    Attributes:
        folds: The folds, unchanged, or (``mode="drop"``) without the leaking val/test samples.
        report: One row per flagged pair or shared group value and fold: ``fold``, ``kind``
            (``exact_duplicate``, ``near_duplicate``, ``group_overlap``), ``modality`` (or the
            group column), ``split_a``/``id_a``, ``split_b``/``id_b`` (``split_a`` is the earlier
            of train, val, test), ``distance`` (0 for exact) and ``detail`` (what matched).
        summary: Counts for metrics (``exact_duplicates``, ``near_duplicates``, per modality as
            ``near_duplicates/audio``, ``group_overlap/<column>``, ``dropped``, ``seconds``).
    """

    folds: list[Fold]
    report: pd.DataFrame
    summary: dict[str, float]


def _settings(kind: type, given: Mapping[str, Any] | Any | None) -> Any:
    if given is None or isinstance(given, kind):
        return given or kind()
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(
            f"leakage: unknown setting(s) {unknown} for {kind.__name__}; known: {sorted(known)}."
        )
    return kind(**dict(given))


def find_pairs(
    manifest: pd.DataFrame,
    text: TextSettings,
    image: ImageSettings,
    audio: AudioSettings,
    cache_dir: Path | None = None,
) -> pd.DataFrame:
    """Every duplicate or near-duplicate pair of manifest rows, whatever the split."""
    found = [
        text_pairs(manifest, text),
        image_pairs(manifest, image, cache_dir),
        audio_pairs(manifest, audio, cache_dir),
    ]
    found = [f for f in found if not f.empty]
    if not found:
        return pd.DataFrame(columns=["i", "j", "kind", "modality", "distance", "detail"])
    return pd.concat(found, ignore_index=True)


def _cross_pairs(manifest: pd.DataFrame, fold: Fold, pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs this fold puts in two different parts, earlier part first."""
    part_i = fold.assignment[pairs["i"].to_numpy(dtype=np.int64)]
    part_j = fold.assignment[pairs["j"].to_numpy(dtype=np.int64)]
    rank_i = pd.Series(part_i).map(_ORDER).to_numpy()
    rank_j = pd.Series(part_j).map(_ORDER).to_numpy()
    cross = ~pd.isna(rank_i) & ~pd.isna(rank_j) & (part_i != part_j)
    pairs, rank_i, rank_j = pairs[cross], rank_i[cross], rank_j[cross]
    swap = rank_i > rank_j
    first = np.where(swap, pairs["j"], pairs["i"]).astype(np.int64)
    second = np.where(swap, pairs["i"], pairs["j"]).astype(np.int64)
    ids = manifest[schema.ID].to_numpy()
    return pd.DataFrame(
        {
            "fold": fold.name,
            "kind": pairs["kind"].to_numpy(),
            "modality": pairs["modality"].to_numpy(),
            "split_a": fold.assignment[first],
            "id_a": ids[first],
            "split_b": fold.assignment[second],
            "id_b": ids[second],
            "distance": pairs["distance"].to_numpy(dtype=float),
            "detail": pairs["detail"].to_numpy(),
        },
        columns=REPORT_COLUMNS,
    )


def _group_overlap(manifest: pd.DataFrame, fold: Fold, column: str) -> pd.DataFrame:
    """One row per value of ``column`` shared by two parts of the fold."""
    values = manifest[column]
    n_values = values.nunique(dropna=True)
    # A grouping with fewer values than parts cannot be separated: it is reported as such.
    note = f"{column}; only {n_values} value(s): cannot be separated" if n_values < 3 else column
    rows = []
    parts = {p: set(values[fold.mask(p)].dropna().astype(str)) for p in (TRAIN, VAL, TEST)}
    for a, b in ((TRAIN, VAL), (TRAIN, TEST), (VAL, TEST)):
        for shared in sorted(parts[a] & parts[b]):
            rows.append((fold.name, GROUP_OVERLAP, column, a, shared, b, shared, np.nan, note))
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def _drop(manifest: pd.DataFrame, fold: Fold, leaks: pd.DataFrame) -> tuple[Fold, int]:
    """The fold without the val/test side of each leaking pair (a val-test pair loses its val sample).

    Training data is kept whole; of a validation-test pair the validation sample goes, so the
    test figures keep every test sample and model selection no longer sees the test sample.
    """
    doomed = np.where(leaks["split_a"] == TRAIN, leaks["id_b"], leaks["id_a"])
    drop = manifest[schema.ID].isin(set(doomed)).to_numpy()
    assignment = fold.assignment.copy()
    assignment[drop] = DROPPED
    for part in (VAL, TEST):
        if not (assignment == part).any():
            raise LeakageError(
                f"{fold.name}: dropping the {int(drop.sum())} leaking sample(s) empties the {part} "
                "split; fix the corpus (remove the duplicates) or use leakage=warn."
            )
    return Fold(fold.name, assignment), int(drop.sum())


def _summary(report: pd.DataFrame, dropped: int, seconds: float) -> dict[str, float]:
    """Counts of distinct flagged pairs (over all folds) and shared group values, for metrics."""
    summary: dict[str, float] = {EXACT + "s": 0.0, NEAR + "s": 0.0}
    pairs = report[report["kind"] != GROUP_OVERLAP].drop_duplicates(["kind", "modality", "id_a", "id_b"])
    for (kind, modality), count in pairs.groupby(["kind", "modality"]).size().items():
        summary[f"{kind}s/{modality}"] = float(count)
        summary[f"{kind}s"] += float(count)
    groups = report[report["kind"] == GROUP_OVERLAP].drop_duplicates(["modality", "id_a"])
    for column, count in groups.groupby("modality").size().items():
        summary[f"{GROUP_OVERLAP}/{column}"] = float(count)
    summary["dropped"] = float(dropped)
    summary["seconds"] = round(seconds, 3)
    return summary


def _describe(leaks: pd.DataFrame, limit: int = 5) -> str:
    """Counts per kind and modality, and the first pairs."""
    distinct = leaks.drop_duplicates(["kind", "modality", "id_a", "id_b"])
    sizes = distinct.groupby(["kind", "modality"]).size()
    counts = ", ".join(f"{n} {k.replace('_', ' ')}(s) of {m}" for (k, m), n in sizes.items())
    first = "; ".join(
        f"{r.id_a} ({r.split_a}) ~ {r.id_b} ({r.split_b}) [{r.detail}, {r.distance:.3g}]"
        for r in distinct.head(limit).itertuples()
    )
    more = f" and {len(distinct) - limit} more" if len(distinct) > limit else ""
    return f"{counts} across train/val/test, e.g. {first}{more}"


def guard_leakage(
    manifest: pd.DataFrame,
    folds: Sequence[Fold],
    mode: str = "warn",
    cache_dir: str | Path | None = None,
    groups: Sequence[str] | None = None,
    text: Mapping[str, Any] | TextSettings | None = None,
    image: Mapping[str, Any] | ImageSettings | None = None,
    audio: Mapping[str, Any] | AudioSettings | None = None,
) -> LeakageResult:
    """Check what the folds share across train, validation and test, and act on it.

    Args:
        manifest: The prepared manifest (sample schema), rows aligned with the folds.
        folds: The protocol's folds.
        mode: ``"off"`` (nothing is checked), ``"warn"`` (log counts and the first pairs),
            ``"drop"`` (remove the leaking samples from val/test; train is kept) or ``"fail"``
            (raise :class:`LeakageError`). Group overlap is only reported, in every mode.
        cache_dir: Where file fingerprints are cached (keyed by path, size and mtime); none
            when ``None``.
        groups: Grouping columns to report overlap for (those the manifest lacks are skipped);
            :data:`DEFAULT_GROUPS` by default.
        text: :class:`TextSettings` or its keys.
        image: :class:`ImageSettings` or its keys.
        audio: :class:`AudioSettings` or its keys.

    Returns:
        The folds to train on, the report and the summary counts.

    Raises:
        LeakageError: With ``mode="fail"`` when any duplicate crosses parts, or when dropping
            would empty a part.
        ValueError: On an unknown mode or setting.
    """
    if mode is False:
        # YAML 1.1 (OmegaConf) reads an unquoted `off` as false.
        mode = "off"
    if mode not in MODES:
        raise ValueError(f"leakage.mode={mode!r} is not one of {list(MODES)}.")
    settings = (
        _settings(TextSettings, text),
        _settings(ImageSettings, image),
        _settings(AudioSettings, audio),
    )
    if mode == "off":
        return LeakageResult(list(folds), pd.DataFrame(columns=REPORT_COLUMNS), {})
    start = time.perf_counter()
    pairs = find_pairs(manifest, *settings, cache_dir=None if cache_dir is None else Path(cache_dir))
    columns = [c for c in (groups or DEFAULT_GROUPS) if c in manifest.columns and manifest[c].notna().any()]
    frames, kept, dropped = [], [], 0
    for fold in folds:
        leaks = _cross_pairs(manifest, fold, pairs)
        frames += [leaks, *(_group_overlap(manifest, fold, c) for c in columns)]
        if mode == "drop" and not leaks.empty:
            fold, count = _drop(manifest, fold, leaks)
            dropped += count
        kept.append(fold)
    frames = [f for f in frames if not f.empty]
    report = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=REPORT_COLUMNS)
    summary = _summary(report, dropped, time.perf_counter() - start)
    _act(report[report["kind"] != GROUP_OVERLAP], mode, summary)
    return LeakageResult(kept, report, summary)


def _act(leaks: pd.DataFrame, mode: str, summary: dict[str, float]) -> None:
    """Log or raise on the duplicates that cross parts."""
    if leaks.empty:
        log.info("leakage: no duplicate crosses train/val/test (%.1f s).", summary["seconds"])
        return
    message = _describe(leaks)
    if mode == "fail":
        raise LeakageError(
            f"leakage: {message}. Remove the duplicates from the corpus, or set leakage=drop to "
            "drop them from val/test (leakage=warn only reports them)."
        )
    if mode == "drop":
        log.warning("leakage: %s; dropped %d sample(s) from val/test.", message, int(summary["dropped"]))
    else:
        log.warning(
            "leakage: %s. Set leakage=drop to drop them from val/test, leakage=fail to stop.", message
        )
