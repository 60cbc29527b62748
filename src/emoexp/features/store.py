"""Feature files larger than memory: parallel chunked extraction, and rows read on demand.

A feature file is an ordinary safetensors file (the format of the feature cache,
:mod:`emoexp.features.cache`), so ``safetensors.torch.load_file`` reads it whole and
``safe_open`` maps it. For corpora whose features do not fit in RAM it is

- **written in chunks** of rows by ``extract_workers`` processes (:func:`write_feature_file`),
  each chunk's bytes going straight to their place in the file; and
- **read row by row** (:class:`FeatureFile`): a training batch reads its rows from the file with
  positional reads, and :class:`MappedFeatures` applies the fitted standardisation to them, so a
  process holds one batch, not the corpus.

Both need a featurizer whose :attr:`~emoexp.features.base.Featurizer.rowwise` is true: every row is
extracted and finalised on its own, with the same shape. docs/scaling.md ("Corpora bigger than
memory") describes the settings.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import struct
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from emoexp.features.base import Features, Featurizer

log = logging.getLogger(__name__)

STORAGES = ("auto", "memory", "mapped")
# With extract_workers=auto: one process per this many samples (fewer samples gain nothing from a
# process that first spends seconds importing torch), at most one per CPU and MAX_AUTO_WORKERS.
ROWS_PER_WORKER = 2000
MAX_AUTO_WORKERS = 8
# Rows per chunk that one extraction task handles (fewer when that leaves a worker idle); under
# the 200 samples from which an extractor shows its own progress bar, so only the file's shows.
CHUNK_ROWS = 128
# safetensors' dtype names (https://github.com/huggingface/safetensors#format).
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclass(frozen=True)
class FeatureStorage:
    """Where extracted features live while training, and how many processes extract them.

    The ``datamodule.storage``, ``datamodule.extract_workers`` and ``datamodule.max_in_memory_mb``
    settings (docs/scaling.md).

    Attributes:
        storage: ``memory`` (tensors in RAM), ``mapped`` (rows read from the feature file as batches
            need them) or ``auto`` (mapped when the features are larger than ``max_in_memory_mb``).
        extract_workers: Processes that extract features, or ``auto`` (one per
            :data:`ROWS_PER_WORKER` samples, at most one per CPU and :data:`MAX_AUTO_WORKERS`).
        max_in_memory_mb: With ``auto``, the feature size above which storage is mapped.
    """

    storage: str = "auto"
    extract_workers: int | str = "auto"
    max_in_memory_mb: float = 2048.0

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f"datamodule.storage={self.storage!r}: expected one of {', '.join(STORAGES)}.")
        workers = self.extract_workers
        if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"datamodule.extract_workers={workers!r}: expected a count >= 1 or 'auto'.")

    def workers(self, rows: int) -> int:
        """The number of extraction processes for ``rows`` samples."""
        if self.extract_workers != "auto":
            return int(self.extract_workers)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(cpus, MAX_AUTO_WORKERS, rows // ROWS_PER_WORKER))

    def uses_file(self, featurizer: Featurizer, rows: int) -> bool:
        """Whether features go through a feature file (chunked extraction, maybe mapped)."""
        return featurizer.rowwise and rows > 0 and (self.storage != "memory" or self.workers(rows) > 1)

    def maps(self, nbytes: int) -> bool:
        """Whether features of ``nbytes`` are read from their file on demand rather than loaded."""
        return self.storage == "mapped" or (self.storage == "auto" and nbytes > self.max_in_memory_mb * 2**20)


IN_MEMORY = FeatureStorage("memory", 1)


@dataclass(frozen=True)
class Column:
    """Where one tensor of a feature file lies: its dtype, the shape of a row, its first byte."""

    dtype: torch.dtype
    row_shape: tuple[int, ...]
    offset: int

    @property
    def row_bytes(self) -> int:
        """Bytes per row."""
        return math.prod(self.row_shape) * self.dtype.itemsize


@dataclass(frozen=True)
class Layout:
    """The tensors of a feature file, all with ``rows`` rows, and the file's size."""

    rows: int
    columns: dict[str, Column]
    nbytes: int


