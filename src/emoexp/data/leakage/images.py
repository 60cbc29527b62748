"""Image fingerprints: exact (file bytes, decoded pixels) and perceptual near-duplicates.

Near-duplicates are found in two steps. Candidates share a close perceptual hash
(:func:`imagehash.phash`); each image is also indexed under the hashes of its crops by a few
pixels, so a cropped copy lands near one of them. Each candidate pair is then verified: the two
images are aligned (cross-correlation over small shifts) and a linear brightness/contrast fit
of one onto the other must leave only a small residual. The verification is what separates a
re-encoded copy from a different photo of the same face and expression (docs/leakage.md).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from emoexp.data.leakage.index import DENSE_LIMIT, dense_hamming, hamming_pairs, unique_pairs

# Longest side of the working copy: FER2013-sized faces stay native; large photos are reduced
# so that the fingerprints of 100k images fit in memory.
WORK_SIZE = 64
# Crops (pixels off left, top, right, bottom) whose hashes index each image besides its own.
CROP = 2
_CROPS = [c for c in itertools.product((0, CROP), repeat=4) if any(c)]
# Pixels at the ends of the range are left out of the fit: a brightness change clips them.
_CLIP_LOW, _CLIP_HIGH = 2.0, 253.0
_BORDER = 2


@dataclass(frozen=True)
class ImagePrint:
    """The fingerprints of one image file."""

    file_hash: str
    pixel_hash: str
    hashes: np.ndarray
    work: np.ndarray


def _hash64(image: Image.Image) -> int:
    return int(str(imagehash.phash(image)), 16)


def image_print(path: str | Path) -> ImagePrint:
    """Fingerprint one image file.

    Args:
        path: A file PIL reads.

    Returns:
        The SHA-1 of the bytes and of the decoded RGB pixels, the pHash of the image and of its
        small crops (``uint64``), and the grayscale working copy used to verify pairs.
    """
    data = Path(path).read_bytes()
    with Image.open(Path(path)) as opened:
        rgb = opened.convert("RGB")
    pixels = np.asarray(rgb)
    pixel_hash = hashlib.sha1(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()
    gray = rgb.convert("L")
    if max(gray.size) > WORK_SIZE:
        gray.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR)
    width, height = gray.size
    boxes = [(left, top, width - right, height - bottom) for left, top, right, bottom in _CROPS]
    variants = [gray, *(gray.crop(box) for box in boxes)]
    hashes = np.array([_hash64(v) for v in variants], dtype=np.uint64)
    return ImagePrint(
        file_hash=hashlib.sha1(data).hexdigest(),
        pixel_hash=pixel_hash,
        hashes=hashes,
        work=np.asarray(gray, dtype=np.float32),
    )


def candidate_pairs(prints: list[ImagePrint], max_distance: int) -> np.ndarray:
    """Pairs whose own pHash is within ``max_distance`` bits of any hash of the other."""
    if len(prints) < 2:
        return np.empty((0, 2), dtype=np.int64)
    n_hashes = len(prints[0].hashes)
    every = np.concatenate([p.hashes for p in prints])
    owners = np.repeat(np.arange(len(prints)), n_hashes)
    own = every[::n_hashes]
    if len(own) * len(every) <= DENSE_LIMIT:
        found = dense_hamming(own, every, max_distance)
        items = np.stack([found[:, 0], owners[found[:, 1]]], axis=1)
    else:
        found, _ = hamming_pairs(every, max_distance)
        is_own = np.arange(len(every)) % n_hashes == 0
        # A pair of two crop hashes says nothing: one side must be an image's own hash.
        items = owners[found[is_own[found[:, 0]] | is_own[found[:, 1]]]]
    items = np.sort(items, axis=1)
    items = items[items[:, 0] != items[:, 1]]
    return unique_pairs(items)


def _canvas(prints: list[ImagePrint], items: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed working copies on a zero canvas, and the mask of their usable pixels.

    The smoothing tames JPEG blocking.
    """
    canvas = np.zeros((len(items), size, size), dtype=np.float32)
    valid = np.zeros((len(items), size, size), dtype=bool)
    for row, item in enumerate(items):
        work = prints[item].work
        height, width = work.shape
        canvas[row, :height, :width] = gaussian_filter(work, 1.0)
        # Clipped pixels are left out (a brightness change clips them), and so is the border,
        # where a crop cuts the smoothing window.
        inner = (work > _CLIP_LOW) & (work < _CLIP_HIGH)
        valid[row, _BORDER : height - _BORDER, _BORDER : width - _BORDER] = inner[
            _BORDER : height - _BORDER, _BORDER : width - _BORDER
        ]
    return canvas, valid


