"""Joint multimodal models over the unimodal encoders' embeddings (``modality=multimodal``).

Each modality is encoded by a unimodal network (BiLSTM on MFCCs, CNN on faces, BiLSTM on
words, ...) through its ``embed()``, projected to a common width, and fused:

* :class:`EarlyFusion` concatenates the projected embeddings (plus which modalities are
  present) and classifies them with an MLP;
* :class:`AttentionFusion` weighs the modality embeddings with a learned attention (a
  softmax over the modalities present in each sample) and classifies their weighted sum.

Both train with *modality dropout* (each modality of a training sample is dropped with
probability ``modality_dropout``, always keeping one), so they learn not to rely on one
modality, and both accept a sample with a modality missing: :meth:`FusionNet.without` masks a
modality (its embedding is zeroed and excluded from the attention), which is how
:func:`missing_modality_metrics` measures robustness to a missing modality.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from emoexp.features.multimodal import unprefixed
from emoexp.models.capabilities import ModelCapabilities


def embedding_size(encoder: nn.Module) -> int:
    """Width of a unimodal network's ``embed()`` output (the input of its linear head).

    Raises:
        ValueError: If the network has neither a linear ``head`` nor a timm ``backbone``.
    """
    head = getattr(encoder, "head", None)
    if isinstance(head, nn.Linear):
        return head.in_features
    backbone = getattr(encoder, "backbone", None)
    if backbone is not None and hasattr(backbone, "num_features"):
        return int(backbone.num_features)
    raise ValueError(
        f"cannot tell the embedding size of {type(encoder).__name__}: a fusion encoder needs a linear `head` "
        "(or a timm `backbone`) after its embed()."
    )


class FusionNet(ModelCapabilities, nn.Module):
    """Shared machinery: per-modality encoders and projections, presence masks, modality dropout.

    Args:
        num_outputs: Head width (from the label scheme).
        encoders: Per modality, a factory of a unimodal network with ``embed(**inputs)``
            (Hydra ``_partial_: true`` configs); called with ``num_outputs`` and the
            modality's featurizer kwargs (``modality_kwargs``). Its own head is not used.
        modality_kwargs: Per modality, the featurizer's ``net_kwargs()`` (input size, vocabulary).
        fusion_dim: Width every modality embedding is projected to.
        dropout: Dropout before the head.
        modality_dropout: Probability of dropping each modality of a training sample.
    """

    def __init__(
        self,
        num_outputs: int,
        encoders: Mapping[str, Callable[..., nn.Module]],
        modality_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        fusion_dim: int = 128,
        dropout: float = 0.3,
        modality_dropout: float = 0.2,
    ):
        super().__init__()
        if len(encoders) < 2:
            raise ValueError(
                f"a fusion model needs encoders for at least two modalities, got {sorted(encoders)}."
            )
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}.")
        modality_kwargs = modality_kwargs or {}
        missing = sorted(set(modality_kwargs) - set(encoders))
        if missing:
            raise ValueError(
                f"the features provide {missing} but model.net.encoders has no encoder for them."
            )
        self.modalities = list(encoders)
        self.encoders = nn.ModuleDict()
        self.projections = nn.ModuleDict()
        for modality, factory in encoders.items():
            encoder = factory(num_outputs=num_outputs, **dict(modality_kwargs.get(modality, {})))
            size = embedding_size(encoder)
            if isinstance(getattr(encoder, "head", None), nn.Linear):
                encoder.head = nn.Identity()  # unused: leaving it would give parameters without gradients
            self.encoders[modality] = encoder
            self.projections[modality] = nn.Sequential(
                nn.Linear(size, fusion_dim), nn.LayerNorm(fusion_dim), nn.GELU()
            )
        self.fusion_dim = fusion_dim
        self.modality_dropout = modality_dropout
        self.dropout = nn.Dropout(dropout)
        self.missing: frozenset[str] = frozenset()
        # Per-sample modality weights of the last forward pass, for fusions that weigh modalities.
        self.last_weights: torch.Tensor | None = None

    def fused_modalities(self) -> tuple[str, ...]:
        """The modalities this network fuses, in encoder order."""
        return tuple(self.modalities)

    @contextlib.contextmanager
    def without(self, *modalities: str) -> Iterator[None]:
        """Treat ``modalities`` as missing in every sample (zeroed and masked) inside the block."""
        unknown = sorted(set(modalities) - set(self.modalities))
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; this model fuses {self.modalities}.")
        previous, self.missing = self.missing, frozenset(modalities)
        try:
            yield
        finally:
            self.missing = previous

    def _presence(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """``[B, M]`` booleans: which modality each sample has (after modality dropout in training)."""
        present = torch.tensor([m not in self.missing for m in self.modalities], device=device)
        present = present.expand(batch_size, -1).clone()
        if self.training and self.modality_dropout > 0:
            kept = torch.rand(batch_size, len(self.modalities), device=device) >= self.modality_dropout
            dropped_all = ~(present & kept).any(dim=1)
            # A sample that lost every modality keeps one of its available ones at random.
            choice = torch.multinomial(present.float() + 1e-9, 1).squeeze(1)
            kept[dropped_all, choice[dropped_all]] = True
            present = present & kept
        return present

    def embeddings(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected embeddings ``[B, M, D]`` (zero where absent) and the presence mask ``[B, M]``."""
        first = next(iter(inputs.values()))
        batch_size, device = first.shape[0], first.device
        present = self._presence(batch_size, device)
        tokens = []
        for i, modality in enumerate(self.modalities):
            # Outside training presence is the same for every sample: decided without reading a
            # tensor, so that the network can be traced for export.
            absent = modality in self.missing if not self.training else not present[:, i].any()
            if absent:
                # Absent from the whole batch: nothing to encode (and its inputs may not exist).
                tokens.append(torch.zeros(batch_size, self.fusion_dim, device=device))
                continue
            own = unprefixed(modality, inputs)
            embedded = self.projections[modality](self.encoders[modality].embed(**own))
            tokens.append(embedded * present[:, i : i + 1].to(embedded.dtype))
        return torch.stack(tokens, dim=1), present


