"""Confidence intervals of one run's test figures that resample speakers, not only samples.

Samples of one speaker are not independent: a model that fails on one voice fails on all of
its clips. A percentile bootstrap that draws *speakers* with replacement gives the interval a
reader needs to judge how the figure would move with other speakers. It is two-stage (Davison &
Hinkley 1997, section 3.8): each drawn speaker's samples are drawn again with replacement. A
one-stage cluster bootstrap keeps each speaker's samples as they are, and with the two test
speakers of a default split it can only mix two fixed per-speaker scores: when the two agree,
its interval is narrower than the plain sample bootstrap's, although the clips themselves are a
sample. The second stage keeps that sampling variation, so the interval is never narrower than
the samples alone justify. Corpora without speaker ids give every sample its own id, so the
same code then is the ordinary sample bootstrap; a test split with a single speaker falls back
to samples and says so.

Written here because no maintained library offers a cluster bootstrap of classification and
concordance scores (``scipy.stats.bootstrap`` resamples observations only), and the scores are
computed with numpy on integer codes so that a thousand resamples cost milliseconds, not the
seconds that a thousand scikit-learn calls take.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from emoexp.evaluation.metrics import concordance_correlation_coefficient

N_RESAMPLES = 1000
CONFIDENCE = 0.95
SPEAKERS, SAMPLES = "speakers", "samples"


def categorical_scores(target: np.ndarray, prediction: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, UAR and macro F1 of integer-coded labels, as scikit-learn defines them.

    UAR averages recall over the classes present in ``target``; macro F1 averages over the
    classes present in ``target`` or ``prediction`` (``zero_division=0``).
    """
    matrix = np.bincount(target * n_classes + prediction, minlength=n_classes * n_classes)
    matrix = matrix.reshape(n_classes, n_classes)
    true_counts, predicted_counts, hits = matrix.sum(axis=1), matrix.sum(axis=0), np.diag(matrix)
    present = true_counts > 0
    recall = np.divide(hits, true_counts, out=np.zeros(n_classes), where=present)
    seen = present | (predicted_counts > 0)
    denominator = true_counts + predicted_counts
    f1 = np.divide(2 * hits, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return {
        "accuracy": float(hits.sum() / max(len(target), 1)),
        "uar": float(recall[present].mean()) if present.any() else float("nan"),
        "f1_macro": float(f1[seen].mean()) if seen.any() else float("nan"),
    }


def dimensional_scores(truth: np.ndarray, prediction: np.ndarray, dims: Sequence[str]) -> dict[str, float]:
    """CCC per dimension (``<dim>_ccc``) and their mean ``ccc`` of ``[N, D]`` arrays."""
    scores = {
        f"{dim}_ccc": concordance_correlation_coefficient(truth[:, i], prediction[:, i])
        for i, dim in enumerate(dims)
    }
    scores["ccc"] = float(np.mean(list(scores.values())))
    return scores


def cluster_bootstrap(
    score: Callable[[np.ndarray], dict[str, float]],
    clusters: np.ndarray,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """Percentile intervals of ``score(rows)`` under a two-stage cluster bootstrap.

    Each resample draws as many clusters as there are, with replacement, then as many rows of
    each drawn cluster as it has, with replacement (with one row per cluster: the sample bootstrap).

    Args:
        score: Maps an array of row indices to named scores.
        clusters: Cluster id of every row (speakers; unique ids give a sample bootstrap).
        n_resamples: Number of resamples.
        confidence: Confidence level of the intervals.
        seed: Seed of the resampling (fixed: two runs' intervals use the same draws).

    Returns:
        ``{name: (value, low, high)}``; ``low``/``high`` are NaN when no resample was finite.
    """
    _, codes = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    order = np.argsort(codes, kind="stable")  # rows grouped by cluster
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for picked in rng.integers(0, len(sizes), (n_resamples, len(sizes))):
        owner = np.repeat(picked, sizes[picked])  # the drawn cluster of each row to draw
        within = np.floor(rng.random(len(owner)) * sizes[owner]).astype(int)
        for name, value in score(order[starts[owner] + within]).items():
            draws.setdefault(name, []).append(value)
    alpha = (1.0 - confidence) / 2
    intervals = {}
    for name, value in score(np.arange(len(codes))).items():
        finite = np.asarray(draws.get(name, []), dtype=float)
        finite = finite[np.isfinite(finite)]
        low, high = np.quantile(finite, [alpha, 1 - alpha]) if finite.size else (np.nan, np.nan)
        intervals[name] = (float(value), float(low), float(high))
    return intervals


def _score_function(test: pd.DataFrame, classes: Sequence[str], dims: Sequence[str]) -> Callable:
    """``rows -> scores`` over the test frame's categorical and dimensional columns."""
    scorers = []
    if classes and "target" in test.columns:
        index = {name: i for i, name in enumerate(classes)}
        target = test["target"].astype(str).map(index).to_numpy()
        prediction = test["prediction"].astype(str).map(index).to_numpy()
        known = ~(pd.isna(target) | pd.isna(prediction))
        target, prediction = target[known].astype(int), prediction[known].astype(int)
        rows_known = np.flatnonzero(known)
        position = np.full(len(test), -1)
        position[rows_known] = np.arange(len(rows_known))

        def categorical(rows: np.ndarray) -> dict[str, float]:
            kept = position[rows]
            kept = kept[kept >= 0]
            return categorical_scores(target[kept], prediction[kept], len(classes))

        scorers.append(categorical)
    if dims:
        truth = test[[f"{dim}_true" for dim in dims]].to_numpy(float)
        predicted = test[[f"{dim}_pred" for dim in dims]].to_numpy(float)
        scorers.append(lambda rows: dimensional_scores(truth[rows], predicted[rows], dims))
    return lambda rows: {name: value for scorer in scorers for name, value in scorer(rows).items()}


def figure_intervals(
    test: pd.DataFrame, classes: Sequence[str], dims: Sequence[str], speaker_column: str = "speaker"
) -> pd.DataFrame:
    """95% intervals of a run's test figures, resampling speakers where the test split has several.

    Args:
        test: Test predictions (``target``/``prediction`` and/or ``<dim>_true``/``<dim>_pred``,
            and the speaker column).
        classes: Class names of a categorical scheme (empty for a dimensional one).
        dims: Dimension names of a dimensional scheme (empty for a categorical one).
        speaker_column: Column holding the speaker/subject id.

    Returns:
        One row per figure: ``metric``, ``value``, ``ci_low``, ``ci_high``, ``resampled``
        (``speakers`` or ``samples``), ``n_clusters``, ``n_samples``, ``n_resamples``; empty
        for an empty test split.
    """
    if test.empty:
        return pd.DataFrame()
    speakers = test[speaker_column].astype(str).to_numpy() if speaker_column in test else None
    n_speakers = len(set(speakers)) if speakers is not None else 0
    grouped = 1 < n_speakers < len(test)
    clusters = speakers if grouped else np.arange(len(test))
    intervals = cluster_bootstrap(_score_function(test.reset_index(drop=True), classes, dims), clusters)
    return pd.DataFrame(
        [
            {
                "metric": name,
                "value": value,
                "ci_low": low,
                "ci_high": high,
                "resampled": SPEAKERS if grouped else SAMPLES,
                "n_clusters": n_speakers if grouped else len(test),
                "n_samples": len(test),
                "n_resamples": N_RESAMPLES,
            }
            for name, (value, low, high) in intervals.items()
        ]
    )
