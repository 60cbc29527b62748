"""Handcrafted features for classical (scikit-learn) models: one fixed-length vector per sample.

A :class:`VectorFeatures` extractor works in two parts, so that the test split stays locked
(docs/design.md#3-the-test-split-is-locked) and a saved model carries its own preprocessing:

1. :meth:`VectorFeatures.extract` does the data-independent work (audio functionals, HOG/LBP
   histograms, landmark geometry, embedding averages) and returns the *input* of the
   scikit-learn pipeline for every manifest row, cached on disk by content key where it costs
   time to compute.
2. :meth:`VectorFeatures.pipeline_steps` returns the data-dependent steps (a bag-of-words
   vocabulary and its IDF weights) that the runner puts at the head of the pipeline: they are
   fitted on the training rows only and saved inside the MLflow model, which then takes the
   raw inputs of step 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FeatureMatrix = np.ndarray
"""``[N, D]`` float32 features, or a ``[N]`` object array of texts for text pipelines."""


class VectorFeatures:
    """Base class of the handcrafted extractors.

    Attributes:
        modality: ``"text"``, ``"audio"`` or ``"visual"``.
        sparse: The pipeline steps produce sparse matrices (bag-of-words), so scaling must not
            centre them.
    """

    modality: str = ""
    sparse: bool = False

    def extract(
        self, manifest: pd.DataFrame, cache_dir: str | Path | None = None, use_cache: bool = True
    ) -> tuple[FeatureMatrix, bool]:
        """Return the pipeline input of every manifest row and whether it came from the cache."""
        raise NotImplementedError

    def pipeline_steps(self) -> list[tuple[str, Any]]:
        """Unfitted scikit-learn steps that turn :meth:`extract`'s output into features."""
        return []

    def feature_names(self) -> list[str] | None:
        """Names of the extracted columns (``None`` where :meth:`pipeline_steps` makes them)."""
        return None

    def params(self) -> dict[str, Any]:
        """Parameters that change the extracted values (part of the cache key)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def _cached(
        self,
        manifest: pd.DataFrame,
        compute: Callable[[], np.ndarray],
        cache_dir: str | Path | None,
        use_cache: bool,
        extra: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, bool]:
        """Compute a float matrix, or load it from the feature cache under its content key."""
        import torch

        from emoexp.features.cache import cached_features, content_key

        key = content_key(manifest, {**self.params(), **(extra or {})}, type(self).__qualname__)
        tensors, hit = cached_features(
            key,
            lambda: {"x": torch.from_numpy(np.ascontiguousarray(compute(), dtype=np.float32))},
            cache_dir,
            use_cache,
        )
        return tensors["x"].numpy(), hit


def functionals(
    frames: np.ndarray, hop_seconds: float, percentiles: tuple[int, ...] = (10, 50, 90)
) -> np.ndarray:
    """Utterance-level statistics of frame features: mean, std, percentiles and linear slope.

    Args:
        frames: ``[T, F]`` frame features (rows in time order); rows with NaN are ignored per column.
        hop_seconds: Time between frames, so that slopes are per second.
        percentiles: Percentiles to report.

    Returns:
        ``[F * (3 + len(percentiles))]`` values, grouped per feature: mean, std, percentiles, slope.
        A feature with no valid frame gives zeros.
    """
    frames = np.asarray(frames, dtype=np.float64)
    n_stats = 3 + len(percentiles)
    out = np.zeros((frames.shape[1], n_stats))
    times = np.arange(frames.shape[0]) * hop_seconds
    for column in range(frames.shape[1]):
        valid = np.isfinite(frames[:, column])
        values, t = frames[valid, column], times[valid]
        if values.size == 0:
            continue
        slope = 0.0
        if values.size > 1 and np.ptp(t) > 0:
            # Least-squares slope of value over time (per second).
            tc = t - t.mean()
            slope = float(np.dot(tc, values - values.mean()) / np.dot(tc, tc))
        out[column] = [values.mean(), values.std(), *np.percentile(values, percentiles), slope]
    return out.ravel()


def functional_names(features: list[str], percentiles: tuple[int, ...] = (10, 50, 90)) -> list[str]:
    """Column names matching :func:`functionals`: ``<feature>_<statistic>``."""
    stats = ["mean", "std", *(f"p{p}" for p in percentiles), "slope"]
    return [f"{feature}_{stat}" for feature in features for stat in stats]
