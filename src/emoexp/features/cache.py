"""On-disk cache of extracted features, keyed by content hash.

Extraction (decoding audio, computing spectrograms, tokenising) runs once per
(corpus content, extractor, parameters); the key folds in the content of every input
file (size and modification time) so that a changed file or parameter invalidates it.
Tensors are stored as safetensors: safe to load (no unpickling) and memory-mapped.
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
    path = Path(cache_dir or default_cache_dir()) / "features" / f"{key}.safetensors"
    if path.exists():
        try:
            return load_file(path), True
        except Exception:
            path.unlink(missing_ok=True)
    tensors = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: concurrent workers never read a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)
    return tensors, False
