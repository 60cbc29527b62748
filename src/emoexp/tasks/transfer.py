"""Transfer-learning strategies: which backbone layers train, when, and at what learning rate.

A network declares its backbone through :class:`emoexp.models.capabilities.ModelCapabilities`:
``backbone_layers()`` lists groups of modules ordered bottom-up (input side first), and every
parameter outside them is the head. The strategies (``conf/transfer/``):

- ``scratch``: no backbone/head distinction; everything trains at the optimiser's learning rate
  from the weights the model config builds.
- ``frozen``: the backbone never trains (``requires_grad=False``, eval mode, not in the
  optimiser): feature extraction / linear probing. Its outputs can be cached once, for networks
  that declare ``supports_backbone_cache``
  (:func:`emoexp.features.pretrained.cached_backbone_features`) so epochs only run the head.
- ``finetune``: everything trains; the backbone at ``backbone_lr_mult`` times the head's rate
  (discriminative learning rates).
- ``gradual_unfreeze``: the backbone starts frozen and its layers join the optimiser top-down,
  ``layers_per_step`` at a time every ``unfreeze_every`` epochs from ``unfreeze_start_epoch``
  (ULMFiT), at the backbone learning rate.

Freezing and unfreezing run in :class:`BackboneUnfreezing`, a Lightning ``BaseFinetuning``
callback, which also restores the added parameter groups when a run resumes from a checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn

from emoexp.config import ConfigError, instantiate
from emoexp.models.capabilities import capabilities

log = logging.getLogger(__name__)

STRATEGIES = ("scratch", "frozen", "finetune", "gradual_unfreeze")


def backbone_layers(net: nn.Module) -> list[nn.Module]:
    """The network's backbone layer groups, bottom-up.

    Raises:
        ConfigError: If the network does not say which of its parts are backbone.
    """
    layers = list(capabilities(net).backbone_layers())
    if not layers:
        raise ConfigError(
            f"{type(net).__name__} has no backbone_layers(): it cannot be used with a transfer strategy "
            "other than transfer=scratch (derive it from emoexp.models.capabilities.ModelCapabilities "
            "and list its backbone layers bottom-up in backbone_layers())."
        )
    return layers


def backbone_parameter_ids(net: nn.Module) -> set[int]:
    """Identities of every backbone parameter."""
    return {id(p) for layer in backbone_layers(net) for p in layer.parameters()}


def head_parameter_names(net: nn.Module) -> list[str]:
    """State-dict keys of the head's parameters (everything outside the backbone layers)."""
    layers = capabilities(net).backbone_layers()
    if not layers:
        # No declared backbone: only a module named `head` is known to be head.
        return [n for n, _ in net.named_parameters() if n.startswith("head.")]
    backbone = {id(p) for layer in layers for p in layer.parameters()}
    return [n for n, p in net.named_parameters() if id(p) not in backbone]


