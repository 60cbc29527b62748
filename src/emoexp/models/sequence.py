"""Recurrent models over frame features (audio) or token embeddings (text)."""

from __future__ import annotations

import torch
from torch import nn

from emoexp.models.capabilities import ModelCapabilities


class LSTMClassifier(ModelCapabilities, nn.Module):
    """(Bi)LSTM over a sequence, masked mean pooling, dropout and a linear head.

    Give ``input_size`` for frame features (``x: [B, T, F]``) or ``vocab_size`` for token
    ids (``input_ids: [B, T]``); the featurizer supplies whichever applies.

    Args:
        num_outputs: Head width (from the label scheme).
        input_size: Feature size of each frame.
        vocab_size: Vocabulary size for token inputs.
        embedding_dim: Token embedding size.
        hidden_size: LSTM hidden size per direction.
        num_layers: Stacked LSTM layers.
        bidirectional: Run a backward LSTM too.
        dropout: Dropout between LSTM layers and before the head.
        max_length: Unused; accepted so text featurizer kwargs bind.
    """

    def __init__(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
        self,
        num_outputs: int,
        input_size: int | None = None,
        vocab_size: int | None = None,
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.3,
        max_length: int | None = None,
    ):
        super().__init__()
        if (input_size is None) == (vocab_size is None):
            raise ValueError(
                "LSTMClassifier needs exactly one of input_size (frames) or vocab_size (tokens)."
            )
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0) if vocab_size else None
        self.lstm = nn.LSTM(
            input_size=embedding_dim if vocab_size else input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_outputs)

    def embed(
        self,
        x: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        **_: torch.Tensor,
    ) -> torch.Tensor:
        """Return the pooled sequence embedding ``[B, H]`` (used by fusion models)."""
        seq = self.embedding(input_ids) if self.embedding is not None else x
        if lengths is None:
            lengths = torch.full((seq.shape[0],), seq.shape[1], device=seq.device)
        lengths = lengths.clamp(min=1, max=seq.shape[1])
        packed = nn.utils.rnn.pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
        mask = (torch.arange(seq.shape[1], device=seq.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        return (out * mask).sum(dim=1) / lengths[:, None].to(out.dtype)

    def backbone_layers(self) -> list[nn.Module]:
        """``[embedding (token inputs only), lstm]`` bottom-up; the rest is head."""
        return [m for m in (self.embedding, self.lstm) if m is not None]

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Return head outputs ``[B, num_outputs]``."""
        return self.head(self.dropout(self.embed(**inputs)))
