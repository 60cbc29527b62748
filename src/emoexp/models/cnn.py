"""Convolutional models over single-channel images (faces) or log-mel spectrograms."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from emoexp.models.capabilities import ModelCapabilities
from emoexp.models.pretrained import DirectParameters, load_matching, load_weights_file

log = logging.getLogger(__name__)


class SmallCNN(ModelCapabilities, nn.Module):
    """A compact VGG-style CNN (conv-BN-ReLU blocks, max-pooling, global average pooling).

    Suits 48x48 faces and 64-band log-mel spectrograms trained from scratch on small data.

    Args:
        num_outputs: Head width (from the label scheme).
        in_chans: Input channels.
        channels: Output channels of each block.
        dropout: Dropout before the head.
    """

    def __init__(
        self,
        num_outputs: int,
        in_chans: int = 1,
        channels: tuple[int, ...] | list[int] = (32, 64, 128),
        dropout: float = 0.3,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_chans
        for width in channels:
            layers += [
                nn.Conv2d(previous, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            previous = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(previous, num_outputs)

    def embed(self, x: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        """Return the pooled embedding ``[B, channels[-1]]``."""
        return self.features(x).mean(dim=(2, 3))

    def backbone_layers(self) -> list[nn.Module]:
        """The conv blocks bottom-up (one per entry of ``channels``); the rest is head."""
        per_block = 7  # conv-BN-ReLU twice and a pool, as __init__ builds each block
        return [self.features[i : i + per_block] for i in range(0, len(self.features), per_block)]

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Return head outputs ``[B, num_outputs]``."""
        return self.head(self.dropout(self.embed(**inputs)))


class TimmClassifier(ModelCapabilities, nn.Module):
    """Any timm image model with its classifier sized by the label scheme.

    Args:
        num_outputs: Head width (from the label scheme).
        name: timm model name (``timm.list_models()``), e.g. ``resnet18``.
        in_chans: Input channels (1 for grayscale faces or spectrograms).
        drop_rate: Dropout before the classifier.
        pretrained_path: Local weights file (safetensors or state dict) to start from;
            nothing is downloaded.
    """

    def __init__(
        self,
        num_outputs: int,
        name: str = "resnet18",
        in_chans: int = 1,
        drop_rate: float = 0.3,
        pretrained_path: str | None = None,
    ):
        super().__init__()
        import timm

        if name not in timm.list_models():
            close = timm.list_models(f"*{name.split('_')[0]}*")[:15]
            raise ValueError(f"unknown timm model {name!r}; similar names: {close} (see timm.list_models()).")
        self.backbone = timm.create_model(
            name, pretrained=False, num_classes=num_outputs, in_chans=in_chans, drop_rate=drop_rate
        )
        self.load_report: dict[str, list[str]] = {}
        if pretrained_path:
            # Loaded explicitly rather than through timm's pretrained_cfg_overlay, which compares the
            # head with the hub config's num_classes (1000) and so drops a matching head too.
            self.load_report = self.load_pretrained(pretrained_path)

    def _classifier_keys(self) -> list[str]:
        classifier = self.backbone.get_classifier()
        prefix = next((n for n, m in self.backbone.named_modules() if m is classifier), None)
        return [f"{prefix}.{k}" for k in classifier.state_dict()] if prefix else []

    def load_pretrained(self, path: str | Path) -> dict[str, list[str]]:
        """Load a local state dict (safetensors or ``torch.save``; a timm model's or an emoexp checkpoint's).

        A different number of input channels is adapted as timm does for pretrained weights
        (summed or repeated first-conv filters); a classifier of another width is skipped and keeps
        its fresh initialisation. Anything else that differs is an error naming the file.

        Returns:
            ``{"loaded": [...], "skipped": [...]}`` parameter names.
        """
        from timm.models import adapt_input_conv

        state = load_weights_file(path)
        for prefix in ("net.backbone.", "backbone.", "module."):
            if any(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                break
        own = self.backbone.state_dict()
        first_conv = self.backbone.pretrained_cfg.get("first_conv")
        key = f"{first_conv}.weight" if first_conv else None
        if key in state and key in own and state[key].ndim == 4 and state[key].shape[1] != own[key].shape[1]:
            state[key] = adapt_input_conv(own[key].shape[1], state[key])
        report = load_matching(self.backbone, state, str(path), skippable=self._classifier_keys())
        if report["skipped"]:
            log.info("%s: classifier %s not loaded (other width), starts fresh", path, report["skipped"])
        return report

    def backbone_layers(self) -> list[nn.Module]:
        """The timm model's top-level stages bottom-up (sequential stages split into blocks).

        Parameters held directly by the model (ViT's class token and position embedding) form
        the first group; the classifier, and the top-level module that holds it, are the head.
        """
        classifier = {id(p) for p in self.backbone.get_classifier().parameters()}
        direct = dict(self.backbone.named_parameters(recurse=False))
        layers: list[nn.Module] = [DirectParameters(direct)] if direct else []
        for child in self.backbone.children():
            params = list(child.parameters())
            if not params or any(id(p) in classifier for p in params):
                continue
            if isinstance(child, nn.Sequential | nn.ModuleList):
                layers.extend(block for block in child if any(True for _ in block.parameters()))
            else:
                layers.append(child)
        return layers

    def embed(self, x: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        """Return the pooled backbone embedding."""
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        """Return head outputs ``[B, num_outputs]``."""
        return self.backbone(x)
