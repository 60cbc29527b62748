"""Face features for classical models: HOG and LBP appearance, landmark geometry.

- HOG (histograms of oriented gradients, Dalal & Triggs 2005) of the grayscale face.
- LBP: histograms of uniform local binary patterns (Ojala et al. 2002) over a grid of cells,
  the classic appearance descriptor for facial expressions (Shan et al. 2009).
- Geometry: facial landmarks aligned on the eyes (centre between the eyes at the origin, the
  eye line horizontal, unit inter-ocular distance), as coordinates and pairwise distances.

Landmarks come from the manifest column ``landmarks`` (per sample, the flattened
``[x0, y0, x1, y1, ...]`` coordinates in pixels): the embedded faces carry the positions their
generator drew (``emoexp.data.embedded.visual.LANDMARKS``); no landmark detector is run here
(see docs/landmarks.md for why, and how to add landmarks to a real corpus). By default
(``landmarks="auto"``) the geometry is used where the samples have landmarks and left out
where they have none (FER2013, image folders).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from emoexp.data import schema
from emoexp.features.handcrafted import VectorFeatures
from emoexp.features.visual import load_image

log = logging.getLogger(__name__)

LANDMARKS_COLUMN = "landmarks"

# Indices of the eye points in the embedded generator's layout (emoexp.data.embedded.visual.LANDMARKS).
EMBEDDED_LEFT_EYE: tuple[int, ...] = (9, 10, 11, 12)
EMBEDDED_RIGHT_EYE: tuple[int, ...] = (13, 14, 15, 16)


class LandmarkError(ValueError):
    """Landmarks are missing or do not have the expected layout."""


def has_landmarks(manifest: pd.DataFrame) -> bool:
    """Whether every sample of ``manifest`` has a non-empty ``landmarks`` value."""
    if LANDMARKS_COLUMN not in manifest.columns or manifest.empty:
        return False
    return all(
        value is not None and not (np.isscalar(value) and pd.isna(value)) and np.size(value) > 0
        for value in manifest[LANDMARKS_COLUMN]
    )


def hog_features(
    image: np.ndarray, orientations: int = 9, pixels_per_cell: int = 8, cells_per_block: int = 2
) -> np.ndarray:
    """HOG descriptor of a 2-D grayscale image (L2-Hys block normalisation), as float32."""
    from skimage.feature import hog

    return hog(
        image,
        orientations=orientations,
        pixels_per_cell=(pixels_per_cell, pixels_per_cell),
        cells_per_block=(cells_per_block, cells_per_block),
        block_norm="L2-Hys",
        feature_vector=True,
    ).astype(np.float32)


def lbp_histograms(image: np.ndarray, points: int = 8, radius: float = 1.0, grid: int = 4) -> np.ndarray:
    """Normalised histograms of uniform LBP codes in a ``grid x grid`` of cells, concatenated.

    Returns:
        ``[grid * grid * (points + 2)]`` float32 values; each cell's histogram sums to 1.
    """
    from skimage.feature import local_binary_pattern

    # Integer gray levels: on floats, tiny differences between equal-looking pixels flip the bits.
    codes = local_binary_pattern(np.asarray(image), points, radius, method="uniform")
    n_bins = points + 2  # P + 1 uniform patterns and one bin for all non-uniform ones
    rows = np.array_split(np.arange(codes.shape[0]), grid)
    cols = np.array_split(np.arange(codes.shape[1]), grid)
    histograms = []
    for r in rows:
        for c in cols:
            cell = codes[np.ix_(r, c)]
            counts = np.bincount(cell.astype(np.int64).ravel(), minlength=n_bins)[:n_bins]
            histograms.append(counts / max(cell.size, 1))
    return np.concatenate(histograms).astype(np.float32)


def align_landmarks(points: np.ndarray, left_eye: Sequence[int], right_eye: Sequence[int]) -> np.ndarray:
    """Translate, rotate and scale landmarks so that the eye centres sit at (-0.5, 0) and (0.5, 0).

    Args:
        points: ``[K, 2]`` landmark (x, y) coordinates.
        left_eye: Indices of the points whose mean is the left eye centre.
        right_eye: Indices of the right eye's points.

    Returns:
        ``[K, 2]`` aligned coordinates (pose-, position- and scale-free).
    """
    left, right = points[list(left_eye)].mean(axis=0), points[list(right_eye)].mean(axis=0)
    axis = right - left
    distance = float(np.hypot(*axis))
    if distance == 0:
        raise LandmarkError("the two eye centres coincide; the landmarks are degenerate.")
    cos, sin = axis / distance
    rotation = np.array([[cos, sin], [-sin, cos]])  # rotates the eye axis onto +x
    return (points - (left + right) / 2) @ rotation.T / distance


def landmark_geometry(points: np.ndarray, left_eye: Sequence[int], right_eye: Sequence[int]) -> np.ndarray:
    """Aligned coordinates ``[2K]`` and all pairwise distances ``[K(K-1)/2]`` of one face's landmarks."""
    aligned = align_landmarks(points, left_eye, right_eye)
    i, j = np.triu_indices(len(aligned), k=1)
    distances = np.linalg.norm(aligned[i] - aligned[j], axis=1)
    return np.concatenate([aligned.ravel(), distances]).astype(np.float32)