def _centred(canvas: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each image minus its mean, zero outside its valid pixels (so padding does not correlate)."""
    count = np.maximum(valid.sum(axis=(1, 2), keepdims=True), 1)
    mean = (canvas * valid).sum(axis=(1, 2), keepdims=True) / count
    return (canvas - mean) * valid


def _detail(canvas: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Band-passed images for alignment: without their broad shading the correlation peak is sharp."""
    return _centred(canvas - gaussian_filter(canvas, (0, 2.0, 2.0)), valid)


def _align(a: np.ndarray, b: np.ndarray, max_shift: int) -> np.ndarray:
    """Per pair, the shift (dy, dx) with ``a[x + shift] ~ b[x]`` of largest cross-correlation."""
    size = a.shape[1:]
    corr = np.fft.irfft2(np.fft.rfft2(a) * np.conj(np.fft.rfft2(b)), s=size)
    steps = np.arange(-max_shift, max_shift + 1)
    dy, dx = np.meshgrid(steps, steps, indexing="ij")
    window = corr[:, dy.ravel() % size[0], dx.ravel() % size[1]]
    best = np.argmax(window, axis=1)
    return np.stack([dy.ravel()[best], dx.ravel()[best]], axis=1)


def _fit_residual(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean absolute residual of the least-squares line ``y ~ x`` over ``mask``, over y's spread."""
    count = np.maximum(mask.sum(axis=(1, 2)), 1)
    mean_x = (x * mask).sum(axis=(1, 2)) / count
    mean_y = (y * mask).sum(axis=(1, 2)) / count
    dx_ = (x - mean_x[:, None, None]) * mask
    dy_ = (y - mean_y[:, None, None]) * mask
    var_x = (dx_**2).sum(axis=(1, 2))
    gain = (dx_ * dy_).sum(axis=(1, 2)) / np.maximum(var_x, 1e-9)
    error = np.abs(dy_ - gain[:, None, None] * dx_).sum(axis=(1, 2)) / count
    spread = np.sqrt((dy_**2).sum(axis=(1, 2)) / count)
    result = error / np.maximum(spread, 1e-9)
    # Too little overlap, or one flat image against a textured one, is no match.
    result[(mask.sum(axis=(1, 2)) < 64) | ((spread < 1e-3) != (var_x < 1e-3 * count))] = np.inf
    return result


def residuals(prints: list[ImagePrint], pairs: np.ndarray, max_shift: int, batch: int = 1024) -> np.ndarray:
    """How far each pair is from being one image re-encoded, re-lit or cropped.

    The second image is aligned on the first (cross-correlation, integer shifts up to
    ``max_shift``), fitted by a gain and offset, and the mean absolute residual is returned
    relative to the second image's spread: 0 for a copy, about 0.05 after JPEG re-encoding and
    a brightness change, 0.15 and more for two different images of one face. Pairs are handled
    in batches of array operations.
    """
    out = np.empty(len(pairs))
    size = max([max(p.work.shape) for p in prints], default=0) + max_shift
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        a, valid_a = _canvas(prints, chunk[:, 0], size)
        b, valid_b = _canvas(prints, chunk[:, 1], size)
        shifts = _align(_detail(a, valid_a), _detail(b, valid_b), max_shift)
        aligned, aligned_valid = np.empty_like(a), np.empty_like(valid_a)
        for shift in np.unique(shifts, axis=0):
            rows = np.all(shifts == shift, axis=1)
            back = (-int(shift[0]), -int(shift[1]))
            aligned[rows] = np.roll(a[rows], back, axis=(1, 2))
            aligned_valid[rows] = np.roll(valid_a[rows], back, axis=(1, 2))
        out[start : start + len(chunk)] = _fit_residual(aligned, b, aligned_valid & valid_b)
    return out