@dataclass
class TransferStrategy:
    """How a (pretrained) backbone is trained; built from ``conf/transfer/<name>.yaml``.

    Args:
        name: One of :data:`STRATEGIES` (recorded as the run's ``transfer`` tag).
        freeze_backbone: Start with every backbone layer frozen.
        backbone_lr_mult: Backbone learning rate as a multiple of the head's (optimiser ``lr``).
        unfreeze_start_epoch: With ``freeze_backbone``, the epoch (0-based) at which the top
            backbone layer starts training; ``None`` keeps the backbone frozen throughout.
        unfreeze_every: Epochs between two unfreezing steps.
        layers_per_step: Backbone layers unfrozen at each step, top-down.
        cache_features: With a backbone frozen throughout, compute its outputs once and cache them
            (networks that declare ``supports_backbone_cache``), so that epochs only run the head.
        train_bn: Let frozen BatchNorm layers keep training (off: a frozen backbone is unchanged).
    """

    name: str = "scratch"
    freeze_backbone: bool = False
    backbone_lr_mult: float = 1.0
    unfreeze_start_epoch: int | None = None
    unfreeze_every: int = 1
    layers_per_step: int = 1
    cache_features: bool = False
    train_bn: bool = False

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ConfigError(f"transfer.name={self.name!r} is unknown; choose one of {list(STRATEGIES)}.")
        if self.backbone_lr_mult <= 0:
            raise ConfigError(
                f"transfer.backbone_lr_mult={self.backbone_lr_mult} must be > 0; freeze with transfer=frozen."
            )
        if self.unfreeze_every < 1 or self.layers_per_step < 1:
            raise ConfigError("transfer.unfreeze_every and transfer.layers_per_step must be >= 1.")

    @property
    def frozen_throughout(self) -> bool:
        """Whether the backbone never trains."""
        return self.freeze_backbone and self.unfreeze_start_epoch is None

    def uses_backbone(self) -> bool:
        """Whether this strategy treats backbone and head differently."""
        return self.freeze_backbone or self.backbone_lr_mult != 1.0

    def caches_features(self, net: nn.Module) -> bool:
        """Whether the frozen backbone's outputs are precomputed (and cached) for ``net``."""
        return self.cache_features and self.frozen_throughout and capabilities(net).supports_backbone_cache

    def param_groups(self, net: nn.Module) -> list[dict[str, Any]]:
        """Optimiser parameter groups: the head, then the trainable backbone with ``lr_mult``.

        :class:`emoexp.tasks.emotion.EmotionTask` multiplies each group's ``lr`` by its ``lr_mult``
        once the optimiser is built, so any optimiser config keeps working.
        """
        if not self.uses_backbone():
            return [{"params": [p for p in net.parameters() if p.requires_grad]}]
        backbone = backbone_parameter_ids(net)
        head = [p for p in net.parameters() if p.requires_grad and id(p) not in backbone]
        body = [p for p in net.parameters() if p.requires_grad and id(p) in backbone]
        groups = [{"params": head, "lr_mult": 1.0}]
        if body:
            groups.append({"params": body, "lr_mult": self.backbone_lr_mult})
        return [g for g in groups if g["params"]]

    def milestones(self, n_layers: int) -> list[int | None]:
        """Epoch at which each backbone layer (bottom-up) starts training; ``None``: never."""
        if not self.freeze_backbone:
            return [0] * n_layers
        if self.unfreeze_start_epoch is None:
            return [None] * n_layers
        return [
            self.unfreeze_start_epoch + ((n_layers - 1 - i) // self.layers_per_step) * self.unfreeze_every
            for i in range(n_layers)
        ]

    def callback(self, net: nn.Module) -> BackboneUnfreezing | None:
        """The Lightning callback that freezes and unfreezes ``net``'s backbone, if any is needed."""
        if not self.freeze_backbone:
            return None
        layers = backbone_layers(net)
        return BackboneUnfreezing(layers, self.milestones(len(layers)), self.backbone_lr_mult, self.train_bn)


class BackboneUnfreezing(BaseFinetuning):
    """Freeze backbone layers before training; unfreeze each at its epoch milestone.

    Unfrozen layers join the optimiser as a new parameter group at ``lr_mult`` times the head's
    initial learning rate; LR schedulers are extended to the new group. Frozen layers are kept in
    eval mode (no dropout, no BatchNorm statistics updates), so a frozen backbone is unchanged.

    Args:
        layers: Backbone layer groups, bottom-up.
        milestones: Epoch at which each layer starts training (``None``: never).
        lr_mult: Learning-rate multiplier of unfrozen layers relative to the head.
        train_bn: Keep BatchNorm layers of frozen groups trainable.
    """

    def __init__(
        self,
        layers: list[nn.Module],
        milestones: list[int | None],
        lr_mult: float = 1.0,
        train_bn: bool = False,
    ):
        super().__init__()
        if len(layers) != len(milestones):
            raise ValueError("one milestone per backbone layer")
        self.layers = layers
        self.milestones = milestones
        self.lr_mult = lr_mult
        self.train_bn = train_bn

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self.freeze(self.layers, train_bn=self.train_bn)

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: torch.optim.Optimizer
    ) -> None:
        """Unfreeze every layer whose milestone has come (idempotent, so resumed runs catch up)."""
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for layer, milestone in zip(self.layers, self.milestones, strict=True):
            if milestone is None or epoch < milestone:
                continue
            self.make_trainable(layer)
            new = [p for p in layer.parameters() if p.requires_grad and id(p) not in known]
            if not new:
                continue
            head = optimizer.param_groups[0]
            lr = head.get("initial_lr", head["lr"]) * self.lr_mult
            optimizer.add_param_group({"params": new, "lr": lr, "initial_lr": lr, "lr_mult": self.lr_mult})
            known.update(id(p) for p in new)
            _extend_schedulers(pl_module.trainer, optimizer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        super().on_train_epoch_start(trainer, pl_module)
        for layer in self.layers:
            params = list(layer.parameters())
            layer.train(not params or any(p.requires_grad for p in params))


def _extend_schedulers(trainer: pl.Trainer | None, optimizer: torch.optim.Optimizer) -> None:
    """Give LR schedulers of ``optimizer`` an entry for a parameter group added after they were built."""
    if trainer is None:
        return
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if getattr(scheduler, "optimizer", None) is not optimizer:
            continue
        group = optimizer.param_groups[-1]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.min_lrs.append(scheduler.min_lrs[0] if scheduler.min_lrs else 0.0)
            continue
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs.append(group["initial_lr"])
        if hasattr(scheduler, "_last_lr"):
            scheduler._last_lr.append(group["lr"])


def build(node: Any) -> TransferStrategy:
    """The strategy of a ``transfer`` config node (``None``: scratch)."""
    if node is None:
        return TransferStrategy()
    if isinstance(node, TransferStrategy):
        return node
    return instantiate(node)
