"""Text corpora as CSV / TSV / JSON Lines files with configurable columns.

Layouts::

    root = one file: corpus.csv | corpus.tsv | corpus.jsonl | corpus.json
    root = a folder of split files: train.csv, val.csv (or validation/dev), test.csv  -> official_split

Labels are single (``label_column`` holds one name or integer id) or multiple (``multilabel``:
a JSON list, or a string split at ``label_separator``, e.g. GoEmotions' ``"2,15"``). Integer ids
are named through ``label_names``. Native names are kept in ``labels`` (multi-label) and mapped
onto canonical emotions for ``emotion`` through ``mapping``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.data.adapters.base import (
    CANONICAL_EMOTIONS,
    SPLIT_NAMES,
    CorpusError,
    EmotionMap,
    OnError,
    Problems,
    file_line,
    read_text,
    require_root,
)
from emoexp.labels.emotions import normalise_label

FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_FIX_ROW = "Fix or delete the row"


@dataclass
class TextColumns:
    """Which columns hold what, and how native labels become canonical emotions.

    Args:
        corpus: Corpus name for the manifest and messages.
        text_column: Column with the text.
        label_column: Column with the label (name or integer id), or the labels (multi-label).
        speaker_column: Column with the author/speaker id; without it each sample is its own speaker.
        split_column: Column with the official split (values through ``split_names``).
        id_column: Column with a unique sample id; without it ids are ``<file>-<row>``.
        group_columns: Columns copied as ``group_<column>`` (e.g. ``gender``, ``dialect``).
        mapping: Native label -> canonical emotion (``None`` drops the sample in single-label data).
        label_names: The corpus vocabulary in id order (names integer labels; any other label is
            an error). Without it the vocabulary is the keys of ``mapping`` plus the canonical names.
        multilabel: Samples carry a list of labels (kept natively in ``labels``; ``emotion`` is
            set when they all map onto one canonical emotion).
        label_separator: Separator of multiple labels in a string cell (e.g. ``","``).
        split_names: Split value -> ``train``/``val``/``test`` (``None`` drops those samples),
            merged over the usual spellings (``SPLIT_NAMES``).
    """

    corpus: str
    text_column: str = "text"
    label_column: str = "label"
    speaker_column: str | None = None
    split_column: str | None = None
    id_column: str | None = None
    group_columns: Sequence[str] = ()
    mapping: Mapping[str, str | None] = field(default_factory=dict)
    label_names: Sequence[str] | None = None
    multilabel: bool = False
    label_separator: str | None = None
    split_names: Mapping[str, str | None] | None = None

    def __post_init__(self) -> None:
        self.emotions = EmotionMap(self.corpus, self.mapping)
        self.mapping = self.emotions.mapping
        self.label_names = None if self.label_names is None else [str(n) for n in self.label_names]
        # A label cell may spell a declared name in another case ("Joy" for "joy").
        self._declared = {normalise_label(n): n for n in self.label_names or ()}
        self.split_names = split_names_map(self.corpus, self.split_names)

    @property
    def vocabulary(self) -> set[str]:
        """Native labels the corpus may use (without ``label_names``: synonyms of these too)."""
        if self.label_names is not None:
            return set(self.label_names)
        return set(self.mapping) | CANONICAL_EMOTIONS

    def known(self, name: str) -> bool:
        """Whether ``name`` is a declared name, or (without them) mapped, an emotion or its synonym."""
        if self.label_names is not None:
            return name in self._declared.values()
        return self.emotions.known(name)

    def check_columns(self, frame: pd.DataFrame, source: str) -> None:
        """Raise if a configured column is absent from ``frame``."""
        wanted = [self.text_column, self.label_column, self.speaker_column, self.split_column, self.id_column]
        missing = [c for c in [*wanted, *self.group_columns] if c is not None and c not in frame.columns]
        if missing:
            raise CorpusError(
                f"{self.corpus}: {source} has no column(s) {missing}; its columns are {list(frame.columns)}. "
                "Set data.corpus.text_column / label_column / ... to the right names."
            )

    def _name(self, item: Any) -> str:
        """Turn one label cell item (name or integer id) into a native name (may be out of vocabulary)."""
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        text = str(item).strip()
        if self.label_names is not None and (isinstance(item, int | np.integer) or text.isdigit()):
            index = int(text)
            return self.label_names[index] if 0 <= index < len(self.label_names) else f"<id {index}>"
        return self._declared.get(normalise_label(text), text)

    def native_labels(self, value: Any) -> list[str]:
        """Native label names in one label cell."""
        if isinstance(value, list | tuple | np.ndarray):
            items = list(value)
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            items = []
        elif isinstance(value, str) and self.multilabel and self.label_separator:
            items = [v for v in value.split(self.label_separator) if v.strip()]
        else:
            items = [value]
        return [self._name(i) for i in items if str(i).strip()]

    def emotion_of(self, names: list[str]) -> str | None:
        """The one canonical emotion ``names`` map onto (through mapping and synonyms), else ``None``."""
        mapped = {self.emotions(n) for n in names} - {None}
        return mapped.pop() if len(mapped) == 1 and mapped <= CANONICAL_EMOTIONS else None

    def rows(
        self,
        frame: pd.DataFrame,
        where: Callable[[int], str],
        problems: Problems,
        id_prefix: str,
        split: str | None = None,
    ) -> list[dict]:
        """Convert a table to manifest rows, reporting bad rows.

        Args:
            frame: The table, one row per sample.
            where: Row position -> location for messages (file and row/line).
            problems: The bad-input collector.
            id_prefix: Prefix of generated sample ids.
            split: ``official_split`` of every row (a split file), unless ``split_column`` is set.
        """
        out = []
        vocabulary = self.vocabulary
        for position, record in enumerate(frame.to_dict("records")):
            names = self.native_labels(record[self.label_column])
            unknown = [n for n in names if not self.known(n)]
            text = record[self.text_column]
            if not isinstance(text, str) or not text.strip():
                problems(where(position), f"has an empty or missing text ({text!r})", _FIX_ROW)
                continue
            if not names or (len(names) > 1 and not self.multilabel):
                problems(where(position), f"has {len(names)} labels ({names}); expected one", _FIX_ROW)
                continue
            if unknown:
                problems(
                    where(position),
                    f"label(s) {unknown} are outside the corpus vocabulary {sorted(vocabulary)}"
                    f"{'' if self.label_names is not None else ' (or a synonym of one)'}",
                    "Add them to data.corpus.mapping / data.corpus.label_names, or fix the row",
                )
                continue
            emotion = self.emotion_of(names)
            if not self.multilabel:
                if self.emotions(names[0]) is None:
                    continue
                if emotion is None:
                    problems(
                        where(position),
                        f"label {names[0]!r} has no canonical emotion",
                        f"Map it with '++data.corpus.mapping.{names[0]}=<emotion>' "
                        f"(one of {sorted(CANONICAL_EMOTIONS)}) or drop it with '=null'",
                    )
                    continue
            part = split
            if self.split_column is not None:
                value = str(record[self.split_column]).strip().lower()
                if value not in self.split_names:
                    problems(
                        where(position),
                        f"split {record[self.split_column]!r} is not one of {sorted(self.split_names)}",
                        f"Map it with '++data.corpus.split_names.{value}=train|val|test|null'",
                    )
                    continue
                part = self.split_names[value]
                if part is None:
                    continue
            sample_id = str(record[self.id_column]) if self.id_column else f"{id_prefix}{position}"
            speaker = record[self.speaker_column] if self.speaker_column else None
            row = {
                schema.ID: sample_id,
                schema.CORPUS: self.corpus,
                schema.TEXT: text,
                schema.EMOTION: emotion,
                schema.SPEAKER: sample_id if speaker is None or pd.isna(speaker) else str(speaker),
                schema.OFFICIAL_SPLIT: part,
            }
            if self.multilabel:
                row[schema.LABELS] = list(dict.fromkeys(names))
            row.update({f"{schema.GROUP_PREFIX}{c}": record[c] for c in self.group_columns})
            out.append(row)
        return out


def split_names_map(corpus: str, split_names: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """The usual split spellings (``SPLIT_NAMES``) updated with the configured ones, keys lower-cased."""
    names = {**SPLIT_NAMES, **{str(k).lower(): v for k, v in dict(split_names or {}).items()}}
    bad = {k: v for k, v in names.items() if v not in ("train", "val", "test", None)}
    if bad:
        raise CorpusError(
            f"{corpus}: data.corpus.split_names must map onto train, val, test or null, got {bad}."
        )
    return names


def _format_of(path: Path, fmt: str | None, read_kwargs: Mapping[str, Any]) -> str:
    if fmt is not None:
        if fmt not in set(FORMATS.values()):
            raise CorpusError(f"data.corpus.format={fmt!r} is not one of {sorted(set(FORMATS.values()))}.")
        return fmt
    if path.suffix.lower() in FORMATS:
        return FORMATS[path.suffix.lower()]
    if "sep" in read_kwargs:
        return "csv"
    raise CorpusError(
        f"cannot tell the format of {path} from its suffix; set data.corpus.format=csv|tsv|jsonl|json "
        "(and data.corpus.read_kwargs.sep for other separators)."
    )


def _csv_options(fmt: str, read_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``pandas.read_csv`` options: the format's separator and text cells, then ``read_kwargs``."""
    return {"sep": "\t" if fmt == "tsv" else ",", "dtype": str, **(read_kwargs or {})}


