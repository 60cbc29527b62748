"""Is a difference between systems real? Tests on shared samples and over folds/seeds.

* :func:`paired_bootstrap`: confidence interval and p-value of the difference of *any*
  metric between two systems evaluated on the same samples (resampling samples, or whole
  clusters of rows such as one sample's rows from several seeds).
* :func:`bootstrap_metric`: percentile interval of one system's metric over its samples.
* :func:`mcnemar_test`: two classifiers on the same samples (statsmodels).
* :func:`wilcoxon_signed_rank`: two systems over matched folds or seeds (scipy).
* :func:`paired_t_test`: the same with Student's t, and the interval of the mean difference.
* :func:`friedman_test` and :func:`nemenyi_test`: several systems over the same blocks
  (folds, seeds or samples), with the Nemenyi post-hoc test and critical difference
  (Demšar 2006).
* :func:`adjust_pvalues`: multiple-comparison correction (Holm by default, statsmodels).

Everything takes plain arrays; reading runs and predictions is the comparison package's job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of ``metric(a) - metric(b)``.

    Attributes:
        difference: The observed difference on all samples.
        ci_low: Lower end of the percentile confidence interval.
        ci_high: Upper end.
        p_value: Two-sided p-value of "no difference" (see :func:`paired_bootstrap`).
        n: Number of resampling units (samples or clusters).
        confidence: Confidence level of the interval.
    """

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    confidence: float


def paired_bootstrap(
    metric: Metric,
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: np.ndarray | Sequence | None = None,
) -> BootstrapResult:
    """Paired bootstrap confidence interval of a metric difference on shared samples.

    Both systems are scored on the *same* resampled rows each time, so sample difficulty
    cancels out of the difference (Koehn 2004; Berg-Kirkpatrick et al. 2012). The metric
    is recomputed on every resample, so non-decomposable metrics (UAR, macro F1, CCC) are
    handled correctly.

    The p-value is two-sided and comes from the bootstrap distribution shifted to the null:
    the share of resamples whose difference deviates from the observed one by at least the
    observed difference, ``(#{|d* - d| >= |d|} + 1) / (n_resamples + 1)``.

    Args:
        metric: ``metric(y_true, pred) -> float`` on row-aligned arrays.
        y_true: Reference labels/values, first dimension the samples.
        pred_a: Predictions of system A, aligned with ``y_true``.
        pred_b: Predictions of system B, aligned with ``y_true``.
        n_resamples: Number of bootstrap resamples.
        confidence: Confidence level of the percentile interval.
        seed: Seed of the resampling.
        clusters: Optional cluster id per row; whole clusters are resampled together. Use the
            sample id when rows of several seeds are pooled, so the same sample's rows stay
            together and the interval is not made too narrow by counting a sample several times.

    Returns:
        The observed difference, its interval and p-value.

    Raises:
        ValueError: If the arrays are not aligned or empty.
    """
    y_true, pred_a, pred_b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    if not len(y_true) == len(pred_a) == len(pred_b):
        raise ValueError(
            f"paired_bootstrap needs aligned arrays, got {len(y_true)}, {len(pred_a)} and {len(pred_b)} rows."
        )
    if len(y_true) == 0:
        raise ValueError("paired_bootstrap needs at least one shared sample.")
    observed = float(metric(y_true, pred_a) - metric(y_true, pred_b))
    if clusters is None:
        members = [np.array([i]) for i in range(len(y_true))]
    else:
        codes, _ = pd.factorize(pd.Series(np.asarray(clusters)), sort=True)
        order = np.argsort(codes, kind="stable")
        members = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
    rng = np.random.default_rng(seed)
    differences = np.empty(n_resamples)
    for i in range(n_resamples):
        picked = rng.integers(0, len(members), len(members))
        rows = picked if clusters is None else np.concatenate([members[j] for j in picked])
        differences[i] = metric(y_true[rows], pred_a[rows]) - metric(y_true[rows], pred_b[rows])
    differences = differences[np.isfinite(differences)]
    alpha = 1.0 - confidence
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    extreme = int(np.sum(np.abs(differences - observed) >= abs(observed) - 1e-12))
    # (count + 1) / (n + 1): a bootstrap p-value is never exactly 0 (Davison & Hinkley 1997).
    p_value = (extreme + 1) / (len(differences) + 1)
    return BootstrapResult(observed, float(low), float(high), p_value, len(members), confidence)


