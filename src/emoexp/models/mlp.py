"""A wide MLP over sparse bag-of-n-gram rows: the default neural text model.

On short emotion texts of a few hundred to a few thousand samples, a one-hidden-layer MLP over
TF-IDF n-grams matches or beats recurrent and graph models (Galke & Scherp, "Bag-of-Words
Baselines for Text Classification Are Hard to Beat", ACL 2022): order matters less than which
words and character sequences occur, and word bigrams keep short-range order ("not happy").
Measured on the embedded text in docs/benchmarks.md ("Every modality against the classic baseline").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from emoexp.models.capabilities import ModelCapabilities


class SparseLinear(nn.Module):
    """``x @ W + b`` for a sparse ``x`` given as padded column ids and weights.

    PyTorch has no sparse ``Linear``; an ``EmbeddingBag`` in ``sum`` mode with per-sample
    weights computes the same product, touching only the rows of ``W`` a sample uses.

    Args:
        in_features: Columns of ``x``; id ``in_features`` is padding (weight 0, never updated).
        out_features: Output width.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.weight = nn.EmbeddingBag(in_features + 1, out_features, mode="sum", padding_idx=in_features)
        self.bias = nn.Parameter(torch.zeros(out_features))
        # nn.Linear's initialisation: uniform within 1 / sqrt(fan_in)
        bound = 1.0 / math.sqrt(max(1, in_features))
        with torch.no_grad():
            self.weight.weight.uniform_(-bound, bound)
            self.weight.weight[in_features].zero_()
            self.bias.uniform_(-bound, bound)

    def forward(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` ids and weights to ``[B, out_features]``."""
        return self.weight(ids, per_sample_weights=weights.to(self.weight.weight.dtype)) + self.bias

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """The same product for a dense ``[B, in_features]`` ``x`` (an exported graph's input)."""
        return x.to(self.bias.dtype) @ self.weight.weight[: self.in_features] + self.bias


class NgramMLP(ModelCapabilities, nn.Module):
    """Sparse TF-IDF n-grams -> dropout -> hidden layer (ReLU) -> dropout -> linear head.

    Reads :class:`emoexp.features.ngrams.NgramFeatures` (``ngram_ids``, ``ngram_weights``), or the
    dense TF-IDF row ``ngram_tfidf`` ``[B, num_ngrams]`` an exported graph takes.

    Args:
        num_outputs: Head width (from the label scheme).
        num_ngrams: Columns of the n-gram rows (from the featurizer).
        hidden_size: Width of the hidden layer.
        dropout: Dropout on the hidden layer's outputs.
        input_dropout: Share of a sample's n-grams dropped in training (their weights set to 0,
            the rest scaled up), so that no single n-gram decides.
    """

    def __init__(
        self,
        num_outputs: int,
        num_ngrams: int,
        hidden_size: int = 256,
        dropout: float = 0.5,
        input_dropout: float = 0.2,
    ):
        super().__init__()
        if num_ngrams < 1:
            raise ValueError("NgramMLP needs num_ngrams >= 1: the featurizer found no n-gram in training.")
        self.hidden = SparseLinear(num_ngrams, hidden_size)
        self.input_dropout = nn.Dropout(input_dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, num_outputs)

    def embed(
        self,
        ngram_ids: torch.Tensor | None = None,
        ngram_weights: torch.Tensor | None = None,
        ngram_tfidf: torch.Tensor | None = None,
        **_: torch.Tensor,
    ) -> torch.Tensor:
        """The hidden layer's output ``[B, hidden_size]`` (used by fusion models)."""
        if ngram_tfidf is not None:
            return torch.relu(self.hidden.dense(self.input_dropout(ngram_tfidf)))
        return torch.relu(self.hidden(ngram_ids, self.input_dropout(ngram_weights)))

    def backbone_layers(self) -> list[nn.Module]:
        """``[hidden]``: the n-gram layer; the rest is head."""
        return [self.hidden]

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Return head outputs ``[B, num_outputs]``."""
        return self.head(self.dropout(self.embed(**inputs)))