# read_csv options under which every data row is one non-blank CSV record after the header, so
# its file line can be told (the python csv module tokenizes like pandas under them). Any other
# option (skiprows, comment, nrows, ...) may drop records: rows are then named by position.
_LINE_SAFE_OPTIONS = frozenset(
    {
        *("sep", "delimiter", "header", "names", "dtype", "usecols", "converters"),
        *("na_values", "keep_default_na", "na_filter", "true_values", "false_values"),
        *("quotechar", "quoting", "escapechar", "doublequote", "engine", "on_bad_lines"),
    }
)


@dataclass
class _CsvLines:
    """File lines (1-based) where the rows of a CSV text start, as ``pandas.read_csv`` reads it."""

    rows: list[int]
    """Line of each data row pandas keeps."""
    malformed: list[int]
    """Line of each record with more fields than columns (pandas' bad lines), in file order."""
    header: bool
    """The text has a header line."""


def _csv_lines(text: str, options: Mapping[str, Any]) -> _CsvLines | None:
    """Tell where each data row of a CSV text starts, tokenizing it as ``pandas.read_csv`` will.

    Blank records are skipped and the header (``header=N``: the first N+1 records) dropped, as
    pandas does. Records span several lines when a quoted field holds a newline.

    Returns:
        The lines, or ``None`` when ``options`` make them unknowable.
    """
    header = options.get("header", "infer")
    if header == "infer":
        header = None if options.get("names") is not None else 0
    sep = options.get("sep", options.get("delimiter", ","))
    simple_header = header is None or (isinstance(header, int) and not isinstance(header, bool))
    if set(options) - _LINE_SAFE_OPTIONS or not simple_header or not isinstance(sep, str) or len(sep) != 1:
        return None
    reader = csv.reader(
        io.StringIO(text, newline="\n"),
        delimiter=sep,
        quotechar=options.get("quotechar", '"'),
        quoting=options.get("quoting", csv.QUOTE_MINIMAL),
        escapechar=options.get("escapechar"),
        doublequote=options.get("doublequote", True),
    )
    records, start = [], 1
    try:
        for fields in reader:
            if len(fields) > 1 or (fields and fields[0].strip()):
                records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error:
        return None
    body = records if header is None else records[header + 1 :]
    if options.get("names") is not None:
        width = len(options["names"])
    elif header is not None:
        width = len(records[header][1]) if len(records) > header else 0
    else:
        width = len(body[0][1]) if body else 0
    return _CsvLines(
        rows=[line for line, fields in body if len(fields) <= width],
        malformed=[line for line, fields in body if len(fields) > width],
        header=header is not None,
    )


