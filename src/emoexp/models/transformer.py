"""Transformer text encoders from HF transformers: random small BERT or a local checkpoint."""

from __future__ import annotations

import torch
from torch import nn

from emoexp.models.capabilities import ModelCapabilities
from emoexp.models.pretrained import hf_layer_groups, load_hf_encoder


class TextTransformer(ModelCapabilities, nn.Module):
    """A BERT-style encoder with a linear head on the masked mean of its last hidden states.

    With ``pretrained=None`` a small randomly initialised BERT is built from ``BertConfig``
    (no download); with a local checkpoint directory, its weights are loaded.

    Args:
        num_outputs: Head width (from the label scheme).
        vocab_size: Vocabulary size (from the tokenizer).
        max_length: Longest input sequence.
        hidden_size: Encoder width (random init only).
        num_layers: Encoder layers (random init only).
        num_heads: Attention heads (random init only).
        intermediate_size: Feed-forward width (random init only).
        dropout: Dropout inside the encoder and before the head.
        pretrained: Local checkpoint directory, or ``None``.
    """

    supports_backbone_cache = True  # backbone_features is what the head reads; forward accepts it

    def __init__(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
        self,
        num_outputs: int,
        vocab_size: int,
        max_length: int = 64,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int = 256,
        dropout: float = 0.1,
        pretrained: str | None = None,
    ):
        super().__init__()
        from transformers import BertConfig, BertModel

        if pretrained:
            # Clear errors naming the path for a missing, corrupt or non-text checkpoint.
            self.encoder = load_hf_encoder(pretrained, "text")
        else:
            config = BertConfig(
                vocab_size=vocab_size,
                hidden_size=hidden_size,
                num_hidden_layers=num_layers,
                num_attention_heads=num_heads,
                intermediate_size=intermediate_size,
                hidden_dropout_prob=dropout,
                attention_probs_dropout_prob=dropout,
                max_position_embeddings=max(max_length, 8),
                pad_token_id=0,
            )
            self.encoder = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_outputs)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        """Return the masked mean of the last hidden states ``[B, hidden]``."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def backbone_layers(self) -> list[nn.Module]:
        """Encoder layers bottom-up: ``[embeddings (stem), layer_0, ..., layer_n-1]``; the rest is head."""
        return hf_layer_groups(self.encoder)

    def backbone_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        """What the head reads from the encoder (cacheable while the encoder is frozen)."""
        return self.embed(**inputs)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Return head outputs ``[B, num_outputs]`` (from token ids, or cached ``backbone_features``)."""
        features = inputs["backbone_features"] if "backbone_features" in inputs else self.embed(**inputs)
        return self.head(self.dropout(features))
