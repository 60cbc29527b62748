"""Self-supervised speech encoders (wav2vec2, HuBERT, WavLM, ...) from HF transformers over raw waveforms."""

from __future__ import annotations

import torch
from torch import nn

from emoexp.models.capabilities import ModelCapabilities
from emoexp.models.pretrained import hf_layer_groups, load_hf_encoder

LAYER_POOLING = ("last", "weighted")


class SpeechEncoderClassifier(ModelCapabilities, nn.Module):
    """A wav2vec2/HuBERT-style encoder, utterance pooling over frames, and a linear head.

    With ``layer_pooling="weighted"`` the head reads a learned softmax-weighted sum of every
    hidden layer (the embedding output and each transformer block), as in SUPERB: emotion is
    often better carried by middle layers than by the last one. The layer weights belong to
    the head, so they train even when the encoder is frozen.

    With ``pretrained=None`` a small randomly initialised wav2vec2 is built (no download).

    Args:
        num_outputs: Head width (from the label scheme).
        pretrained: Local checkpoint directory (``save_pretrained`` output), or ``None``.
        layer_pooling: ``last`` (last hidden layer) or ``weighted`` (learned sum of all layers).
        dropout: Dropout before the head.
        hidden_size: Encoder width (random init only).
        num_layers: Transformer blocks (random init only).
        num_heads: Attention heads (random init only).
        intermediate_size: Feed-forward width (random init only).
        conv_channels: Channels of each of the 7 convolutions of the feature encoder (random init only).
    """

    supports_backbone_cache = True  # backbone_features is what the head pools; forward accepts it

    def __init__(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
        self,
        num_outputs: int,
        pretrained: str | None = None,
        layer_pooling: str = "weighted",
        dropout: float = 0.1,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int = 128,
        conv_channels: int = 64,
    ):
        super().__init__()
        if layer_pooling not in LAYER_POOLING:
            raise ValueError(f"layer_pooling={layer_pooling!r} is unknown; choose one of {LAYER_POOLING}.")
        if pretrained:
            self.encoder = load_hf_encoder(pretrained, "audio")
        else:
            from transformers import Wav2Vec2Config, Wav2Vec2Model

            config = Wav2Vec2Config(
                hidden_size=hidden_size,
                num_hidden_layers=num_layers,
                num_attention_heads=num_heads,
                intermediate_size=intermediate_size,
                conv_dim=(conv_channels,) * 7,
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4,
            )
            self.encoder = Wav2Vec2Model(config)
        self.layer_pooling = layer_pooling
        config = self.encoder.config
        if layer_pooling == "weighted":
            # LayerDrop skips blocks while training, and a skipped block leaves no hidden state:
            # the stack the layer weights index would change length from step to step.
            config.layerdrop = 0.0
        # Group-norm feature encoders (wav2vec2-base) are trained on zero-padded input without a mask.
        self._pass_mask = getattr(config, "feat_extract_norm", "layer") == "layer"
        self.layer_weights = (
            nn.Parameter(torch.zeros(config.num_hidden_layers + 1)) if layer_pooling == "weighted" else None
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, num_outputs)

    def backbone_variant(self) -> str | None:
        """The layer pooling: it decides which hidden states the cached features hold."""
        return self.layer_pooling

    def backbone_layers(self) -> list[nn.Module]:
        """Encoder layers bottom-up: ``[feature encoder and projection (stem), block_0, ...]``."""
        return hf_layer_groups(self.encoder)

    def backbone_features(
        self, waveform: torch.Tensor, lengths: torch.Tensor | None = None, **_: torch.Tensor
    ) -> torch.Tensor:
        """Frame-pooled hidden states: ``[B, layers + 1, D]`` (weighted pooling) or ``[B, D]`` (last).

        Cacheable while the encoder is frozen; the learned layer weighting happens in the head.
        """
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[1], device=waveform.device)
        kwargs = {}
        if self._pass_mask:
            kwargs["attention_mask"] = (
                torch.arange(waveform.shape[1], device=waveform.device)[None, :] < lengths[:, None]
            ).long()
        weighted = self.layer_weights is not None
        out = self.encoder(waveform, output_hidden_states=weighted, **kwargs)
        states = torch.stack(out.hidden_states, dim=1) if weighted else out.last_hidden_state.unsqueeze(1)
        frames = self.encoder._get_feat_extract_output_lengths(lengths).clamp(min=1, max=states.shape[2])
        steps = torch.arange(states.shape[2], device=states.device)
        mask = (steps[None, :] < frames[:, None]).to(states.dtype)
        pooled = (states * mask[:, None, :, None]).sum(dim=2) / frames[:, None, None].to(states.dtype)
        return pooled if weighted else pooled[:, 0]

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Apply the learned layer weighting to :meth:`backbone_features` output (identity for ``last``)."""
        if self.layer_weights is None:
            return features
        weights = torch.softmax(self.layer_weights, dim=0)
        return (features * weights[None, :, None]).sum(dim=1)

    def embed(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Return the pooled utterance embedding ``[B, D]`` (used by fusion models)."""
        features = inputs.get("backbone_features")
        return self.pool(self.backbone_features(**inputs) if features is None else features)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Return head outputs ``[B, num_outputs]`` (from waveforms, or cached ``backbone_features``)."""
        return self.head(self.dropout(self.embed(**inputs)))