def _read_csv(
    path: Path, text: str, fmt: str, problems: Problems, read_kwargs: Mapping[str, Any] | None
) -> tuple[pd.DataFrame, list[str]]:
    """Read a CSV/TSV text, reporting malformed lines; return the table and each row's location."""
    options = _csv_options(fmt, read_kwargs)
    lines = _csv_lines(text, options)
    malformed: list[list[str]] = []
    if problems.on_error == "skip":
        # The python engine hands lines with too many fields to a callable (which drops them).
        options.update(engine="python", on_bad_lines=malformed.append)
    try:
        frame = pd.read_csv(io.StringIO(text), **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        if lines is not None and lines.malformed:
            problems(
                file_line(path, lines.malformed[0], lines.header),
                "has more fields than there are columns",
                _FIX_ROW,
            )
        raise CorpusError(
            f"{problems.corpus}: {path}: cannot be parsed as {fmt.upper()} ({error})."
        ) from error
    if lines is not None and len(lines.rows) == len(frame) and len(lines.malformed) == len(malformed):
        where = [file_line(path, line, lines.header) for line in lines.rows]
        malformed_where = [file_line(path, line, lines.header) for line in lines.malformed]
    else:
        # The options hide which records became rows: name rows by position, never by a wrong line.
        unknown = "file line unknown with these data.corpus.read_kwargs"
        where = [f"{path} data row {i + 1} (counted after the header; {unknown})" for i in range(len(frame))]
        malformed_where = [f"{path} ({unknown})"] * len(malformed)
    for place, fields in zip(malformed_where, malformed, strict=True):
        problems(place, f"has {len(fields)} fields, more than there are columns ({fields[:3]}...)", _FIX_ROW)
    return frame, where


def read_table(
    path: Path,
    fmt: str,
    problems: Problems,
    encoding: str = "utf-8",
    read_kwargs: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Read one CSV/TSV/JSONL/JSON file, reporting undecodable and malformed lines.

    Returns:
        The table and, per row, its location for messages: ``<file> line N (file line...)``,
        the 1-based line of the file that holds the row (see :func:`~.base.file_line`), or
        ``<file> record N`` for the N-th object of a JSON array.
    """
    text = read_text(path, problems, encoding)
    if fmt in ("csv", "tsv"):
        return _read_csv(path, text, fmt, problems, read_kwargs)
    if fmt == "json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise CorpusError(f"{problems.corpus}: {path}: invalid JSON ({error}).") from error
        return pd.DataFrame(records), [
            f"{path} record {i + 1} (of the JSON array)" for i in range(len(records))
        ]
    records, where = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems(file_line(path, number), f"is not valid JSON ({error.msg})", _FIX_ROW)
            continue
        if not isinstance(record, dict):
            problems(file_line(path, number), "is not a JSON object", _FIX_ROW)
            continue
        records.append(record)
        where.append(file_line(path, number))
    return pd.DataFrame(records), where


def _split_files(base: Path) -> list[tuple[Path, str]]:
    files = [p for p in sorted(base.iterdir()) if p.is_file() and not p.name.startswith(".")]
    found = [(p, SPLIT_NAMES[p.stem.lower()]) for p in files if p.stem.lower() in SPLIT_NAMES]
    if not found:
        raise CorpusError(
            f"data.root={base} is a folder without split files (train.*, val.*/validation.*/dev.*, test.*); "
            f"it holds {[p.name for p in files][:10]}. Point data.root at the data file instead."
        )
    return found


def load_text_table(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
    root: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    speaker_column: str | None = None,
    split_column: str | None = None,
    id_column: str | None = None,
    group_columns: Sequence[str] = (),
    mapping: Mapping[str, str | None] | None = None,
    label_names: Sequence[str] | None = None,
    multilabel: bool = False,
    label_separator: str | None = None,
    split_names: Mapping[str, str | None] | None = None,
    format: str | None = None,
    read_kwargs: Mapping[str, Any] | None = None,
    encoding: str = "utf-8",
    corpus: str = "text_table",
    on_error: OnError = "raise",
) -> pd.DataFrame:
    """Load a text corpus from a CSV/TSV/JSONL/JSON file or a folder of split files.

    Args:
        root: A data file, or a folder holding ``train.*``, ``val.*`` (or ``validation``/``dev``)
            and ``test.*`` files, whose names give ``official_split``.
        text_column: See :class:`TextColumns` for this and the following column options.
        label_column: Label column.
        speaker_column: Speaker/author column.
        split_column: Official split column.
        id_column: Sample id column.
        group_columns: Group attribute columns.
        mapping: Native label -> canonical emotion.
        label_names: Vocabulary in id order.
        multilabel: Multi-label samples.
        label_separator: Separator of labels in a string cell.
        split_names: Split value -> train/val/test, merged over the usual spellings.
        format: ``csv``, ``tsv``, ``jsonl`` or ``json``; by default from the file suffix.
        read_kwargs: Extra ``pandas.read_csv`` arguments, e.g.
            ``{sep: ";", header: null, names: [text, label]}``.
        encoding: Text encoding of the files.
        corpus: Corpus name written to the manifest.
        on_error: ``"raise"`` on the first bad row, or ``"skip"`` and list it.

    Returns:
        A manifest of texts with ``emotion`` (and ``labels`` when multi-label), ``speaker``,
        ``official_split`` and ``group_*`` columns as configured.

    Raises:
        CorpusError: On a missing root or column, or (``on_error="raise"``) a bad row.
    """
    layout = "a CSV/TSV/JSONL/JSON file, or a folder of train/val/test files"
    base = require_root(root, corpus, layout)
    problems = Problems(corpus, on_error, layout)
    spec = TextColumns(
        corpus,
        text_column,
        label_column,
        speaker_column,
        split_column,
        id_column,
        tuple(group_columns),
        mapping or {},
        label_names,
        multilabel,
        label_separator,
        split_names,
    )
    files = _split_files(base) if base.is_dir() else [(base, None)]
    rows = []
    for path, split in files:
        frame, where = read_table(
            path, _format_of(path, format, read_kwargs or {}), problems, encoding, read_kwargs
        )
        if frame.empty:
            problems(path, "holds no rows", "Check the file and data.corpus.read_kwargs")
            continue
        spec.check_columns(frame, str(path))
        prefix = f"{path.stem}-" if len(files) > 1 or split else f"{corpus}-"
        rows += spec.rows(frame, where.__getitem__, problems, prefix, split)
    return problems.finish(rows, root)