class EarlyFusion(FusionNet):
    """Concatenated modality embeddings (and presence flags) -> MLP -> head.

    Args:
        num_outputs: Head width.
        encoders: See :class:`FusionNet`.
        modality_kwargs: See :class:`FusionNet`.
        fusion_dim: Projection width per modality.
        hidden_size: Width of the MLP over the concatenation.
        dropout: Dropout in the MLP and before the head.
        modality_dropout: See :class:`FusionNet`.
    """

    def __init__(
        self,
        num_outputs: int,
        encoders: Mapping[str, Callable[..., nn.Module]],
        modality_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        fusion_dim: int = 128,
        hidden_size: int = 128,
        dropout: float = 0.3,
        modality_dropout: float = 0.2,
    ):
        super().__init__(num_outputs, encoders, modality_kwargs, fusion_dim, dropout, modality_dropout)
        width = len(self.modalities) * (fusion_dim + 1)
        self.mlp = nn.Sequential(nn.Linear(width, hidden_size), nn.GELU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden_size, num_outputs)

    def embed(self, **inputs: torch.Tensor) -> torch.Tensor:
        """The fused representation ``[B, hidden_size]``."""
        tokens, present = self.embeddings(inputs)
        flat = torch.cat([tokens.flatten(1), present.to(tokens.dtype)], dim=1)
        return self.mlp(flat)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Head outputs ``[B, num_outputs]`` from prefixed inputs (``audio.x``, ``text.input_ids``, ...)."""
        return self.head(self.dropout(self.embed(**inputs)))


class AttentionFusion(FusionNet):
    """Attention over the modality embeddings present in each sample -> weighted sum -> head.

    The attention score of a modality is ``v . tanh(W (z_m + e_m))`` with a learned modality
    embedding ``e_m``; absent modalities get no weight. :attr:`last_weights` keeps the weights of
    the latest batch (``[B, M]``) for inspection.

    Args:
        num_outputs: Head width.
        encoders: See :class:`FusionNet`.
        modality_kwargs: See :class:`FusionNet`.
        fusion_dim: Projection width per modality (and of the fused representation).
        attention_dim: Width of the attention scorer.
        dropout: Dropout before the head.
        modality_dropout: See :class:`FusionNet`.
    """

    def __init__(
        self,
        num_outputs: int,
        encoders: Mapping[str, Callable[..., nn.Module]],
        modality_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        fusion_dim: int = 128,
        attention_dim: int = 64,
        dropout: float = 0.3,
        modality_dropout: float = 0.2,
    ):
        super().__init__(num_outputs, encoders, modality_kwargs, fusion_dim, dropout, modality_dropout)
        self.modality_embedding = nn.Parameter(torch.zeros(len(self.modalities), fusion_dim))
        self.score = nn.Sequential(
            nn.Linear(fusion_dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1)
        )
        self.head = nn.Linear(fusion_dim, num_outputs)
        self.last_weights: torch.Tensor | None = None

    def embed(self, **inputs: torch.Tensor) -> torch.Tensor:
        """The attention-weighted sum of the present modality embeddings ``[B, fusion_dim]``."""
        tokens, present = self.embeddings(inputs)
        scores = self.score(tokens + self.modality_embedding).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~present, float("-inf")), dim=1)
        self.last_weights = weights.detach()
        return (weights.unsqueeze(-1) * tokens).sum(dim=1)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Head outputs ``[B, num_outputs]`` from prefixed inputs."""
        return self.head(self.dropout(self.embed(**inputs)))


@torch.no_grad()
def missing_modality_metrics(task: Any, datamodule: Any, scheme: Any, part: str = "test") -> dict[str, float]:
    """The scheme's metrics on ``part`` with each modality missing in turn.

    Args:
        task: The trained :class:`~emoexp.tasks.emotion.EmotionTask` (best weights loaded).
        datamodule: Its data module.
        scheme: The label scheme (metrics).
        part: ``"test"`` (or ``"val"``).

    Returns:
        ``{"<part>/<metric>_without_<modality>": value}`` for every metric and modality, plus
        ``<part>/attention_<modality>`` (mean attention weight with all modalities present)
        for attention fusion.
    """
    net = task.net
    loader = datamodule.test_dataloader() if part == "test" else datamodule.val_dataloader()
    was_training = task.training
    task.eval()
    results: dict[str, float] = {}
    try:
        for absent in [None, *net.fused_modalities()]:
            collections = scheme.metrics(prefix=f"{part}/")
            weights = []
            with contextlib.ExitStack() as stack:
                if absent is not None:
                    stack.enter_context(net.without(absent))
                for batch in loader:
                    inputs = {k: v.to(task.device) for k, v in batch["inputs"].items()}
                    outputs = task(**inputs).float().cpu()
                    scheme.update_metrics(collections, outputs, batch["targets"])
                    if net.last_weights is not None:
                        weights.append(net.last_weights.cpu())
            if absent is None:
                for i, modality in enumerate(net.fused_modalities()):
                    if weights:
                        results[f"{part}/attention_{modality}"] = float(torch.cat(weights)[:, i].mean())
                continue
            for collection in collections:
                for name, value in collection.compute().items():
                    results[f"{name}_without_{absent}"] = float(value)
    finally:
        task.train(was_training)
    return results
