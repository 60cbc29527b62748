"""Text tokenisation for neural models: a word vocabulary or a local HF tokenizer.

The word vocabulary's tokens come from :mod:`emoexp.features.tokenize` (``tokenizer: emotion``,
the default: words, emoji, emoticons, kaomoji, hashtags, characters of scripts without spaces),
or from the older ASCII word tokenizer (``tokenizer: words``).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from emoexp.data import schema
from emoexp.features.base import Features, Featurizer
from emoexp.features.tokenize import WORD_PATTERN, make_tokenizer, tokenizer_spec

PAD, UNK, CLS = "<pad>", "<unk>", "<cls>"
_TOKEN: re.Pattern[str] = WORD_PATTERN


class TextError(ValueError):
    """A text sample is empty or not a string."""


def require_text(text: object, sample_id: str = "?") -> str:
    """Return ``text`` unchanged; reject empty or non-string text."""
    if not isinstance(text, str) or not text.strip():
        raise TextError(
            f"sample {sample_id!r} has an empty or missing text ({text!r}); fix or drop it in the corpus."
        )
    return text


def normalise_text(text: object, sample_id: str = "?") -> str:
    """NFKC-normalise, lower-case and collapse whitespace; reject empty or non-string text."""
    return " ".join(unicodedata.normalize("NFKC", require_text(text, sample_id)).lower().split())


def tokenize(text: str) -> list[str]:
    """Split normalised text into ASCII word and punctuation tokens (the ``words`` tokenizer)."""
    return _TOKEN.findall(text)


class VocabTokenizer(Featurizer):
    """Word-level tokenizer whose vocabulary is built on the training split.

    Args:
        max_length: Sequences are cropped/padded to this many tokens (including ``<cls>``).
        min_freq: Words seen fewer times in training map to ``<unk>``.
        max_vocab: Keep at most this many words (most frequent first).
        tokenizer: ``"emotion"`` (words, emoji, emoticons, kaomoji, hashtags, characters of
            scripts without spaces; :mod:`emoexp.features.tokenize`), ``"words"`` (ASCII words
            only), or ``{name: emotion, <option>: ...}`` with that tokenizer's options.
    """

    modality = "text"
    cacheable = False
    fit_before_extract = True

    def __init__(
        self,
        max_length: int = 48,
        min_freq: int = 1,
        max_vocab: int = 20000,
        tokenizer: str | Mapping[str, Any] = "emotion",
    ):
        self.max_length = max_length
        self.min_freq = min_freq
        self.max_vocab = max_vocab
        self.tokenizer = tokenizer_spec(tokenizer)
        self._tokenize = make_tokenizer(self.tokenizer)
        self._vocab: dict[str, int] = {}

    def tokens(self, text: object, sample_id: str = "?") -> list[str]:
        """The tokens of one text (before the vocabulary lookup)."""
        return self._tokenize(require_text(text, sample_id))

    def fit(self, manifest: pd.DataFrame, features: Features | None) -> None:  # noqa: D102
        counts: Counter[str] = Counter()
        for sample_id, text in zip(manifest[schema.ID], manifest[schema.TEXT], strict=True):
            counts.update(self.tokens(text, sample_id))
        words = [w for w, c in counts.most_common(self.max_vocab) if c >= self.min_freq]
        self._vocab = {w: i for i, w in enumerate([PAD, UNK, CLS, *sorted(words)])}

    def extract(self, manifest: pd.DataFrame) -> Features:  # noqa: D102
        if not self._vocab:
            raise RuntimeError("VocabTokenizer.extract called before fit")
        ids = torch.zeros((len(manifest), self.max_length), dtype=torch.long)
        lengths = torch.zeros(len(manifest), dtype=torch.long)
        unk, cls = self._vocab[UNK], self._vocab[CLS]
        for row, (sample_id, text) in enumerate(zip(manifest[schema.ID], manifest[schema.TEXT], strict=True)):
            tokens = [cls] + [self._vocab.get(t, unk) for t in self.tokens(text, sample_id)]
            tokens = tokens[: self.max_length]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            lengths[row] = len(tokens)
        return {"input_ids": ids, "attention_mask": (ids != 0).long(), "lengths": lengths}

    def net_kwargs(self) -> dict[str, Any]:  # noqa: D102
        return {"vocab_size": len(self._vocab), "max_length": self.max_length}

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"vocab": dict(self._vocab), "tokenizer": dict(self.tokenizer)}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: D102
        # A state without a tokenizer was saved before the emotion tokenizer existed: words.
        self.tokenizer = tokenizer_spec(state.get("tokenizer", "words"))
        self._tokenize = make_tokenizer(self.tokenizer)
        self._vocab = dict(state["vocab"])


class HFTokenizer(Featurizer):
    """A Hugging Face tokenizer loaded from a local checkpoint directory (never the hub).

    Args:
        path: Local directory holding the tokenizer files (e.g. a BERT checkpoint).
        max_length: Sequences are truncated/padded to this many tokens.
    """

    modality = "text"
    cacheable = False
    fit_before_extract = True

    def __init__(self, path: str, max_length: int = 64):
        self.path = str(path)
        self.max_length = max_length
        self._tokenizer = None

    def _load(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            if not Path(self.path).is_dir():
                raise FileNotFoundError(
                    f"tokenizer directory not found: {self.path}. Point model.pretrained at a local "
                    "checkpoint directory (emoexp never downloads at run time)."
                )
            self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        return self._tokenizer

    def fit(self, manifest: pd.DataFrame, features: Features | None) -> None:  # noqa: D102
        self._load()

    def extract(self, manifest: pd.DataFrame) -> Features:  # noqa: D102
        texts = [
            normalise_text(t, i) for i, t in zip(manifest[schema.ID], manifest[schema.TEXT], strict=True)
        ]
        encoded = self._load()(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "lengths": encoded["attention_mask"].sum(dim=1),
        }

    def net_kwargs(self) -> dict[str, Any]:  # noqa: D102
        return {"vocab_size": self._load().vocab_size, "max_length": self.max_length}
