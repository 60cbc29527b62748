"""Recurrent models over frame features (audio) or token embeddings (text)."""

from __future__ import annotations

import torch
from torch import nn

from emoexp.models.capabilities import ModelCapabilities


def _reverse_within(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x[b, order[b, t]]`` for every ``b, t`` (``x``: ``[B, T, F]``, ``order``: ``[B, T]``)."""
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def lstm_within_lengths(lstm: nn.LSTM, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A batch-first ``lstm`` over padded sequences, computing what packing does, without packing.

    Packed sequences cannot be exported (``torch.export``, ONNX): there, each direction of each
    layer runs over the padded batch, the backward one over every sequence reversed within its
    own length, so that no padding reaches a valid step. Outputs past a sequence's length are zero,
    as ``pad_packed_sequence`` leaves them.

    Args:
        lstm: A batch-first ``nn.LSTM`` in eval mode (no projection).
        seq: ``[B, T, F]`` padded inputs.
        lengths: ``[B]`` valid steps of each sequence (1 to ``T``).

    Returns:
        ``[B, T, directions * hidden_size]``.
    """
    steps = torch.arange(seq.shape[1], device=seq.device)[None, :]
    valid = steps < lengths[:, None]
    order = torch.where(valid, lengths[:, None] - 1 - steps, steps)
    state = seq.new_zeros(1, seq.shape[0], lstm.hidden_size)
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if lstm.bias else ("weight_ih", "weight_hh")
    x = seq
    for layer in range(lstm.num_layers):
        outputs = []
        for suffix in ("", "_reverse")[: 2 if lstm.bidirectional else 1]:
            weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in names]
            inputs = _reverse_within(x, order) if suffix else x
            out = torch.lstm(inputs, (state, state), weights, lstm.bias, 1, 0.0, False, False, True)[0]
            outputs.append(_reverse_within(out, order) if suffix else out)
        x = torch.cat(outputs, dim=-1)
    return x * valid.unsqueeze(-1).to(x.dtype)


class FrameSubsampler(nn.Module):
    """A strided 1-D convolution over frames: ``[B, T, F] -> [B, ceil(T / stride), C]``.

    Recurrent cost grows with the number of steps; at 100 frames/s most of that is spent on
    neighbouring frames that differ little. A learned, strided convolution (the front end of
    CRNN speech-emotion models) summarises ``stride`` frames into one step, so the LSTM runs
    ``stride`` times fewer steps and sees local spectral patterns as its inputs.

    Args:
        input_size: Features per frame.
        channels: Features per output step.
        stride: Frames per output step (the kernel spans ``2 * stride - 1`` frames).
        dropout: Dropout on the outputs.
    """

    def __init__(self, input_size: int, channels: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.stride = stride
        kernel = 2 * stride - 1
        self.conv = nn.Conv1d(input_size, channels, kernel, stride=stride, padding=stride - 1)
        # Layer norm per step, not batch norm: padded steps must not enter any statistic.
        self.norm = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the subsampled sequence and its lengths (padding stays zero)."""
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        x = x * valid.unsqueeze(-1).to(x.dtype)  # whatever pads the input, the kernel sees zeros
        out = torch.relu(self.norm(self.conv(x.transpose(1, 2)).transpose(1, 2)))
        lengths = torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor").clamp(min=1)
        mask = torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None]
        return self.dropout(out) * mask.unsqueeze(-1).to(out.dtype), lengths


class AttentionPooling(nn.Module):
    """Masked additive attention over time: a learned weighting of the steps that carry emotion.

    Emotion is often shown in a few salient stretches of an utterance (a stressed word, a laugh);
    attention pooling lets the model weight them instead of averaging every step.

    Args:
        size: Features per step.
    """

    def __init__(self, size: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(size, size), nn.Tanh(), nn.Linear(size, 1))

    def forward(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, T, H]`` steps and ``[B, T, 1]`` validity to ``[B, H]``."""
        scores = self.score(seq)  # under autocast: bf16/fp16, whatever ``seq`` is
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return (torch.softmax(scores, dim=1) * seq).sum(dim=1)


class LSTMClassifier(ModelCapabilities, nn.Module):
    """(Bi)LSTM over a sequence, masked mean or attention pooling, dropout and a linear head.

    Give ``input_size`` for frame features (``x: [B, T, F]``) or ``vocab_size`` for token
    ids (``input_ids: [B, T]``); the featurizer supplies whichever applies. With
    ``subsample > 1`` a strided convolution (:class:`FrameSubsampler`) first shortens frame
    sequences ``subsample`` times.

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
        subsample: Frames per LSTM step for frame inputs (1: every frame).
        subsample_channels: Features per step after subsampling (null: ``hidden_size``).
        pooling: ``mean`` (masked mean over steps) or ``attention`` (:class:`AttentionPooling`).
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
        subsample: int = 1,
        subsample_channels: int | None = None,
        pooling: str = "mean",
    ):
        super().__init__()
        if (input_size is None) == (vocab_size is None):
            raise ValueError(
                "LSTMClassifier needs exactly one of input_size (frames) or vocab_size (tokens)."
            )
        if pooling not in ("mean", "attention"):
            raise ValueError(f"model.net.pooling={pooling!r} is unknown; choose mean or attention.")
        if subsample < 1:
            raise ValueError(f"model.net.subsample={subsample} must be >= 1 (1: every frame).")
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0) if vocab_size else None
        self.subsampler = None
        if subsample > 1 and not vocab_size:
            channels = subsample_channels or hidden_size
            self.subsampler = FrameSubsampler(input_size, channels, subsample, dropout)
            input_size = channels
        self.lstm = nn.LSTM(
            input_size=embedding_dim if vocab_size else input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        out_size = hidden_size * (2 if bidirectional else 1)
        self.attention = AttentionPooling(out_size) if pooling == "attention" else None
        self.head = nn.Linear(out_size, num_outputs)

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
        if self.subsampler is not None:
            seq, lengths = self.subsampler(seq, lengths)
        if torch.compiler.is_exporting():
            out = lstm_within_lengths(self.lstm, seq, lengths)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                seq, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            out, _ = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
        mask = (torch.arange(seq.shape[1], device=seq.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        if self.attention is not None:
            return self.attention(out, mask)
        return (out * mask).sum(dim=1) / lengths[:, None].to(out.dtype)

    def backbone_layers(self) -> list[nn.Module]:
        """``[embedding or subsampler (when present), lstm]`` bottom-up; the rest is head."""
        return [m for m in (self.embedding, self.subsampler, self.lstm) if m is not None]

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Return head outputs ``[B, num_outputs]``."""
        return self.head(self.dropout(self.embed(**inputs)))