def bootstrap_metric(
    metric: Metric,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap interval of one system's metric over its test samples.

    Args:
        metric: ``metric(y_true, pred) -> float``.
        y_true: Reference labels/values.
        y_pred: Predictions aligned with ``y_true``.
        n_resamples: Number of resamples.
        confidence: Confidence level.
        seed: Seed of the resampling.

    Returns:
        ``(value, low, high)``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    value = float(metric(y_true, y_pred))
    rng = np.random.default_rng(seed)
    draws = np.array(
        [
            metric(y_true[rows], y_pred[rows])
            for rows in rng.integers(0, len(y_true), (n_resamples, len(y_true)))
        ]
    )
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return value, float("nan"), float("nan")
    alpha = 1.0 - confidence
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return value, float(low), float(high)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on the discordant pairs of two classifiers.

    Attributes:
        statistic: Chi-square statistic (asymptotic test) or the smaller discordant count (exact).
        p_value: Two-sided p-value.
        only_a: Samples that only A classifies correctly.
        only_b: Samples that only B classifies correctly.
        exact: Whether the exact binomial test was used.
    """

    statistic: float
    p_value: float
    only_a: int
    only_b: int
    exact: bool


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray, exact: bool | None = None) -> McNemarResult:
    """McNemar's test: do two classifiers err on the same samples equally often?

    Args:
        correct_a: Per-sample correctness (bool) of classifier A.
        correct_b: Per-sample correctness of classifier B on the same samples.
        exact: Binomial test on the discordant pairs; default when there are fewer than 25
            of them (the usual rule), else the chi-square test with continuity correction.

    Returns:
        The test result (statsmodels' ``mcnemar``).
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar_test needs aligned arrays, got shapes {a.shape} and {b.shape}.")
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    only_a, only_b = int(table[0, 1]), int(table[1, 0])
    if exact is None:
        exact = only_a + only_b < 25
    if only_a + only_b == 0:
        return McNemarResult(0.0, 1.0, 0, 0, exact)
    result = mcnemar(table, exact=exact, correction=True)
    return McNemarResult(float(result.statistic), float(result.pvalue), only_a, only_b, exact)


@dataclass(frozen=True)
class WilcoxonResult:
    """Wilcoxon signed-rank test over matched folds or seeds.

    Attributes:
        statistic: scipy's statistic (the smaller rank sum for a two-sided test).
        p_value: p-value (NaN with fewer than two pairs).
        n: Number of matched pairs.
        mean_difference: Mean of ``a - b``.
    """

    statistic: float
    p_value: float
    n: int
    mean_difference: float


def wilcoxon_signed_rank(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    alternative: str = "two-sided",
) -> WilcoxonResult:
    """Wilcoxon signed-rank test of paired scores (one pair per fold or seed).

    With few pairs the exact distribution is used (scipy's default); note that with five
    or fewer pairs no two-sided p-value can fall below 0.05, whatever the differences.

    Args:
        scores_a: System A's metric per fold/seed.
        scores_b: System B's metric on the same folds/seeds, in the same order.
        alternative: ``"two-sided"``, ``"greater"`` or ``"less"`` (scipy's meaning).

    Returns:
        The test result; all-equal pairs give p = 1.
    """
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"wilcoxon_signed_rank needs matched scores, got {a.shape} and {b.shape}.")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    mean_difference = float(np.mean(a - b)) if n else float("nan")
    if n < 2:
        return WilcoxonResult(float("nan"), float("nan"), n, mean_difference)
    if np.allclose(a, b):
        return WilcoxonResult(0.0, 1.0, n, mean_difference)
    result = stats.wilcoxon(a, b, alternative=alternative)
    return WilcoxonResult(float(result.statistic), float(result.pvalue), n, mean_difference)


@dataclass(frozen=True)
class PairedTResult:
    """Paired t-test over matched folds or seeds.

    Attributes:
        statistic: Student's t of the mean difference.
        p_value: Two-sided p-value of "the mean difference is 0".
        n: Number of matched pairs.
        mean_difference: Mean of ``a - b``.
        ci_low: Lower end of the t interval of the mean difference.
        ci_high: Upper end.
    """

    statistic: float
    p_value: float
    n: int
    mean_difference: float
    ci_low: float
    ci_high: float


def paired_t_test(
    scores_a: Sequence[float] | np.ndarray, scores_b: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> PairedTResult:
    """Paired t-test of matched scores (one pair per fold or seed), with the interval of the difference.

    Unlike :func:`wilcoxon_signed_rank` it can reject with five pairs; it assumes the
    differences are roughly normal, which per-seed metric differences usually are.

    Args:
        scores_a: System A's metric per fold/seed.
        scores_b: System B's metric on the same folds/seeds, in the same order.
        confidence: Level of the interval of the mean difference.

    Returns:
        The test; fewer than two pairs give NaN, identical differences a zero-width interval
        (p = 1 when they are all 0, else 0).
    """
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_t_test needs matched scores, got {a.shape} and {b.shape}.")
    difference = (a - b)[np.isfinite(a) & np.isfinite(b)]
    n = int(difference.size)
    mean = float(difference.mean()) if n else float("nan")
    if n < 2:
        return PairedTResult(float("nan"), float("nan"), n, mean, float("nan"), float("nan"))
    if np.allclose(difference, difference[0]):
        return PairedTResult(float("nan"), 1.0 if np.isclose(mean, 0) else 0.0, n, mean, mean, mean)
    result = stats.ttest_1samp(difference, popmean=0.0)
    interval = result.confidence_interval(confidence)
    return PairedTResult(
        float(result.statistic), float(result.pvalue), n, mean, float(interval.low), float(interval.high)
    )


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test of k systems over n blocks.

    Attributes:
        statistic: Friedman chi-square statistic.
        p_value: Its p-value.
        mean_ranks: Mean rank per system (1 = best), in column order.
        n_blocks: Number of blocks (folds, seeds or samples).
    """

    statistic: float
    p_value: float
    mean_ranks: np.ndarray
    n_blocks: int


def _ranks(scores: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Rank systems within each block, 1 = best; ties get their average rank."""
    return stats.rankdata(-scores if higher_is_better else scores, axis=1)


def friedman_test(scores: np.ndarray, higher_is_better: bool = True) -> FriedmanResult:
    """Friedman test: do k systems rank differently over the same blocks?

    Args:
        scores: ``[n_blocks, k]`` metric values; column j is system j.
        higher_is_better: Whether a larger score is better (for the ranks).

    Returns:
        The test result (scipy's ``friedmanchisquare``) with mean ranks.

    Raises:
        ValueError: With fewer than 3 systems or 2 blocks.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] < 3 or scores.shape[0] < 2:
        raise ValueError(f"friedman_test needs [n_blocks >= 2, k >= 3] scores, got shape {scores.shape}.")
    mean_ranks = _ranks(scores, higher_is_better).mean(axis=0)
    if np.all(scores == scores[:, :1]):
        return FriedmanResult(0.0, 1.0, mean_ranks, scores.shape[0])
    result = stats.friedmanchisquare(*scores.T)
    return FriedmanResult(float(result.statistic), float(result.pvalue), mean_ranks, scores.shape[0])


def nemenyi_critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Smallest difference of mean ranks that the Nemenyi test calls significant (Demšar 2006).

    ``CD = q_alpha * sqrt(k (k + 1) / (6 N))`` where ``q_alpha`` is the studentized range
    quantile for k groups and infinite degrees of freedom, divided by sqrt(2).
    """
    q_alpha = stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    return float(q_alpha * np.sqrt(k * (k + 1) / (6.0 * n_blocks)))


def nemenyi_test(
    scores: np.ndarray, names: Sequence[str] | None = None, higher_is_better: bool = True
) -> pd.DataFrame:
    """Nemenyi post-hoc test after a Friedman test: pairwise p-values of mean-rank differences.

    Implemented with scipy's studentized range distribution because no installed library
    provides it (scikit-posthocs' ``posthoc_nemenyi_friedman`` uses the same formula):
    ``p_ij = P(Q_k,inf >= |R_i - R_j| * sqrt(2) / sqrt(k (k + 1) / (6 N)))``.

    Args:
        scores: ``[n_blocks, k]`` metric values; column j is system j.
        names: System names (default ``0..k-1``).
        higher_is_better: Whether a larger score is better.

    Returns:
        A symmetric ``k x k`` frame of p-values (1 on the diagonal), indexed by ``names``.
    """
    scores = np.asarray(scores, dtype=float)
    n_blocks, k = scores.shape
    names = list(names) if names is not None else [str(i) for i in range(k)]
    mean_ranks = _ranks(scores, higher_is_better).mean(axis=0)
    standard_error = np.sqrt(k * (k + 1) / (6.0 * n_blocks))
    z = np.abs(mean_ranks[:, None] - mean_ranks[None, :]) / standard_error
    p_values = stats.studentized_range.sf(z * np.sqrt(2), k, np.inf)
    np.fill_diagonal(p_values, 1.0)
    return pd.DataFrame(np.clip(p_values, 0.0, 1.0), index=names, columns=names)


def adjust_pvalues(p_values: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Correct p-values of a family of tests for multiple comparisons.

    Args:
        p_values: Raw p-values; NaNs (tests that could not run) are left out and kept as NaN.
        method: Any ``statsmodels.stats.multitest.multipletests`` method; ``"holm"`` controls
            the family-wise error rate without assuming independence.

    Returns:
        Adjusted p-values in the input order.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method=method)[1]
    return adjusted
