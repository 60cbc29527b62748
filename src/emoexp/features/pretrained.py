"""Features for pretrained encoders: the checkpoint's own tokenizer, and cached frozen-backbone outputs."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from emoexp.features.base import Features, Featurizer
from emoexp.features.cache import cached_features, content_key
from emoexp.features.text import HFTokenizer, VocabTokenizer


def text_tokenizer(
    pretrained: str | None = None,
    max_length: int = 48,
    min_freq: int = 1,
    max_vocab: int = 20000,
    tokenizer: str | Mapping[str, Any] = "emotion",
) -> Featurizer:
    """The tokenizer that fits the encoder: the checkpoint's own, or a word vocabulary for a random one.

    A pretrained encoder only understands the token ids of the tokenizer it was trained with,
    so with ``pretrained`` set the tokenizer is loaded from the same directory.

    Args:
        pretrained: The encoder's checkpoint directory (``model.net.pretrained``), or ``None``.
        max_length: Tokens per sequence.
        min_freq: Word vocabulary only: rarer training words map to ``<unk>``.
        max_vocab: Word vocabulary only: its size limit.
        tokenizer: Word vocabulary only: how texts are split (see :class:`VocabTokenizer`).
    """
    if pretrained:
        return HFTokenizer(pretrained, max_length=max_length)
    return VocabTokenizer(max_length=max_length, min_freq=min_freq, max_vocab=max_vocab, tokenizer=tokenizer)


def weights_digest(modules: list[nn.Module]) -> str:
    """A content hash of the parameters and buffers of ``modules`` (which weights produced a feature)."""
    digest = hashlib.sha256()
    for index, module in enumerate(modules):
        for name, tensor in module.state_dict().items():
            digest.update(f"{index}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def cached_backbone_features(
    net: nn.Module,
    inputs: Features,
    manifest: pd.DataFrame,
    featurizer: Featurizer,
    cache_dir: str | Path | None = None,
    enabled: bool = True,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> tuple[Features, bool]:
    """Run a frozen backbone once over every sample; store its outputs in the feature cache.

    The key folds in the samples, the featurizer (class, parameters and learnt state), the
    network class and its pooling, and a hash of the backbone's weights, so another checkpoint,
    an ``init_from`` source or another tokenizer never reads stale features.

    Args:
        net: A network with ``backbone_features(**inputs)`` and ``backbone_layers()``.
        inputs: The featurizer's model inputs for every manifest row.
        manifest: The samples (for the cache key).
        featurizer: The featurizer that made ``inputs`` (for the cache key).
        cache_dir: Feature cache root.
        enabled: Read/write the cache (else only compute).
        batch_size: Samples per backbone forward pass.
        device: Where to run the backbone.

    Returns:
        ``{"backbone_features": tensor}`` for every row, and whether it came from the cache.
    """
    params: dict[str, Any] = {
        "featurizer": type(featurizer).__qualname__,
        "featurizer_params": featurizer.params(),
        "featurizer_state": hashlib.sha256(repr(featurizer.state_dict()).encode()).hexdigest()[:16],
        "net": type(net).__qualname__,
        "layer_pooling": net.backbone_variant(),
        "weights": weights_digest(net.backbone_layers()),
    }
    key = content_key(manifest, params, "BackboneFeatures")

    def compute() -> Features:
        was_training = net.training
        net.eval().to(device)
        rows = len(next(iter(inputs.values())))
        out = []
        try:
            # no_grad rather than inference_mode: the cached tensors are later inputs of the trained head.
            with torch.no_grad():
                for start in range(0, rows, batch_size):
                    batch = {k: v[start : start + batch_size].to(device) for k, v in inputs.items()}
                    out.append(net.backbone_features(**batch).float().cpu())
        finally:
            net.cpu().train(was_training)
        return {"backbone_features": torch.cat(out)}

    return cached_features(key, compute, cache_dir, enabled)
