"""Word and character n-gram TF-IDF rows for neural text models, kept sparse.

The bag-of-n-grams MLP (``model=ngram_mlp``, the text default; :mod:`emoexp.models.mlp`) reads
the same TF-IDF n-grams as the classical text models (:class:`~emoexp.features.handcrafted.text.TextFeatures`
builds the vectorizer: word n-grams on the emotion tokenizer and character n-grams side by side,
docs/text.md). Characters carry what a word vocabulary fitted on a few hundred texts misses:
unseen inflections, elongations, emoticon and kaomoji variants, scripts without spaces.

Each row is kept as the columns of its non-zero entries and their weights, padded to the longest
row (:func:`padded_rows`): ``[N, K]`` ids and weights instead of a dense ``[N, vocabulary]``
matrix, so a corpus of 50k texts with 200k n-grams stays small. The network multiplies that row
by its first weight matrix with an ``EmbeddingBag`` (the sparse product a dense ``Linear`` would
compute).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from emoexp.features.base import Features, Featurizer
from emoexp.features.handcrafted.text import TextFeatures, vectorizer_texts


def padded_rows(matrix: Any, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse matrix's rows as ``[N, K]`` column ids and weights (``K``: the most non-zeros of a row).

    Args:
        matrix: A SciPy sparse matrix ``[N, D]``.
        pad: The id of padding entries (their weight is 0); ``D`` for an ``EmbeddingBag`` of
            ``D + 1`` rows whose last row is padding.

    Returns:
        ``(ids, weights)``: int64 and float32 ``[N, max(1, K)]``.
    """
    csr = matrix.tocsr()
    csr.sort_indices()
    counts = np.diff(csr.indptr)
    width = max(1, int(counts.max(initial=0)))
    ids = np.full((csr.shape[0], width), pad, dtype=np.int64)
    weights = np.zeros((csr.shape[0], width), dtype=np.float32)
    rows = np.repeat(np.arange(csr.shape[0]), counts)
    positions = np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], counts)
    ids[rows, positions] = csr.indices
    weights[rows, positions] = csr.data
    return torch.from_numpy(ids), torch.from_numpy(weights)


