"""Convolutional models over single-channel images (faces) or log-mel spectrograms."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
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

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Return head outputs ``[B, num_outputs]``."""
        return self.head(self.dropout(self.embed(**inputs)))


class TimmClassifier(nn.Module):
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
        kwargs = {"pretrained": False, "num_classes": num_outputs, "in_chans": in_chans, "drop_rate": drop_rate}
        if pretrained_path:
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_path)})
        self.backbone = timm.create_model(name, **kwargs)

    def embed(self, x: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        """Return the pooled backbone embedding."""
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        """Return head outputs ``[B, num_outputs]``."""
        return self.backbone(x)
