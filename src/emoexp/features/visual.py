"""Face-image tensors for CNNs: any mode/size converted to normalised grayscale or RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from emoexp.data import schema
from emoexp.features.base import Features, Featurizer


class ImageReadError(ValueError):
    """An image file is missing or cannot be decoded."""


def load_image(path: str | Path, size: int, channels: int = 1) -> np.ndarray:
    """Read an image, convert it to grayscale (or RGB) and resize it to ``size x size``.

    Returns:
        ``uint8`` array of shape ``[channels, size, size]``.

    Raises:
        ImageReadError: Naming the file, if it is missing or undecodable.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}. Check data.root and the manifest.")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise ImageReadError(f"cannot decode image file {path}: {error}") from error
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


class ImageFeatures(Featurizer):
    """Images as ``[N, C, size, size]`` float tensors standardised with training statistics.

    Args:
        size: Side length images are resized to.
        channels: 1 (grayscale, as FER2013) or 3 (RGB, for ImageNet-pretrained backbones).
    """

    modality = "visual"
    augment_stages = ("image",)

    def __init__(self, size: int = 48, channels: int = 1):
        self.size = size
        self.channels = channels
        self._mean = 0.5
        self._std = 0.25

    def extract(self, manifest: pd.DataFrame) -> Features:  # noqa: D102
        images = np.stack([load_image(p, self.size, self.channels) for p in manifest[schema.IMAGE]])
        return {"x": torch.from_numpy(images)}

    def fit(self, manifest: pd.DataFrame, features: Features | None) -> None:  # noqa: D102
        if features is not None:
            x = features["x"].float() / 255.0
            self._mean, self._std = float(x.mean()), float(x.std().clamp_min(1e-3))

    def finalize(self, features: Features) -> Features:  # noqa: D102
        return {"x": (features["x"].float() / 255.0 - self._mean) / self._std}

    def net_kwargs(self) -> dict:  # noqa: D102
        return {"in_chans": self.channels}

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`finalize`'s standardisation: intensities in [0, 1] (for image transforms)."""
        return x * self._std + self._mean

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Standardise intensities in [0, 1] as :meth:`finalize` does."""
        return (pixels - self._mean) / self._std

    def state_dict(self) -> dict:  # noqa: D102
        return {"mean": self._mean, "std": self._std}

    def load_state_dict(self, state: dict) -> None:  # noqa: D102
        self._mean, self._std = state["mean"], state["std"]
