"""Duplicate and near-duplicate pairs of a manifest, per modality, independent of any split.

Each detector returns a frame of pairs of manifest rows (``i < j``) with the pair's kind,
modality, distance and what matched; the guard then keeps the pairs a fold puts in two parts.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.data.leakage import audio, images, text
from emoexp.data.leakage.index import exact_pairs

log = logging.getLogger(__name__)

EXACT, NEAR = "exact_duplicate", "near_duplicate"
PAIR_COLUMNS = ["i", "j", "kind", "modality", "distance", "detail"]
# Bumped whenever a fingerprint or the matching of fingerprints changes, so cached fingerprints
# and pairs of an older kind are not reused.
FINGERPRINT_VERSION = "1"


@dataclass(frozen=True)
class TextSettings:
    """Text near-duplicates: a small normalised edit distance.

    Attributes:
        max_distance: Largest Levenshtein distance over the longer normalised text.
        min_chars: Shorter normalised texts are only compared exactly.
    """

    max_distance: float = 0.12
    min_chars: int = 16


@dataclass(frozen=True)
class ImageSettings:
    """Image near-duplicates: close perceptual hashes, confirmed by aligning the images.

    Attributes:
        max_distance: Largest pHash distance (bits of 64) to the image or one of its crops.
        max_residual: Largest mean residual (relative to the image's spread) after alignment
            and a brightness/contrast fit.
        max_shift: Largest shift, in pixels of the working copy, tried when aligning.
    """

    max_distance: int = 8
    max_residual: float = 0.045
    max_shift: int = 4


@dataclass(frozen=True)
class AudioSettings:
    """Audio near-duplicates: landmark hashes agreeing at one time offset.

    Attributes:
        min_matches: Least number of agreeing hashes.
        min_share: Least share of the shorter clip's hashes that agree.
    """

    min_matches: int = 10
    min_share: float = 0.08


def _frame(pairs: np.ndarray, kind: str, modality: str, distance: Any, detail: str) -> pd.DataFrame:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return pd.DataFrame(
        {
            "i": pairs[:, 0],
            "j": pairs[:, 1],
            "kind": kind,
            "modality": modality,
            "distance": np.broadcast_to(np.asarray(distance, dtype=float), len(pairs)),
            "detail": detail,
        },
        columns=PAIR_COLUMNS,
    )


def _files_key(paths: list[str]) -> str:
    """A key of the files as they are now: every path with its size and modification time."""
    digest = hashlib.sha256(FINGERPRINT_VERSION.encode())
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _cached(name: str, key: str, make: Callable[[], Any], cache_dir: Path | None) -> Any:
    """``make()``, or what it returned before for ``key`` (pickled under ``<cache_dir>/leakage``)."""
    if cache_dir is None:
        return make()
    cached = Path(cache_dir) / "leakage" / f"{name}-{key}.pkl"
    if cached.is_file():
        with cached.open("rb") as handle:
            return pickle.load(handle)  # written by this function, never from outside
    value = make()
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".tmp")
    with partial.open("wb") as handle:
        pickle.dump(value, handle)
    partial.replace(cached)
    return value


def _cached_prints(paths: list[str], make: Callable[[str], Any], name: str, cache_dir: Path | None) -> list:
    """Fingerprint files, reusing a cache keyed by every file's path, size and modification time."""
    if cache_dir is None:
        return [make(p) for p in paths]
    return _cached(name, _files_key(paths), lambda: [make(p) for p in paths], cache_dir)


def _rows_with(manifest: pd.DataFrame, column: str) -> np.ndarray:
    if column not in manifest.columns:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(manifest[column].notna().to_numpy())


def _expand(rows: np.ndarray, pairs: pd.DataFrame) -> pd.DataFrame:
    """Map pair indices into ``rows`` back to manifest rows, ``i < j``."""
    first, second = rows[pairs["i"].to_numpy()], rows[pairs["j"].to_numpy()]
    return pairs.assign(i=np.minimum(first, second), j=np.maximum(first, second))


def text_pairs(manifest: pd.DataFrame, settings: TextSettings) -> pd.DataFrame:
    """Exact (same normalised text) and near (typos, casing) duplicate texts."""
    rows = _rows_with(manifest, schema.TEXT)
    if len(rows) < 2:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    keys = manifest[schema.TEXT].iloc[rows].map(text.exact_key).reset_index(drop=True)
    exact = _frame(exact_pairs(keys), EXACT, "text", 0.0, "same normalised text")
    # Near duplicates are searched among distinct texts, then every copy of each is paired.
    codes, _ = pd.factorize(keys)
    spaced = manifest[schema.TEXT].iloc[rows].map(text.normalise).reset_index(drop=True)
    representatives = spaced.groupby(codes).first().tolist()
    near, distance = text.near_pairs(representatives, settings.max_distance, settings.min_chars)
    members = pd.DataFrame({"code": codes, "row": np.arange(len(codes))})
    found = pd.DataFrame({"u": near[:, 0], "v": near[:, 1], "distance": distance})
    found = found.merge(members.rename(columns={"code": "u", "row": "i"}), on="u")
    found = found.merge(members.rename(columns={"code": "v", "row": "j"}), on="v")
    distances = found["distance"].to_numpy()
    near_frame = _frame(found[["i", "j"]].to_numpy(), NEAR, "text", distances, "edit distance")
    return _expand(rows, pd.concat([exact, near_frame], ignore_index=True))


def _exact_file_pairs(prints: list, fields: dict[str, str], modality: str) -> pd.DataFrame:
    frames = []
    for field, detail in fields.items():
        keys = pd.Series([getattr(p, field) for p in prints])
        frames.append(_frame(exact_pairs(keys), EXACT, modality, 0.0, detail))
    exact = pd.concat(frames, ignore_index=True)
    # The same bytes are also the same pixels/signal: one row per pair, the first reason kept.
    return exact.drop_duplicates(["i", "j"])


def _without(found: pd.DataFrame, exact: pd.DataFrame) -> pd.DataFrame:
    """Near pairs that are not already exact pairs."""
    seen = pd.MultiIndex.from_frame(exact[["i", "j"]])
    return found[~pd.MultiIndex.from_frame(found[["i", "j"]]).isin(seen)]


def image_pairs(manifest: pd.DataFrame, settings: ImageSettings, cache_dir: Path | None) -> pd.DataFrame:
    """Exact (bytes, pixels: FER2013-style) and perceptual near-duplicate images."""
    rows = _rows_with(manifest, schema.IMAGE)
    if len(rows) < 2:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    paths = manifest[schema.IMAGE].iloc[rows].astype(str).tolist()
    prints = _cached_prints(paths, images.image_print, "image", cache_dir)
    exact = _exact_file_pairs(prints, {"file_hash": "same file bytes", "pixel_hash": "same pixels"}, "visual")
    candidates = images.candidate_pairs(prints, settings.max_distance)
    residuals = images.residuals(prints, candidates, settings.max_shift)
    keep = residuals <= settings.max_residual
    near = _frame(candidates[keep], NEAR, "visual", residuals[keep], "aligned residual")
    return _expand(rows, pd.concat([exact, _without(near, exact)], ignore_index=True))


def _audio_near_pairs(
    paths: list[str], prints: list, settings: AudioSettings, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """Landmark near-duplicate pairs, cached like the fingerprints.

    Matching the landmarks (a join over every shared hash: ~0.5 s for 840 clips) depends on the
    files and the settings alone, so a run on unchanged files reads the pairs back.
    """

    def match() -> tuple[np.ndarray, np.ndarray]:
        return audio.near_pairs(prints, settings.min_matches, settings.min_share)

    if cache_dir is None:
        return match()
    matching = (settings.min_matches, settings.min_share, audio.MAX_HASH_CLIPS)
    key = hashlib.sha256(f"{_files_key(paths)}{matching}".encode()).hexdigest()[:20]
    return _cached("audio-near", key, match, cache_dir)


def audio_pairs(manifest: pd.DataFrame, settings: AudioSettings, cache_dir: Path | None) -> pd.DataFrame:
    """Exact (bytes, decoded signal) and landmark near-duplicate audio clips."""
    rows = _rows_with(manifest, schema.AUDIO)
    if len(rows) < 2:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    paths = manifest[schema.AUDIO].iloc[rows].astype(str).tolist()
    prints = _cached_prints(paths, audio.audio_print, "audio", cache_dir)
    exact = _exact_file_pairs(prints, {"file_hash": "same file bytes", "signal_hash": "same signal"}, "audio")
    found, distance = _audio_near_pairs(paths, prints, settings, cache_dir)
    near = _frame(found, NEAR, "audio", distance, "landmark share")
    return _expand(rows, pd.concat([exact, _without(near, exact)], ignore_index=True))
