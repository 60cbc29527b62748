"""What every corpus adapter shares: bad-input reporting and cheap integrity checks.

Bad input never passes silently. With ``on_error="raise"`` (the default) the first bad
file or row raises a :class:`CorpusError` naming the file, the problem and the fix; with
``on_error="skip"`` it is left out and listed in ``manifest.attrs["skipped"]`` (see
:func:`skipped_report`), which the runner logs as ``reports/skipped_files.csv``. A bad row
or line of a text file is named by its line in the file (:func:`file_line`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from emoexp.data import schema
from emoexp.labels.emotions import CIRCUMPLEX, canonical_emotion, normalise_label

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
SKIPPED_ATTR = "skipped"
SKIPPED_COLUMNS: tuple[str, ...] = ("corpus", "file", "problem")

CANONICAL_EMOTIONS: frozenset[str] = frozenset(CIRCUMPLEX)
"""Emotion names an adapter may put in the ``emotion`` column (see ``labels.emotions``)."""

SPLIT_NAMES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}
"""Common spellings of split names -> ``official_split`` values."""


class CorpusError(ValueError):
    """A corpus folder, file or row does not follow the corpus's layout or cannot be read."""


@dataclass
class EmotionMap:
    """Native label -> canonical emotion, as every adapter with configurable labels reads them.

    A label is looked up in ``mapping`` (exactly, then by its normalised spelling: case and
    blanks ignored), then in the synonym table (``labels.emotions.SYNONYMS``: ``joy`` and
    ``happy`` -> ``happiness``, ``angry`` -> ``anger``, ...).

    Args:
        corpus: Corpus name, for messages.
        mapping: Native label -> canonical emotion (or a synonym of one); ``None`` leaves the label out.

    Raises:
        CorpusError: If ``mapping`` maps onto something that is no canonical emotion.
    """

    corpus: str
    mapping: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        resolved = {
            k: None if v is None else canonical_emotion(v) for k, v in dict(self.mapping or {}).items()
        }
        bad = {
            k: self.mapping[k] for k, v in resolved.items() if v is not None and v not in CANONICAL_EMOTIONS
        }
        if bad:
            raise CorpusError(
                f"{self.corpus}: data.corpus.mapping maps onto non-canonical emotion(s) {bad}; "
                f"use one of {sorted(CANONICAL_EMOTIONS)} (or a synonym such as joy, angry, sad) or null."
            )
        self.mapping = resolved
        self._by_key = {normalise_label(k): v for k, v in resolved.items()}

    def mapped(self, label: str) -> bool:
        """Whether ``mapping`` names ``label`` (exactly or by its normalised spelling)."""
        return label in self.mapping or normalise_label(label) in self._by_key

    def known(self, label: str) -> bool:
        """Whether ``label`` is mapped, a canonical emotion or a synonym of one."""
        return self.mapped(label) or canonical_emotion(label) in CANONICAL_EMOTIONS

    def __call__(self, label: str) -> str | None:
        """The canonical emotion of ``label`` (``None``: left out); an unknown label comes back as given."""
        if label in self.mapping:
            return self.mapping[label]
        return self._by_key.get(normalise_label(label), canonical_emotion(label))


@dataclass
class Problems:
    """Collects bad files of one corpus: raises on the first, or records them to skip.

    Args:
        corpus: Corpus name used in messages.
        on_error: ``"raise"`` or ``"skip"``.
        layout: What ``data.root`` should hold, for the message when nothing usable is found.
    """

    corpus: str
    on_error: OnError = "raise"
    layout: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise CorpusError(f"data.corpus.on_error must be 'raise' or 'skip', got {self.on_error!r}.")

    def __call__(self, where: str | Path, problem: str, fix: str) -> None:
        """Report one bad file or row.

        Args:
            where: The file (and row/line) at fault.
            problem: What is wrong with it.
            fix: What the user can do about it.

        Raises:
            CorpusError: With ``on_error="raise"``.
        """
        if self.on_error == "raise":
            raise CorpusError(
                f"{self.corpus}: {where}: {problem}. {fix} "
                "(or set data.corpus.on_error=skip to skip such files and list them in "
                "reports/skipped_files.csv)."
            )
        self.skipped.append({"corpus": self.corpus, "file": str(where), "problem": problem})

    def finish(self, rows: list[dict] | pd.DataFrame, root: str | Path) -> pd.DataFrame:
        """Validate the rows as a manifest and attach the skipped-file list.

        Duplicated sample ids (e.g. a corpus extracted twice under one root) are reported
        like any other bad file.

        Args:
            rows: One dict per sample, or a frame.
            root: The corpus root, for messages.

        Returns:
            The manifest, with ``attrs["skipped"]`` listing what was skipped.
        """
        frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
        if not frame.empty:
            duplicated = frame[schema.ID].duplicated()
            for index in frame.index[duplicated]:
                self(
                    _input_of(frame.loc[index]),
                    f"duplicates sample id {frame.at[index, schema.ID]!r}",
                    "Remove the second copy of the file from data.root",
                )
            frame = frame.loc[~duplicated]
        if frame.empty:
            detail = (
                f"; {len(self.skipped)} file(s) were skipped, e.g. {self.skipped[:3]}" if self.skipped else ""
            )
            expected = f" Expected: {self.layout}." if self.layout else ""
            raise CorpusError(f"{self.corpus}: no usable sample under data.root={root}{detail}.{expected}")
        manifest = schema.validate_manifest(frame, self.corpus)
        manifest.attrs[SKIPPED_ATTR] = list(self.skipped)
        if self.skipped:
            log.warning(
                "%s: skipped %d bad file(s)/row(s), e.g. %s", self.corpus, len(self.skipped), self.skipped[0]
            )
        return manifest


