"""What a network offers beyond ``forward``, declared in one interface instead of being probed.

Every network in :mod:`emoexp.models` derives from :class:`ModelCapabilities` and overrides what
applies to it; the defaults say "not offered". Transfer strategies ask for the backbone
(:meth:`~ModelCapabilities.backbone_layers`, :attr:`~ModelCapabilities.supports_backbone_cache`);
the run core asks which modalities a fusion network fuses
(:meth:`~ModelCapabilities.fused_modalities`) to measure robustness to a missing one.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class ModelCapabilities:
    """Mixin of the capabilities a network declares (defaults: none).

    Attributes:
        supports_backbone_cache: Whether :meth:`backbone_features` computes exactly what the head
            reads from the backbone, and ``forward(backbone_features=...)`` accepts it, so a
            backbone frozen throughout training can be run once and its outputs cached.
    """

    supports_backbone_cache: ClassVar[bool] = False

    def backbone_layers(self) -> list[nn.Module]:
        """Backbone layer groups, bottom-up (input side first); every other parameter is head.

        Empty when the network has no backbone/head split: then only ``transfer=scratch`` applies.
        """
        return []

    def backbone_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        """What the head reads from the backbone, for :attr:`supports_backbone_cache` networks.

        Raises:
            NotImplementedError: If the network does not support caching its backbone's outputs.
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot cache its backbone's outputs (supports_backbone_cache is False)."
        )

    def fused_modalities(self) -> tuple[str, ...]:
        """The modalities a fusion network combines, in its order; empty for a unimodal network."""
        return ()

    def backbone_variant(self) -> str | None:
        """What, besides the weights, changes :meth:`backbone_features` (part of its cache key)."""
        return None


def capabilities(net: nn.Module) -> ModelCapabilities:
    """``net``'s declared capabilities; a network that declares none offers none.

    Lets callers accept any ``nn.Module`` (a test's ``nn.Linear``, a user's own network)
    without probing it for methods.
    """
    return net if isinstance(net, ModelCapabilities) else _NONE


_NONE = ModelCapabilities()
