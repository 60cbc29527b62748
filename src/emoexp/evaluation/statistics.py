"""Summary statistics of a metric over folds or seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    # A NaN is a fold or seed without a value (e.g. a failed run); it cannot enter a mean.
    return array[~np.isnan(array)]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    method: Literal["BCa", "percentile", "basic"] = "BCa",
) -> tuple[float, float, float]:
    """Bootstrap confidence interval of the mean (e.g. of a metric over folds or seeds).

    With the handful of values that folds and seeds give, a bootstrap interval is narrower
    than it should be; prefer :func:`mean_std_ci`'s t interval when n is below about 10.

    Args:
        values: One value per fold or seed; NaNs are dropped.
        confidence: Confidence level of the interval.
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling, for reproducible intervals.
        method: ``scipy.stats.bootstrap`` method.

    Returns:
        ``(mean, low, high)``; ``low`` and ``high`` are NaN when fewer than two values are
        left, and equal the mean when all values are equal.
    """
    array = _finite(values)
    if array.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(array.mean())
    if array.size < 2:
        return mean, float("nan"), float("nan")
    if np.ptp(array) == 0:
        # scipy's BCa is undefined without spread; every resample has this same mean.
        return mean, mean, mean
    result = stats.bootstrap(
        (array,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method=method,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return mean, float(interval.low), float(interval.high)


def mean_std_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    method: Literal["t", "bootstrap"] = "t",
) -> dict[str, float]:
    """Mean, standard deviation and confidence interval of the mean.

    Args:
        values: One value per fold or seed; NaNs are dropped.
        confidence: Confidence level of the interval.
        method: ``"t"`` for Student's t interval (suited to few folds/seeds) or
            ``"bootstrap"`` for :func:`bootstrap_ci`.

    Returns:
        ``{"mean", "std", "ci_low", "ci_high", "n"}``; ``std`` is the sample standard
        deviation (ddof=1); ``std`` and the interval are NaN with fewer than two values.
    """
    array = _finite(values)
    n = int(array.size)
    mean = float(array.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "std": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": n}
    std = float(array.std(ddof=1))
    if method == "bootstrap":
        _, low, high = bootstrap_ci(array, confidence=confidence)
    elif method == "t":
        if std == 0:
            low = high = mean
        else:
            interval = stats.ttest_1samp(array, popmean=0.0).confidence_interval(confidence)
            low, high = float(interval.low), float(interval.high)
    else:
        raise ValueError(f"mean_std_ci: unknown method {method!r}; use 't' or 'bootstrap'.")
    return {"mean": mean, "std": std, "ci_low": low, "ci_high": high, "n": n}
