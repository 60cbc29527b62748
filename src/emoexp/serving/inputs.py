"""Turning a command-line ``input=`` (text, file, folder or CSV) into a prediction manifest.

A model reads one modality's input column (``text``, ``audio``, ``image``) or all three
(multimodal). Inputs of another modality are refused with a message saying what the model
takes; in a folder they are listed as failures and the rest is predicted.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emoexp import modalities
from emoexp.data import schema
from emoexp.serving.predictor import Failure, manifest_from_frame

# Which files hold which modality's inputs is the modality registry's answer.
AUDIO_SUFFIXES = modalities.REGISTRY[modalities.AUDIO].file_suffixes
IMAGE_SUFFIXES = modalities.REGISTRY[modalities.VISUAL].file_suffixes
TEXT_SUFFIXES = modalities.REGISTRY[modalities.TEXT].file_suffixes
TABLE_SUFFIXES = frozenset({".csv", ".tsv"})


class InputError(ValueError):
    """The input cannot be read or does not fit the model's modality; the message says what does."""


def _expects(modality: str) -> str:
    if modality == modalities.MULTIMODAL:
        return "a CSV with 'audio', 'image' (file paths) and 'text' columns"
    if modality == modalities.TEXT:
        return "a text, a .txt file (one text per line), a folder of them, or a CSV with a 'text' column"
    suffixes = ", ".join(sorted(modalities.REGISTRY[modality].file_suffixes))
    column = modalities.INPUT_COLUMNS[modality]
    return f"{modality} files ({suffixes}), a folder of them, or a CSV with a '{column}' column of paths"


def kind_of(path: Path) -> str | None:
    """The modality of a file by its suffix (``audio``, ``visual``, ``text``), ``table`` for CSV, or None."""
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return "table"
    return modalities.modality_of_file(path)


def _wrong_modality(source: str, kind: str, modality: str, run_id: str) -> str:
    shown = "image" if kind == "visual" else kind
    article = "an" if shown[0] in "aeiou" else "a"
    expected = _expects(modality)
    return f"{source} is {article} {shown} input, but run {run_id} is a {modality} model; give {expected}."


def _text_rows(path: Path) -> pd.DataFrame:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read text file {path}: {error}") from error
    rows = [(f"{path.name}:{i + 1}", line.strip()) for i, line in enumerate(lines) if line.strip()]
    return pd.DataFrame(rows, columns=[schema.ID, schema.TEXT])


def _table(path: Path, modality: str, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False
        )
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read table {path}: {error}") from error
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path} has columns {list(frame.columns)} but this {modality} model needs {columns} "
            f"(missing {missing}); give {_expects(modality)}."
        )
    for column in (schema.AUDIO, schema.IMAGE):
        if column in columns:
            # Relative paths in a CSV are relative to the CSV's folder, as in corpus manifests.
            frame[column] = [str(p if Path(p).is_absolute() else path.parent / p) for p in frame[column]]
    return frame


def read_inputs(
    value: str, modality: str, columns: list[str], run_id: str = "?"
) -> tuple[pd.DataFrame, list[Failure]]:
    """Build the manifest to predict from ``input=`` and list inputs skipped up front.

    Args:
        value: A text, a file (audio/image/.txt/.csv), or a folder.
        modality: The model's modality.
        columns: The model's input columns.
        run_id: For messages.

    Returns:
        The manifest (``id`` + input columns) and files skipped for being of another modality.

    Raises:
        InputError: If the input does not exist, is empty, or does not fit the model at all.
    """
    path = Path(value).expanduser()
    if path.is_dir():
        return _read_folder(path, modality, columns, run_id)
    if path.is_file():
        return _read_file(path, modality, columns, run_id), []
    looks_like_path = path.suffix.lower() in AUDIO_SUFFIXES | IMAGE_SUFFIXES | TEXT_SUFFIXES | TABLE_SUFFIXES
    if modality == modalities.TEXT and not looks_like_path and value.strip():
        return manifest_from_frame(pd.DataFrame({"id": ["input"], schema.TEXT: [value]}), columns), []
    if looks_like_path or modality != modalities.TEXT:
        raise InputError(
            f"input {value!r} is not an existing file or folder; "
            f"a {modality} model takes {_expects(modality)}."
        )
    raise InputError(f"input is empty; a {modality} model takes {_expects(modality)}.")


def _read_folder(
    path: Path, modality: str, columns: list[str], run_id: str
) -> tuple[pd.DataFrame, list[Failure]]:
    """Every input of the model's modality under a folder; other files are listed as skipped."""
    if modality == modalities.MULTIMODAL:
        raise InputError(f"{path} is a folder; a multimodal model needs {_expects(modality)}.")
    frames, files, skipped = [], [], []
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        kind = kind_of(file)
        if kind == modality:
            if modality == modalities.TEXT:
                frames.append(_text_rows(file))
            else:  # plain tuples: a folder of thousands of files stays quick to list
                files.append((str(file.relative_to(path)), str(file)))
            continue
        reason = (
            _wrong_modality(str(file), kind, modality, run_id)
            if kind in modalities.INPUT_COLUMNS
            else (f"not a {modality} input (unknown file type {file.suffix or 'without suffix'!r})")
        )
        skipped.append(Failure(str(file.relative_to(path)), str(file), reason))
    if files:
        frames.append(pd.DataFrame(files, columns=[schema.ID, modalities.INPUT_COLUMNS[modality]]))
    if not frames:
        raise InputError(f"folder {path} holds no {modality} input; it should hold {_expects(modality)}.")
    return manifest_from_frame(pd.concat(frames, ignore_index=True), columns), skipped


def _read_file(path: Path, modality: str, columns: list[str], run_id: str) -> pd.DataFrame:
    """One file: a table of inputs, a text file (one text a line), or one audio/image input."""
    kind = kind_of(path)
    if kind == "table":
        return manifest_from_frame(_table(path, modality, columns), columns)
    if kind != modality or modality == modalities.MULTIMODAL:
        if kind is None:
            raise InputError(
                f"{path} has an unknown file type; a {modality} model takes {_expects(modality)}."
            )
        raise InputError(_wrong_modality(str(path), kind, modality, run_id))
    if modality == modalities.TEXT:
        return manifest_from_frame(_text_rows(path), columns)
    return manifest_from_frame(
        pd.DataFrame({"id": [path.name], modalities.INPUT_COLUMNS[modality]: [str(path)]}), columns
    )