def plan_layout(example: Features, rows: int) -> tuple[bytes, Layout]:
    """The safetensors header and layout of ``rows`` rows shaped like ``example``'s.

    Hand-written because safetensors only writes a file from tensors that are all in memory; the
    header follows its documented format (8-byte little-endian size, JSON, data in row-major order)
    and the tests read such files back with safetensors itself.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    begin = 0
    for name in sorted(example):
        tensor = example[name]
        if tensor.dtype not in DTYPE_NAMES:
            raise ValueError(f"feature {name!r} has dtype {tensor.dtype}, which a feature file cannot hold.")
        end = begin + rows * math.prod(tensor.shape[1:]) * tensor.dtype.itemsize
        header[name] = {
            "dtype": DTYPE_NAMES[tensor.dtype],
            "shape": [rows, *tensor.shape[1:]],
            "data_offsets": [begin, end],
        }
        begin = end
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes
    return text, _layout(header, 8 + len(text))


def _layout(header: dict[str, Any], data_start: int) -> Layout:
    columns, rows, end = {}, None, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = tuple(int(n) for n in info["shape"])
        begin, stop = info["data_offsets"]
        if info["dtype"] not in DTYPES or not shape:
            raise ValueError(f"tensor {name!r} ({info['dtype']}, shape {shape}) is not rows of features.")
        columns[name] = Column(DTYPES[info["dtype"]], shape[1:], data_start + begin)
        if rows is not None and shape[0] != rows:
            raise ValueError(f"tensors with {rows} and {shape[0]} rows: not one row per sample.")
        rows, end = shape[0], max(end, stop)
    return Layout(rows or 0, columns, data_start + end)


def read_layout(path: str | Path) -> Layout:
    """The layout of an existing feature file (any safetensors file whose tensors share a row count).

    Raises:
        ValueError: If the file is not a complete safetensors file of that kind.
    """
    path = Path(path)
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path} is not a safetensors file (too short).")
        (size,) = struct.unpack("<Q", prefix)
        try:
            header = json.loads(f.read(size))
        except (ValueError, MemoryError) as error:
            raise ValueError(f"{path} has no readable safetensors header: {error}") from error
    layout = _layout(header, 8 + size)
    if path.stat().st_size != layout.nbytes:
        raise ValueError(f"{path} holds {path.stat().st_size} bytes, its header says {layout.nbytes}.")
    return layout


def _bytes_of(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous tensor as a writable buffer sharing its memory."""
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def _remove_if_owner(path: str, pid: int) -> None:
    if os.getpid() == pid:
        Path(path).unlink(missing_ok=True)