class NgramFeatures(Featurizer):
    """TF-IDF word and character n-grams, fitted on the training texts, as sparse rows.

    Args:
        analyzer: ``"word+char_wb"`` (word n-grams and character n-grams within words, each part
            L2-normalised and weighted 1/sqrt(2)), ``"word+char"``, ``"word"``, ``"char"`` or
            ``"char_wb"``.
        ngram_range: Smallest and largest word n-gram length.
        char_ngram_range: Smallest and largest character n-gram length.
        tokenizer: How texts are split into words: ``"emotion"`` (keeps emoji, emoticons,
            kaomoji, hashtags; docs/text.md), ``"words"``, or ``{name: emotion, <option>: ...}``.
        stop_words: ``"english"``, a list of words, or ``None`` (keep every word).
        keep_negations: Keep negations ("not", "never", ...) even if they are stop words.
        min_df: Ignore n-grams in fewer training texts than this (count or fraction).
        max_features: Keep only this many most frequent n-grams per part (``None``: all).
        sublinear_tf: Use ``1 + log(tf)`` term frequencies.
    """

    modality = "text"
    cacheable = False
    fit_before_extract = True

    def __init__(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
        self,
        analyzer: str = "word+char_wb",
        ngram_range: Sequence[int] = (1, 2),
        char_ngram_range: Sequence[int] = (2, 5),
        tokenizer: str | Mapping[str, Any] = "emotion",
        stop_words: str | Sequence[str] | None = None,
        keep_negations: bool = True,
        min_df: float = 1,
        max_features: int | None = None,
        sublinear_tf: bool = True,
    ):
        self._text = TextFeatures(
            representation="tfidf",
            analyzer=analyzer,
            ngram_range=ngram_range,
            char_ngram_range=char_ngram_range,
            tokenizer=tokenizer,
            stop_words=stop_words,
            keep_negations=keep_negations,
            min_df=min_df,
            max_features=max_features,
            sublinear_tf=sublinear_tf,
        )
        self.analyzer = analyzer
        self.ngram_range = list(self._text.ngram_range)
        self.char_ngram_range = list(self._text.char_ngram_range)
        self.tokenizer = self._text.tokenizer
        self.stop_words = self._text.stop_words
        self.keep_negations = keep_negations
        self.min_df = min_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self._vectorizer: Any = None

    def _parts(self) -> list[Any]:
        """The fitted TF-IDF vectorizers, in column order (one, or the word and character ones)."""
        union = getattr(self._vectorizer, "transformer_list", None)
        return [v for _, v in union] if union is not None else [self._vectorizer]

    def fit(self, manifest: pd.DataFrame, features: Features | None) -> None:  # noqa: D102
        [(_, vectorizer)] = self._text.pipeline_steps()
        self._vectorizer = vectorizer.fit(vectorizer_texts(manifest))

    @property
    def num_ngrams(self) -> int:
        """Columns of a row: the fitted vocabulary's size (0 before :meth:`fit`)."""
        return sum(len(part.vocabulary_) for part in self._parts()) if self._vectorizer is not None else 0

    def extract(self, manifest: pd.DataFrame) -> Features:  # noqa: D102
        if self._vectorizer is None:
            raise RuntimeError("NgramFeatures.extract called before fit")
        rows = self._vectorizer.transform(vectorizer_texts(manifest))
        ids, weights = padded_rows(rows, pad=self.num_ngrams)
        return {"ngram_ids": ids, "ngram_weights": weights}

    def join(self, parts: list[Features]) -> Features:
        """Row groups as one, each padded to the widest group's row width."""
        width = max(part["ngram_ids"].shape[1] for part in parts)
        pad = self.num_ngrams

        def widen(tensor: torch.Tensor, value: float) -> torch.Tensor:
            return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=value)

        return {
            "ngram_ids": torch.cat([widen(part["ngram_ids"], pad) for part in parts]),
            "ngram_weights": torch.cat([widen(part["ngram_weights"], 0.0) for part in parts]),
        }

    def net_kwargs(self) -> dict[str, Any]:  # noqa: D102
        return {"num_ngrams": self.num_ngrams}

    def fitted_parts(self) -> list[dict[str, Any]]:
        """Each fitted vectorizer, in column order: what rebuilds its columns without scikit-learn.

        Returns:
            Per part: ``analyzer`` (``word``, ``char`` or ``char_wb``), ``ngram_range``,
            ``vocabulary`` (n-gram -> column within the part), ``idf`` (float64 array) and
            ``weight`` (the part's factor in the joined row: 1/sqrt(2) for word+char, else 1).
        """
        union = getattr(self._vectorizer, "transformer_list", None)
        weights = [self._vectorizer.transformer_weights[name] for name, _ in union] if union else [1.0]
        return [
            {
                "analyzer": part.analyzer,
                "ngram_range": [int(n) for n in part.ngram_range],
                "vocabulary": {str(k): int(v) for k, v in part.vocabulary_.items()},
                "idf": np.asarray(part.idf_, dtype=np.float64),
                "weight": float(weight),
            }
            for part, weight in zip(self._parts(), weights, strict=True)
        ]

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {
            "parts": [
                {"vocabulary": part["vocabulary"], "idf": torch.from_numpy(part["idf"])}
                for part in self.fitted_parts()
            ]
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: D102
        [(_, vectorizer)] = self._text.pipeline_steps()
        self._vectorizer = vectorizer
        parts = self._parts()
        if len(parts) != len(state["parts"]):
            raise ValueError(
                f"the saved n-gram state has {len(state['parts'])} vectorizers, analyzer="
                f"{self.analyzer!r} needs {len(parts)}: the model folder's config does not match it."
            )
        for part, saved in zip(parts, state["parts"], strict=True):
            part.set_params(vocabulary=dict(saved["vocabulary"]))
            part.idf_ = np.asarray(torch.as_tensor(saved["idf"]), dtype=np.float64)
