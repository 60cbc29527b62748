"""Text fingerprints: normalised text for exact duplicates, MinHash LSH for near-duplicates.

Normalisation folds case, Unicode forms and punctuation and squeezes elongations ("soooo"), so
"So HAPPY!!!" and "so happy" are one text. Near-duplicates (typos, a changed word) are found
with MinHash over character trigrams, banded into an LSH index, and confirmed by the
normalised Levenshtein distance (:mod:`rapidfuzz`).
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
from rapidfuzz.distance import Levenshtein
from sklearn.feature_extraction.text import HashingVectorizer

from emoexp.data.leakage.index import bucket_pairs

_ELONGATION = re.compile(r"(.)\1{2,}")
_NON_WORD = re.compile(r"[\W_]+")
_FEATURES = 1 << 24


def normalise(text: str) -> str:
    """Casefold, NFKC-normalise, squeeze runs of 3+ equal characters to 2, keep words only."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    text = _ELONGATION.sub(r"\1\1", text)
    return _NON_WORD.sub(" ", text).strip()


def exact_key(text: str) -> str:
    """The key two texts share when they are the same text up to case, punctuation and spacing."""
    return normalise(text).replace(" ", "")


def minhash(texts: list[str], num_perm: int, seed: int = 0) -> np.ndarray:
    """MinHash signatures over character trigrams, one row per text.

    The trigrams are hashed by scikit-learn's vectoriser and the permutations are universal
    hashes applied to every trigram at once, so the corpus is signed in a few array passes.

    Returns:
        ``(len(texts), num_perm)`` ``uint64``; a text without trigrams has an all-max row.
    """
    vectoriser = HashingVectorizer(
        analyzer="char",
        ngram_range=(3, 3),
        n_features=_FEATURES,
        alternate_sign=False,
        norm=None,
        lowercase=False,
    )
    matrix = vectoriser.transform([f" {t} " for t in texts]).tocsr()
    matrix.sum_duplicates()
    grams = matrix.indices.astype(np.uint64)
    starts = matrix.indptr[:-1]
    filled = np.diff(matrix.indptr) > 0
    rng = np.random.default_rng(seed)
    # Multiply-shift hashes (Dietzfelbinger et al.): odd 64-bit multipliers, wrapping products,
    # the high 32 bits kept. A product small enough not to wrap would keep the trigrams' order
    # and make every permutation pick the same minimum.
    a = rng.integers(0, np.iinfo(np.uint64).max, num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, np.iinfo(np.uint64).max, num_perm, dtype=np.uint64, endpoint=True)
    signatures = np.full((len(texts), num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    if not len(grams):
        return signatures
    for column in range(num_perm):
        hashed = (a[column] * grams + b[column]) >> np.uint64(32)
        signatures[filled, column] = np.minimum.reduceat(hashed, starts[filled])
    return signatures


def near_pairs(
    texts: list[str], max_distance: float, min_chars: int, bands: int = 16, rows: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of distinct texts within ``max_distance`` normalised edit distance.

    Args:
        texts: Normalised texts, all different.
        max_distance: Largest Levenshtein distance divided by the longer length.
        min_chars: Texts shorter than this are only compared exactly (a typo in a three-word
            text is indistinguishable from another text).
        bands: LSH bands; with ``rows`` MinHash values each, pairs with a trigram Jaccard
            similarity of 0.75 (one typo in a 20-character text) are candidates with probability
            0.998, of 0.6 with 0.89, of 0.3 with 0.13.
        rows: MinHash values per band.

    Returns:
        Pairs ``(n, 2)`` of indices into ``texts`` and their normalised distances.
    """
    long_enough = np.flatnonzero(np.array([len(t) >= min_chars for t in texts], dtype=bool))
    if len(long_enough) < 2:
        return np.empty((0, 2), dtype=np.int64), np.empty(0)
    signatures = minhash([texts[i] for i in long_enough], bands * rows)
    items, keys = [], []
    for band in range(bands):
        block = signatures[:, band * rows : (band + 1) * rows]
        # One 64-bit key per band: the band's values mixed by a fixed multiplier.
        key = np.zeros(len(block), dtype=np.uint64)
        for column in range(rows):
            key = key * np.uint64(0x9E3779B97F4A7C15) + block[:, column]
        items.append(long_enough)
        # The band is part of the key: equal values in different bands are no match.
        keys.append(key * np.uint64(bands) + np.uint64(band))
    pairs = bucket_pairs(np.concatenate(items), np.concatenate(keys))
    distances = np.array([Levenshtein.normalized_distance(texts[i], texts[j]) for i, j in pairs], dtype=float)
    keep = distances <= max_distance
    return pairs[keep], distances[keep]