class FeatureFile:
    """Rows of a feature file, read on demand with positional reads.

    Reads, not a memory map: once touched, the pages of a mapped file count in the process's
    resident memory (what ``ps``, SLURM's accounting and RSS limits see), so one epoch over a
    mapped file larger than RAM would grow the process to the file's size. Read into fresh
    tensors, the file's pages stay in the kernel's page cache, which evicts them as it needs.
    Safe in DataLoader worker processes: each process opens its own handle.

    Args:
        path: A safetensors file whose tensors all have one row per sample.
        temporary: Remove the file when this object is collected in the process that made it.
    """

    def __init__(self, path: str | Path, temporary: bool = False):
        self.path = Path(path)
        self.layout = read_layout(self.path)
        self._handle: Any = None
        self._pid = -1
        if temporary:
            weakref.finalize(self, _remove_if_owner, str(self.path), os.getpid())

    def __len__(self) -> int:
        return self.layout.rows

    @property
    def nbytes(self) -> int:
        """The file's size in bytes."""
        return self.layout.nbytes

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None, "_pid": -1}

    def load(self) -> Features:
        """Every tensor, whole, in memory."""
        from safetensors.torch import load_file

        return load_file(self.path)

    def take(self, index: Sequence[int] | np.ndarray) -> Features:
        """The rows ``index`` (in that order) of every tensor; runs of consecutive rows are one read."""
        rows = np.asarray(index, dtype=np.int64).reshape(-1)
        rows = np.where(rows < 0, rows + len(self), rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows in {self.path}")
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts, stops = (np.r_[0, breaks], np.r_[breaks, rows.size]) if rows.size else ([], [])
        out = {}
        for name, column in self.layout.columns.items():
            tensor = torch.empty((rows.size, *column.row_shape), dtype=column.dtype)
            for start, stop in zip(list(starts), list(stops), strict=True):
                self._read_into(tensor[start:stop], column.offset + int(rows[start]) * column.row_bytes)
            out[name] = tensor
        return out

    def chunks(self, rows: np.ndarray, max_bytes: int = 16 * 2**20) -> Iterator[Features]:
        """The rows ``rows`` of every tensor, in pieces of at most about ``max_bytes``."""
        per_row = max(1, sum(c.row_bytes for c in self.layout.columns.values()))
        step = max(1, max_bytes // per_row)
        for start in range(0, len(rows), step):
            yield self.take(rows[start : start + step])

    def _read_into(self, tensor: torch.Tensor, offset: int) -> None:
        if self._pid != os.getpid():
            self._handle = self.path.open("rb", buffering=0)
            self._pid = os.getpid()
        buffer, filled = _bytes_of(tensor), 0
        self._handle.seek(offset)
        while filled < len(buffer):
            count = self._handle.readinto(buffer[filled:])
            if not count:
                raise EOFError(f"{self.path} ends before byte {offset + len(buffer)}: the file is truncated.")
            filled += count


class MappedFeatures(Mapping[str, "MappedColumn"]):
    """Model inputs of every sample, read from a feature file and finalised when indexed.

    Indexed like a features dict: ``features["x"][rows]`` (a :class:`MappedColumn`), or all inputs
    of some rows at once with :meth:`take` (what the datasets use: one read per row).

    Args:
        file: The extracted (raw) features.
        finalize: The fitted featurizer's :meth:`~emoexp.features.base.Featurizer.finalize`.
    """

    def __init__(self, file: FeatureFile, finalize: Callable[[Features], Features]):
        self.file = file
        self.finalize = finalize
        example = finalize(file.take([0]))
        self._columns = {
            name: MappedColumn(self, name, (len(file), *value.shape[1:]), value.dtype)
            for name, value in example.items()
        }

    def take(self, index: Any) -> Features:
        """Every model input of the rows ``index`` (a row number gives rows without a batch axis)."""
        if _is_scalar(index):
            return {k: v[0] for k, v in self.finalize(self.file.take([int(index)])).items()}
        return self.finalize(self.file.take(_row_numbers(index, len(self.file))))

    def __getitem__(self, name: str) -> MappedColumn:
        return self._columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


class MappedColumn:
    """One model input of :class:`MappedFeatures`, indexed by row like a tensor."""

    def __init__(self, features: MappedFeatures, name: str, shape: tuple[int, ...], dtype: torch.dtype):
        self.features = features
        self.name = name
        self.shape = torch.Size(shape)
        self.dtype = dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> torch.Tensor:
        return self.features.take(index)[self.name]


def _is_scalar(index: Any) -> bool:
    return isinstance(index, int | np.integer) or (torch.is_tensor(index) and index.dim() == 0)


def _row_numbers(index: Any, rows: int) -> np.ndarray:
    if isinstance(index, slice):
        return np.arange(*index.indices(rows))
    array = np.asarray(index.cpu() if torch.is_tensor(index) else index)
    return np.flatnonzero(array) if array.dtype == bool else array.astype(np.int64)


# ---- writing: chunks of rows, extracted in this process or by worker processes -------------------

_WORKER_FEATURIZER: Featurizer | None = None


def _start_worker(featurizer: Featurizer) -> None:
    global _WORKER_FEATURIZER  # the pool's per-process featurizer, set once
    torch.set_num_threads(1)  # the processes are the parallelism; threads would oversubscribe
    _WORKER_FEATURIZER = featurizer


def _fill_chunk(
    featurizer: Featurizer, manifest: pd.DataFrame, path: Path, layout: Layout, start: int
) -> int:
    """Extract ``manifest``'s rows and write them at row ``start`` of the file; returns the count."""
    features = featurizer.extract(manifest)
    with path.open("r+b") as f:
        for name, column in layout.columns.items():
            tensor = features.get(name)
            if tensor is None or tuple(tensor.shape) != (len(manifest), *column.row_shape):
                raise ValueError(
                    f"{type(featurizer).__name__} gave {name!r} of shape "
                    f"{None if tensor is None else tuple(tensor.shape)} for {len(manifest)} rows, "
                    f"expected rows of shape {column.row_shape}: a rowwise featurizer gives every "
                    "row the same shape."
                )
            f.seek(column.offset + start * column.row_bytes)
            f.write(_bytes_of(tensor.to(column.dtype).contiguous()))
    return len(manifest)


def _fill_chunk_in_worker(manifest: pd.DataFrame, path: Path, layout: Layout, start: int) -> int:
    assert _WORKER_FEATURIZER is not None, "the pool starts every worker with the featurizer"
    return _fill_chunk(_WORKER_FEATURIZER, manifest, path, layout, start)


def write_feature_file(
    featurizer: Featurizer, manifest: pd.DataFrame, path: str | Path, workers: int = 1
) -> None:
    """Extract every row of ``manifest`` into the feature file ``path``, in chunks.

    The first row is extracted here to learn the rows' shapes; the rest is split in chunks of at
    most :data:`CHUNK_ROWS` rows, extracted in this process (``workers=1``) or by ``workers``
    processes with one torch thread each, each chunk written in place.

    Args:
        featurizer: A :attr:`~emoexp.features.base.Featurizer.rowwise` featurizer.
        manifest: The samples, one row of the file each (at least one).
        path: The file to write (replaced).
        workers: Extraction processes.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    first = featurizer.extract(manifest.iloc[:1])
    header, layout = plan_layout(first, len(manifest))
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(layout.nbytes)
    _fill_chunk(featurizer, manifest.iloc[:1], path, layout, 0)
    rest = len(manifest) - 1
    size = max(1, min(CHUNK_ROWS, math.ceil(rest / (4 * workers))))
    starts = list(range(1, len(manifest), size))
    chunks = [(manifest.iloc[s : s + size], path, layout, s) for s in starts]
    label = f"{type(featurizer).__name__} x{workers}"
    with tqdm(total=rest, desc=label, leave=False, disable=len(manifest) < 200) as progress:
        if workers == 1:
            for chunk in chunks:
                progress.update(_fill_chunk(featurizer, *chunk))
        else:
            _fill_in_pool(featurizer, chunks, workers, progress.update)


def _fill_in_pool(
    featurizer: Featurizer, chunks: list[tuple], workers: int, done: Callable[[int], Any]
) -> None:
    # Forked on Linux, as DataLoader workers are: a spawned process spends seconds importing torch
    # before its first chunk, which on a 2-core machine costs a third of the gain. The children only
    # decode audio and compute spectrograms with one torch thread, so they never touch the locks of
    # the parent's other threads (the MLflow recorder, the lease heartbeat). Elsewhere: spawn.
    method = "fork" if sys.platform == "linux" else "spawn"
    context = multiprocessing.get_context(method)
    log.info("Extracting features with %d processes", workers)
    with ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=(featurizer,)) as pool:
        futures = [pool.submit(_fill_chunk_in_worker, *chunk) for chunk in chunks]
        try:
            for future in as_completed(futures):
                done(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