class FaceFeatures(VectorFeatures):
    """HOG, LBP and landmark-geometry features of face images, concatenated.

    Args:
        size: Side the grayscale images are resized to.
        hog: Include HOG.
        lbp: Include LBP histograms.
        landmarks: Include landmark geometry: ``True`` (needs a ``landmarks`` manifest column),
            ``False``, or ``"auto"``: when every sample of the first extracted manifest has
            landmarks (the embedded faces), not otherwise (FER2013, image folders). The choice is
            then kept, so the feature layout never changes between calls.
        hog_orientations: HOG orientation bins.
        hog_pixels_per_cell: HOG cell side in pixels.
        hog_cells_per_block: HOG block side in cells.
        lbp_points: LBP neighbours.
        lbp_radius: LBP radius in pixels.
        lbp_grid: LBP histograms in a ``lbp_grid x lbp_grid`` grid of cells.
        left_eye: Landmark indices of the left eye (default: the embedded generator's layout;
            for dlib's 68 points use ``[36, 37, 38, 39, 40, 41]``).
        right_eye: Landmark indices of the right eye (dlib 68: ``[42, 43, 44, 45, 46, 47]``).
    """

    modality = "visual"

    def __init__(  # noqa: PLR0913 (a Hydra _target_: one argument per config key)
        self,
        size: int = 48,
        hog: bool = True,
        lbp: bool = True,
        landmarks: bool | Literal["auto"] = True,
        hog_orientations: int = 9,
        hog_pixels_per_cell: int = 8,
        hog_cells_per_block: int = 2,
        lbp_points: int = 8,
        lbp_radius: float = 1.0,
        lbp_grid: int = 4,
        left_eye: Sequence[int] = EMBEDDED_LEFT_EYE,
        right_eye: Sequence[int] = EMBEDDED_RIGHT_EYE,
    ):
        if landmarks not in (True, False, "auto"):
            raise ValueError(f"FaceFeatures landmarks must be true, false or 'auto', got {landmarks!r}.")
        if not (hog or lbp or landmarks is True):
            raise ValueError("FaceFeatures needs hog or lbp set to true (or landmarks=true).")
        self.size = size
        self.hog = hog
        self.lbp = lbp
        self.landmarks = landmarks
        self.hog_orientations = hog_orientations
        self.hog_pixels_per_cell = hog_pixels_per_cell
        self.hog_cells_per_block = hog_cells_per_block
        self.lbp_points = lbp_points
        self.lbp_radius = lbp_radius
        self.lbp_grid = lbp_grid
        self.left_eye = tuple(int(i) for i in left_eye)
        self.right_eye = tuple(int(i) for i in right_eye)
        self._n_landmarks: int | None = None
        # What landmarks="auto" resolved to on the first manifest (None: not resolved yet).
        self._uses_landmarks: bool | None = None if landmarks == "auto" else bool(landmarks)

    def appearance(self, image: np.ndarray) -> np.ndarray:
        """HOG and/or LBP features of one ``[size, size]`` grayscale image."""
        parts = []
        if self.hog:
            parts.append(
                hog_features(image, self.hog_orientations, self.hog_pixels_per_cell, self.hog_cells_per_block)
            )
        if self.lbp:
            parts.append(lbp_histograms(image, self.lbp_points, self.lbp_radius, self.lbp_grid))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def geometry(self, manifest: pd.DataFrame) -> np.ndarray:
        """Landmark-geometry features ``[N, 2K + K(K-1)/2]`` from the manifest's ``landmarks`` column."""
        if LANDMARKS_COLUMN not in manifest.columns:
            raise LandmarkError(
                f"landmarks=true needs a '{LANDMARKS_COLUMN}' column of facial landmark coordinates "
                "(the embedded faces have one; see docs/landmarks.md for real corpora), or set "
                "model.features.visual.landmarks=false to use HOG/LBP only."
            )
        rows = []
        for sample_id, value in zip(manifest[schema.ID], manifest[LANDMARKS_COLUMN], strict=True):
            flat = np.asarray(value if value is not None else [], dtype=np.float64).ravel()
            if flat.size == 0 or flat.size % 2 or not np.isfinite(flat).all():
                raise LandmarkError(
                    f"sample {sample_id!r}: '{LANDMARKS_COLUMN}' must be a flat list [x0, y0, x1, y1, ...] "
                    f"of finite numbers, got {flat.size} values."
                )
            points = flat.reshape(-1, 2)
            needed = max(self.left_eye + self.right_eye)
            if len(points) <= needed:
                raise LandmarkError(
                    f"sample {sample_id!r} has {len(points)} landmarks but the eye indices go up to "
                    f"{needed}; "
                    "set model.features.visual.left_eye/right_eye for this landmark layout."
                )
            if self._n_landmarks is None:
                self._n_landmarks = len(points)
            elif len(points) != self._n_landmarks:
                raise LandmarkError(
                    f"sample {sample_id!r} has {len(points)} landmarks, others have {self._n_landmarks}."
                )
            rows.append(landmark_geometry(points, self.left_eye, self.right_eye))
        return np.stack(rows)

    def extract(
        self, manifest: pd.DataFrame, cache_dir: str | Path | None = None, use_cache: bool = True
    ) -> tuple[np.ndarray, bool]:
        """Appearance features (cached by content key) joined with the landmark geometry."""
        parts, hit = [], False
        if self.hog or self.lbp:

            def compute() -> np.ndarray:
                return np.stack(
                    [self.appearance(load_image(p, self.size)[0]) for p in manifest[schema.IMAGE]]
                )

            # The geometry is cheap and depends on the landmarks column, not on the image files:
            # only the appearance part is cached.
            matrix, hit = self._cached(manifest, compute, cache_dir, use_cache)
            parts.append(matrix)
        if self.uses_landmarks(manifest):
            parts.append(self.geometry(manifest))
        if not parts:
            raise LandmarkError(
                "model.features.visual has hog=false and lbp=false, and landmarks='auto' found no "
                f"'{LANDMARKS_COLUMN}' on these samples: set hog or lbp to true."
            )
        return np.concatenate(parts, axis=1).astype(np.float32), hit

    def uses_landmarks(self, manifest: pd.DataFrame) -> bool:
        """Whether the landmark geometry is part of the features (resolving ``"auto"`` on first use).

        ``"auto"`` uses landmarks when every sample of ``manifest`` has them; later calls keep
        that choice, and :meth:`geometry` then names a sample that lacks them.
        """
        if self._uses_landmarks is None:
            self._uses_landmarks = has_landmarks(manifest)
            if not self._uses_landmarks:
                log.info(
                    "FaceFeatures: no '%s' on every sample; using HOG/LBP appearance features only.",
                    LANDMARKS_COLUMN,
                )
        return self._uses_landmarks
