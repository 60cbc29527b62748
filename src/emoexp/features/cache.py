"""On-disk cache of extracted features, keyed by content hash.

Extraction (decoding audio, computing spectrograms, tokenising) runs once per
(corpus content, extractor, parameters); the key folds in the content of every input
file (size and modification time) so that a changed file or parameter invalidates it.
Tensors are stored as safetensors: safe to load (no unpickling) and memory-mapped.
One file per key, whichever way it is written: whole, by :func:`cached_features`, or in chunks by
several processes, by :func:`cached_feature_file` (emoexp.features.store, for corpora whose
features are large), so either reads what the other wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from emoexp.data import schema
from emoexp.features.store import FeatureFile

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """Return ``$EMOEXP_CACHE_DIR`` or ``~/.cache/emoexp``."""
    return Path(os.environ.get("EMOEXP_CACHE_DIR", Path.home() / ".cache" / "emoexp"))


def content_key(manifest: pd.DataFrame, params: dict[str, Any], extractor: str) -> str:
    """Hash the inputs of a manifest (ids, texts, file sizes and mtimes) and extractor params."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"v": CACHE_VERSION, "x": extractor, "p": params}, sort_keys=True, default=str).encode()
    )
    for column in (schema.ID, schema.TEXT, schema.AUDIO, schema.IMAGE):
        if column not in manifest.columns:
            continue
        for value in manifest[column].tolist():
            digest.update(str(value).encode("utf-8", "surrogatepass"))
            if column in (schema.AUDIO, schema.IMAGE) and isinstance(value, str):
                try:
                    stat = os.stat(value)
                    digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
                except OSError:
                    digest.update(b"missing")
    return digest.hexdigest()[:24]


def cached_features(
    key: str,
    compute: Callable[[], dict[str, torch.Tensor]],
    cache_dir: str | Path | None = None,
    enabled: bool = True,
) -> tuple[dict[str, torch.Tensor], bool]:
    """Load features stored under ``key``, or compute and store them.

    Args:
        key: Content key from :func:`content_key`.
        compute: Produces the features on a cache miss.
        cache_dir: Cache root (default :func:`default_cache_dir`).
        enabled: If false, always compute and never write.

    Returns:
        The features and whether they came from the cache.
    """
    if not enabled:
        return compute(), False
    path = feature_path(key, cache_dir)
    if path.exists():
        try:
            return load_file(path), True
        except Exception:
            path.unlink(missing_ok=True)
    tensors = compute()
    _write_atomically(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp))
    return tensors, False


def cached_feature_file(
    key: str,
    write: Callable[[Path], None],
    cache_dir: str | Path | None = None,
    enabled: bool = True,
) -> tuple[FeatureFile, bool]:
    """The feature file stored under ``key``, or write it and store it; its rows are read on demand.

    Args:
        key: Content key from :func:`content_key`.
        write: Writes the features to the path it is given (a safetensors file).
        cache_dir: Cache root (default :func:`default_cache_dir`).
        enabled: If false, always write, to a temporary file that is removed when the returned
            file is collected.

    Returns:
        The file and whether it came from the cache.
    """
    if not enabled:
        fd, tmp = tempfile.mkstemp(prefix="emoexp-features-", suffix=".safetensors")
        os.close(fd)
        write(Path(tmp))
        return FeatureFile(tmp, temporary=True), False
    path = feature_path(key, cache_dir)
    if path.exists():
        try:
            return FeatureFile(path), True
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
    _write_atomically(path, write)
    return FeatureFile(path), False


def feature_path(key: str, cache_dir: str | Path | None = None) -> Path:
    """Where the features of ``key`` are stored."""
    return Path(cache_dir or default_cache_dir()) / "features" / f"{key}.safetensors"


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: concurrent workers never read a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
