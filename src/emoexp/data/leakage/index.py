"""Candidate pairs from hash buckets: the indexing that keeps the guard linear-ish.

Every detector reduces an item to keys; two items become a candidate pair only when they share
a key (an exact hash, a MinHash band, a chunk of a perceptual hash), so the work grows with the
bucket sizes, not with the square of the corpus.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# A bucket this large is a key shared by a large part of the corpus (silence, a blank image, a
# stock phrase): its pairs would dominate the cost and say nothing, so it is skipped and logged.
MAX_BUCKET = 2000
# Up to this many hash comparisons, comparing every pair in array blocks is faster than an index
# (and exact); beyond it the pigeonhole index keeps the work near-linear.
DENSE_LIMIT = 200_000_000


def bucket_pairs(items: np.ndarray, keys: np.ndarray, max_bucket: int = MAX_BUCKET) -> np.ndarray:
    """All pairs of items that share a key.

    Args:
        items: Item index per entry (an item may have several entries, one per key).
        keys: The key of each entry (any hashable dtype numpy can sort).
        max_bucket: Buckets with more distinct items than this are skipped (logged).

    Returns:
        An ``(n, 2)`` int64 array of unique pairs ``(i, j)`` with ``i < j``.
    """
    frame = pd.DataFrame({"item": np.asarray(items, dtype=np.int64), "key": keys}).drop_duplicates()
    frame["bucket"] = frame.groupby("key", sort=False).ngroup()
    frame["size"] = frame.groupby("bucket")["item"].transform("size")
    frame = frame[frame["size"] > 1]
    skipped = frame.loc[frame["size"] > max_bucket, "bucket"].nunique()
    if skipped:
        log.info("leakage: %d hash bucket(s) of over %d items skipped as uninformative.", skipped, max_bucket)
    frame = frame[frame["size"] <= max_bucket].sort_values(["bucket", "item"], kind="stable")
    chunks = [np.empty((0, 2), dtype=np.int64)]
    # Buckets of one size form a matrix (bucket x member), so their pairs come in one step.
    for size, group in frame.groupby("size", sort=False):
        members = group["item"].to_numpy().reshape(-1, int(size))
        first, second = np.triu_indices(int(size), k=1)
        chunks.append(np.stack([members[:, first].ravel(), members[:, second].ravel()], axis=1))
    return unique_pairs(np.concatenate(chunks))


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """The distinct rows of an ``(n, 2)`` array of non-negative item indices, sorted."""
    if not len(pairs):
        return pairs.astype(np.int64).reshape(0, 2)
    # One int64 per pair sorts many times faster than numpy's row-wise unique.
    width = np.int64(pairs.max()) + 1
    codes = np.unique(pairs[:, 0].astype(np.int64) * width + pairs[:, 1])
    return np.stack([codes // width, codes % width], axis=1)


def hamming_pairs(bits: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of 64-bit hashes within ``max_distance`` differing bits, found without all pairs.

    By the pigeonhole principle two hashes that differ in at most ``d`` bits agree exactly on at
    least one of ``d + 1`` disjoint chunks, so bucketing on each chunk finds every such pair.

    Args:
        bits: ``uint64`` hash per item.
        max_distance: Largest Hamming distance reported.

    Returns:
        The pairs ``(n, 2)`` and their Hamming distances.
    """
    bits = np.asarray(bits, dtype=np.uint64)
    n_chunks = max_distance + 1
    edges = np.linspace(0, 64, n_chunks + 1).astype(int)
    entries, keys = [], []
    for index, (low, high) in enumerate(itertools.pairwise(edges)):
        mask = np.uint64((1 << (high - low)) - 1)
        chunk = (bits >> np.uint64(low)) & mask
        entries.append(np.arange(len(bits)))
        # The chunk's position is part of the key: equal values in different chunks are no match.
        keys.append(chunk * np.uint64(n_chunks) + np.uint64(index))
    pairs = bucket_pairs(np.concatenate(entries), np.concatenate(keys))
    distances = np.bitwise_count(bits[pairs[:, 0]] ^ bits[pairs[:, 1]]).astype(np.int64)
    keep = distances <= max_distance
    return pairs[keep], distances[keep]


def exact_pairs(keys: pd.Series) -> np.ndarray:
    """Pairs of items whose key is equal (missing keys never match)."""
    present = keys.notna().to_numpy()
    index = np.flatnonzero(present)
    return bucket_pairs(index, keys[present].astype(str).to_numpy(), max_bucket=10**9)


def dense_hamming(
    queries: np.ndarray, keys: np.ndarray, max_distance: int, block: int = 10_000_000
) -> np.ndarray:
    """Every ``(query, key)`` index pair within ``max_distance`` bits, compared in array blocks."""
    queries, keys = np.asarray(queries, dtype=np.uint64), np.asarray(keys, dtype=np.uint64)
    step = max(1, block // max(len(keys), 1))
    found = []
    for start in range(0, len(queries), step):
        distances = np.bitwise_count(queries[start : start + step, None] ^ keys[None, :])
        rows, columns = np.nonzero(distances <= max_distance)
        found.append(np.stack([rows + start, columns], axis=1))
    return np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)
