r"""Face images arranged one folder per class, as CK+, JAFFE, RAF-DB or AffectNet subsets often are.

Layouts::

    root/<class>/<image>.png|jpg|...                    no official split
    root/<split>/<class>/<image>.png|jpg|...            split folders train / val|validation|dev / test

Folder names are mapped onto canonical emotion names through the synonym table of
``labels.emotions`` (``happy`` -> ``happiness``, ``Angry`` -> ``anger``, ...; extend or
override with ``mapping``). Subjects and group attributes come from an optional
metadata CSV (``path,subject,<group columns>``, ``path`` relative to ``root``) or from a
regular expression on the file name (e.g. ``^(S\d{3})_`` for CK+'s ``S005_001_00000011.png``);
without either, every image is its own subject and subject-independent protocols cannot be
honoured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from emoexp.data import schema
from emoexp.data.adapters.base import (
    CANONICAL_EMOTIONS,
    FILE_FIX,
    SPLIT_NAMES,
    CorpusError,
    EmotionMap,
    OnError,
    Problems,
    files_under,
    image_problem,
    require_root,
)

CORPUS = "image_folder"
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_LAYOUT = "one folder per class (root/<class>/*.png), optionally inside train/val/test folders"


def _read_metadata(path: Path, base: Path) -> pd.DataFrame:
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise CorpusError(f"{CORPUS}: data.corpus.metadata={path} does not exist.")
    try:
        frame = pd.read_csv(path, dtype=str, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise CorpusError(f"{CORPUS}: cannot read metadata {path}: {error}. Save it as UTF-8 CSV.") from error
    missing = {"path", "subject"} - set(frame.columns)
    if missing:
        raise CorpusError(
            f"{CORPUS}: metadata {path} lacks column(s) {sorted(missing)}; "
            "expected path,subject,<group columns>."
        )
    frame["path"] = frame["path"].map(lambda p: Path(p).as_posix())
    duplicated = frame["path"][frame["path"].duplicated()].unique()
    if len(duplicated):
        raise CorpusError(f"{CORPUS}: metadata {path} lists path(s) {list(duplicated[:5])} more than once.")
    return frame.set_index("path")


def _add_subject(
    row: dict,
    path: Path,
    relative: Path,
    meta: pd.DataFrame | None,
    pattern: re.Pattern[str] | None,
    problems: Problems,
) -> bool:
    """Set the row's subject (and groups) from the metadata or the file name; ``False`` if it has none."""
    key = relative.as_posix()
    if meta is not None:
        if key not in meta.index:
            problems(path, "has no row in the metadata CSV", f"Add a row '{key},<subject>,...'")
            return False
        record = meta.loc[key]
        if pd.isna(record["subject"]):
            problems(path, "has no subject in the metadata CSV", "Fill its subject column")
            return False
        row[schema.SPEAKER] = record["subject"]
        row.update({f"group_{c}": record[c] for c in meta.columns if c != "subject"})
    elif pattern is not None:
        match = pattern.search(path.name)
        if not match:
            problems(path, f"file name does not match subject_pattern {pattern.pattern!r}", "Fix the pattern")
            return False
        row[schema.SPEAKER] = match.group(1)
    return True


def load_image_folder(
    root: str | Path,
    mapping: Mapping[str, str | None] | None = None,
    metadata: str | Path | None = None,
    subject_pattern: str | None = None,
    corpus: str = CORPUS,
    on_error: OnError = "raise",
) -> pd.DataFrame:
    """Load a class-per-folder image corpus as a manifest.

    Args:
        root: Folder holding one sub-folder per class, optionally below split folders
            (``train``, ``val``/``validation``/``dev``, ``test``), which give ``official_split``.
        mapping: Folder name -> canonical emotion, looked up before the synonym table
            (case-insensitive); ``null`` leaves a folder out, e.g. ``{contempt: null}``.
        metadata: CSV with columns ``path`` (relative to ``root``), ``subject`` and any group
            columns (each becomes ``group_<column>``).
        subject_pattern: Regular expression whose first group, searched in the file name, is
            the subject id (used when no metadata is given).
        corpus: Corpus name written to the manifest (e.g. ``ckplus``).
        on_error: ``"raise"`` on the first bad file, or ``"skip"`` and list it.

    Returns:
        A manifest of image paths with canonical emotions, ``speaker`` (subject, or the
        sample id when unknown), ``group_*`` columns from the metadata and ``official_split``
        when split folders are used.

    Raises:
        CorpusError: On a missing root or metadata, a bad mapping, or (``on_error="raise"``) a bad file.
    """
    base = require_root(root, corpus, _LAYOUT)
    problems = Problems(corpus, on_error, _LAYOUT)
    names = EmotionMap(corpus, mapping or {})
    meta = _read_metadata(Path(metadata), base) if metadata else None
    pattern = re.compile(subject_pattern) if subject_pattern else None
    top = [p.name.lower() for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    split_layout = bool(top) and all(name in SPLIT_NAMES for name in top)
    rows = []
    for path in files_under(base, IMAGE_SUFFIXES):
        relative = path.relative_to(base)
        parts = relative.parts[1:] if split_layout else relative.parts
        if len(parts) < 2:
            problems(path, "is not inside a class folder", f"Arrange the corpus as {_LAYOUT}")
            continue
        folder = parts[0]
        if not names.known(folder):
            problems(
                path,
                f"its class folder {folder!r} is not a known emotion name",
                f"Map it with '++data.corpus.mapping.{folder}=<emotion>' "
                f"(one of {sorted(CANONICAL_EMOTIONS)}) "
                f"or leave it out with '++data.corpus.mapping.{folder}=null'",
            )
            continue
        emotion = names(folder)
        if emotion is None:
            continue
        bad_image = image_problem(path)
        if bad_image:
            problems(path, bad_image, FILE_FIX)
            continue
        sample_id = relative.with_suffix("").as_posix()
        row = {
            schema.ID: sample_id,
            schema.CORPUS: corpus,
            schema.IMAGE: str(path),
            schema.EMOTION: emotion,
            schema.SPEAKER: sample_id,
        }
        if split_layout:
            row[schema.OFFICIAL_SPLIT] = SPLIT_NAMES[relative.parts[0].lower()]
        if _add_subject(row, path, relative, meta, pattern, problems):
            rows.append(row)
    return problems.finish(rows, root)
