"""FER2013 (Goodfellow et al. 2013): 35,887 48x48 grayscale faces, 7 expressions, official splits.

Layout as distributed (the ICML 2013 challenge / Kaggle ``fer2013.tar.gz``)::

    root/fer2013.csv        (or root/fer2013/fer2013.csv, or data.root pointing at the CSV)

with columns ``emotion`` (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral),
``pixels`` (2304 space-separated gray values) and ``Usage`` (Training, PublicTest, PrivateTest).

The pixels are decoded once into PNG files under ``<cache_dir>/fer2013/<key>/`` (the key
hashes the CSV's path, size and modification time), so FER2013 goes through the same image
pipeline as every other visual corpus. FER2013 has no subject ids: each sample is its own
"speaker", so subject-independent protocols cannot be honoured (the faces of one person may
appear in train and test); use ``protocol=official``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.data.adapters.base import CorpusError, OnError, Problems, file_line, read_text, require_root
from emoexp.labels.emotions import canonical_emotion

CORPUS = "fer2013"
NATIVE_NAMES: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
"""FER2013's names of the integer labels 0-6."""
EMOTIONS: tuple[str, ...] = tuple(canonical_emotion(name) for name in NATIVE_NAMES)
"""Canonical names of the integer labels 0-6."""
USAGE: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SIDE = 48
_LAYOUT = "the folder holding fer2013.csv (columns emotion,pixels,Usage), or the CSV itself"
_INDEX_COLUMNS = [schema.ID, schema.EMOTION, schema.OFFICIAL_SPLIT, "image_name"]
_FIX_ROW = "Restore fer2013.csv from the distribution, or delete the row"


def _find_csv(base: Path) -> Path:
    if base.is_file():
        return base
    for candidate in (base / "fer2013.csv", base / "fer2013" / "fer2013.csv"):
        if candidate.is_file():
            return candidate
    raise CorpusError(f"{CORPUS}: no fer2013.csv in data.root={base}. Expected {_LAYOUT}.")


def _cache_key(path: Path) -> str:
    stat = path.stat()
    text = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{SIDE}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parse_pixels(cell: str | None) -> tuple[np.ndarray | None, str | None]:
    """Parse one ``pixels`` cell: ``(48x48 uint8 array, None)`` or ``(None, what is wrong)``.

    The values are counted before they are parsed, so a short row is reported with its real
    length even when it also holds a value that is not an integer.
    """
    tokens = (cell or "").split()
    if len(tokens) != SIDE * SIDE:
        return None, f"pixels has {len(tokens)} values; expected {SIDE * SIDE} ({SIDE}x{SIDE} gray values)"
    bad = [(i, v) for i, v in enumerate(tokens) if not (v.isascii() and v.isdigit())]
    if bad:
        position, value = bad[0]
        return None, f"pixels has {len(bad)} non-integer value(s), e.g. {value!r} (value {position + 1})"
    pixels = np.array(tokens, dtype=np.int64)
    if pixels.max() > 255:
        return None, f"pixels has {int((pixels > 255).sum())} value(s) above 255 (max {pixels.max()})"
    return pixels.astype(np.uint8).reshape(SIDE, SIDE), None


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(file line, fields)`` of each non-blank CSV record (``read_text`` keeps line numbers)."""
    reader = csv.reader(io.StringIO(text, newline="\n"))
    start = 1
    for fields in reader:
        if fields:
            yield start, fields
        start = reader.line_num + 1


def _decode_rows(path: Path, problems: Problems, image_dir: Path) -> list[dict]:
    """Validate every CSV row and write its face as ``image_dir/<id>.png``."""
    from PIL import Image

    records = _records(read_text(path, problems))
    _, header = next(records, (0, []))
    missing = {"emotion", "pixels", "Usage"} - set(header)
    if missing:
        raise CorpusError(
            f"{CORPUS}: {path} lacks column(s) {sorted(missing)} (header {header or None}); "
            f"expected {_LAYOUT}."
        )
    rows = []
    for number, (line, fields) in enumerate(records):
        where = file_line(path, line, header=True)
        record = dict(zip(header, fields, strict=False))
        label, usage = (record.get("emotion") or "").strip(), (record.get("Usage") or "").strip()
        if label not in {str(i) for i in range(len(EMOTIONS))}:
            problems(where, f"emotion {label!r} is not one of 0-6", _FIX_ROW)
            continue
        if usage not in USAGE:
            problems(where, f"Usage {usage!r} is not one of {list(USAGE)}", _FIX_ROW)
            continue
        pixels, problem = _parse_pixels(record.get("pixels"))
        if problem is not None:
            problems(where, problem, _FIX_ROW)
            continue
        # Ids number the data records (blank lines aside), as the distribution's row order does.
        sample_id = f"{CORPUS}_{number:05d}"
        image = image_dir / f"{sample_id}.png"
        Image.fromarray(pixels).save(image)
        rows.append(
            {
                schema.ID: sample_id,
                schema.EMOTION: EMOTIONS[int(label)],
                schema.OFFICIAL_SPLIT: USAGE[usage],
                "image_name": image.name,
            }
        )
    return rows


def _build_cache(path: Path, problems: Problems, target: Path) -> None:
    """Decode into a temporary folder and move it into place, so readers never see half a cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        rows = _decode_rows(path, problems, staging)
        pd.DataFrame(rows, columns=_INDEX_COLUMNS).to_csv(staging / "index.csv", index=False)
        (staging / "skipped.json").write_text(json.dumps(problems.skipped))
        with contextlib.suppress(OSError):  # another process finished first: keep its copy
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_fer2013(root: str | Path, cache_dir: str | Path, on_error: OnError = "raise") -> pd.DataFrame:
    """Load FER2013 as a manifest of cached PNG faces.

    Args:
        root: The folder holding ``fer2013.csv`` (or the CSV itself).
        cache_dir: Cache root (``paths.cache_dir``); the decoded faces go under ``fer2013/``.
        on_error: ``"raise"`` on the first bad row, or ``"skip"`` and list it.

    Returns:
        A manifest with the emotion mapped to canonical names, ``official_split`` from ``Usage``
        (Training -> train, PublicTest -> val, PrivateTest -> test) and ``speaker`` = the sample
        id (FER2013 has no subject ids).

    Raises:
        CorpusError: On a missing root or CSV, or (with ``on_error="raise"``) a bad row.
    """
    base = require_root(root, CORPUS, _LAYOUT)
    path = _find_csv(base)
    problems = Problems(CORPUS, on_error, _LAYOUT)
    image_dir = Path(cache_dir).expanduser() / CORPUS / _cache_key(path)
    if not (image_dir / "index.csv").is_file():
        _build_cache(path, problems, image_dir)
    index = pd.read_csv(image_dir / "index.csv", dtype=str)
    problems.skipped = json.loads((image_dir / "skipped.json").read_text())
    if problems.skipped and on_error == "raise":
        first = problems.skipped[0]
        problems(first["file"], first["problem"], _FIX_ROW)
    images = [str(image_dir / name) for name in index["image_name"]]
    manifest = index.drop(columns="image_name").assign(
        **{schema.CORPUS: CORPUS, schema.IMAGE: images, schema.SPEAKER: index[schema.ID]}
    )
    return problems.finish(manifest, root)