def _input_of(row: pd.Series) -> str:
    for column in (schema.AUDIO, schema.IMAGE):
        if isinstance(row.get(column), str):
            return row[column]
    return str(row[schema.ID])


def skipped_report(manifest: pd.DataFrame) -> pd.DataFrame:
    """Return the files/rows an adapter skipped (columns ``corpus``, ``file``, ``problem``)."""
    return pd.DataFrame(manifest.attrs.get(SKIPPED_ATTR, []), columns=list(SKIPPED_COLUMNS))


def require_root(root: str | Path | None, corpus: str, expected: str) -> Path:
    """Return ``root`` as a path, or raise a :class:`CorpusError` saying what to point it at.

    Args:
        root: ``data.root`` as given.
        corpus: Corpus name, for the message.
        expected: What ``data.root`` should hold, e.g. "the folder holding Actor_01 ... Actor_24".
    """
    if root is None or str(root) in ("", "???"):
        raise CorpusError(f"{corpus}: data.root is not set; pass data.root=/path/to/{corpus} ({expected}).")
    path = Path(root).expanduser()
    if not path.exists():
        raise CorpusError(
            f"{corpus}: data.root={root} does not exist. Set data.root to the extracted corpus ({expected})."
        )
    return path


def files_under(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Yield files under ``root`` with one of ``suffixes`` (case-insensitive), sorted, skipping hidden ones.

    Hidden files include the ``._name`` AppleDouble copies that macOS archives leave next to
    every file: they carry the corpus's file names but no audio.
    """
    for path in sorted(root.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if path.suffix.lower() in suffixes and not hidden and path.is_file():
            yield path


def audio_problem(path: Path) -> str | None:
    """Return what is wrong with an audio file (``None`` if it has frames and decodes).

    Reads the header only (``soundfile.info``), so it is cheap even for large corpora.
    """
    import soundfile as sf

    if path.stat().st_size == 0:
        return "is an empty file (0 bytes)"
    try:
        info = sf.info(str(path))
    except Exception as error:
        return f"cannot be decoded as audio ({error})"
    if info.frames <= 0:
        return "has no audio frames (empty or truncated)"
    return None


def image_problem(path: Path) -> str | None:
    """Return what is wrong with an image file (``None`` if PIL can identify and verify it)."""
    from PIL import Image

    if path.stat().st_size == 0:
        return "is an empty file (0 bytes)"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:
        return f"cannot be decoded as an image ({type(error).__name__}: {error})"
    return None


FILE_FIX = "Replace it with an intact copy from the corpus distribution, or delete it"


def file_line(path: str | Path, number: int, header: bool = False) -> str:
    """Where a line of a text file is, for messages: ``<path> line <n> (file line...)``.

    Every line number an adapter reports is the 1-based line of the file as an editor shows
    it (newline-separated, blank and undecodable lines counted), so ``sed -n <n>p`` prints it.

    Args:
        path: The file.
        number: The 1-based line number in the file.
        header: The file starts with a header line, which the numbering counts (say so, since
            table tools often number data rows from the first row after the header).
    """
    return f"{path} line {number} (file line{', header counted' if header else ''})"


def read_text(path: Path, problems: Problems, encoding: str = "utf-8") -> str:
    """Read a text file, reporting the lines that are not valid ``encoding``.

    With ``on_error="skip"`` an undecodable line is listed and left empty in the returned
    text, so that the lines after it keep their line numbers; a byte-order mark is ignored.

    Returns:
        The decodable text, with as many lines as the file.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding)
    except UnicodeDecodeError:
        pass
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode(encoding).removeprefix("\ufeff"))
        except UnicodeDecodeError as error:
            problems(
                file_line(path, number),
                f"is not valid {encoding} text ({error.reason} at byte {error.start} of the line)",
                f"Re-save the file as {encoding} or pass data.corpus.encoding=<its encoding>",
            )
            lines.append("")
    return "\n".join(lines)


def gender_word(code: str) -> str:
    """Map ``F``/``M`` (any case, or the full word) to ``female``/``male``."""
    return {"f": "female", "m": "male", "female": "female", "male": "male"}[code.strip().lower()]
