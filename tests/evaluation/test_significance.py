"""Significance tests against scipy/statsmodels and textbook examples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from emoexp.evaluation import significance


def _accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(true == pred))


def test_paired_bootstrap_matches_scipy_paired_bootstrap_for_a_mean_difference():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 4, 400)
    pred_a = np.where(rng.random(400) < 0.7, true, rng.integers(0, 4, 400))
    pred_b = np.where(rng.random(400) < 0.6, true, rng.integers(0, 4, 400))
    result = significance.paired_bootstrap(_accuracy, true, pred_a, pred_b, n_resamples=4000, seed=3)
    assert result.difference == pytest.approx(_accuracy(true, pred_a) - _accuracy(true, pred_b))
    # Accuracy is a mean, so scipy's paired bootstrap of the mean difference estimates the same interval.
    reference = stats.bootstrap(
        ((true == pred_a).astype(float), (true == pred_b).astype(float)),
        lambda a, b, axis=-1: a.mean(axis=axis) - b.mean(axis=axis),
        paired=True,
        method="percentile",
        n_resamples=4000,
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert result.ci_low == pytest.approx(reference.low, abs=0.012)
    assert result.ci_high == pytest.approx(reference.high, abs=0.012)
    assert result.ci_low < result.difference < result.ci_high
    assert result.p_value < 0.05 and result.n == 400


def test_paired_bootstrap_of_identical_systems_is_zero_with_p_one():
    true = np.arange(50) % 5
    pred = (true + (np.arange(50) % 3 == 0)) % 5
    result = significance.paired_bootstrap(_accuracy, true, pred, pred, n_resamples=500)
    assert (result.difference, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_resamples_whole_clusters():
    # Two copies of each sample (two seeds): clustering by sample id halves the resampling units.
    true = np.repeat(np.arange(40) % 4, 2)
    pred = np.repeat(np.where(np.arange(40) % 3 == 0, (np.arange(40) + 1) % 4, np.arange(40) % 4), 2)
    clusters = np.repeat(np.arange(40), 2)
    clustered = significance.paired_bootstrap(_accuracy, true, pred, true, n_resamples=800, clusters=clusters)
    flat = significance.paired_bootstrap(_accuracy, true, pred, true, n_resamples=800)
    assert clustered.n == 40 and flat.n == 80
    # Treating the copies as independent understates the uncertainty (by about sqrt(2)).
    assert clustered.ci_high - clustered.ci_low > 1.2 * (flat.ci_high - flat.ci_low)


def test_mcnemar_matches_the_textbook_example_and_statsmodels():
    # Agresti (2007), presidential approval: 794 / 150 / 86 / 570; chi2 (no correction) = 17.36.
    from statsmodels.stats.contingency_tables import mcnemar

    a = np.array([1] * 794 + [1] * 86 + [0] * 150 + [0] * 570, dtype=bool)
    b = np.array([1] * 794 + [0] * 86 + [1] * 150 + [0] * 570, dtype=bool)
    result = significance.mcnemar_test(a, b)
    assert (result.only_a, result.only_b, result.exact) == (86, 150, False)
    assert pytest.approx(17.36, abs=0.01) == (86 - 150) ** 2 / (86 + 150)
    # With continuity correction (the default): (|86 - 150| - 1)^2 / 236.
    assert result.statistic == pytest.approx((64 - 1) ** 2 / 236)
    expected = mcnemar([[794, 86], [150, 570]], exact=False, correction=True)
    assert result.p_value == pytest.approx(expected.pvalue)
    small = significance.mcnemar_test([1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 1, 1])
    assert small.exact and small.p_value == pytest.approx(stats.binomtest(1, 4).pvalue)


def test_wilcoxon_matches_scipy_documentation_example():
    # scipy.stats.wilcoxon docs: differences of 15 paired observations, exact p = 0.041259765625.
    d = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)
    result = significance.wilcoxon_signed_rank(d, np.zeros_like(d))
    assert result.statistic == 24.0
    assert result.p_value == pytest.approx(0.041259765625)
    assert result.n == 15
    assert significance.wilcoxon_signed_rank([0.5, 0.6], [0.5, 0.6]).p_value == 1.0
    assert np.isnan(significance.wilcoxon_signed_rank([0.5], [0.4]).p_value)


def test_friedman_and_nemenyi():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(12, 4)) + np.array([0.0, 0.2, 1.0, 2.0])
    result = significance.friedman_test(scores)
    expected = stats.friedmanchisquare(*scores.T)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    ranks = stats.rankdata(-scores, axis=1).mean(axis=0)
    np.testing.assert_allclose(result.mean_ranks, ranks)
    assert result.mean_ranks[3] < result.mean_ranks[0]  # the best system has the lowest rank
    p = significance.nemenyi_test(scores, ["a", "b", "c", "d"])
    assert p.shape == (4, 4) and (np.diag(p) == 1).all() and np.allclose(p, p.T)
    se = np.sqrt(4 * 5 / (6 * 12))
    z = abs(ranks[0] - ranks[3]) / se
    assert p.loc["a", "d"] == pytest.approx(stats.studentized_range.sf(z * np.sqrt(2), 4, np.inf))
    # A pair is Nemenyi-significant exactly when its rank difference exceeds the critical difference.
    cd = significance.nemenyi_critical_difference(4, 12)
    for i, j in ((0, 1), (0, 3), (1, 3), (2, 3)):
        assert (p.iloc[i, j] < 0.05) == (abs(ranks[i] - ranks[j]) > cd)


def test_nemenyi_critical_values_match_demsar_2006():
    # Demšar (2006), Table 5(a): q_0.05 for k = 2..10, and the worked example CD = 1.25 (k=4, N=14).
    table = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    for k, q in zip(range(2, 11), table, strict=True):
        cd = significance.nemenyi_critical_difference(k, 6)
        assert cd / np.sqrt(k * (k + 1) / 36) == pytest.approx(q, abs=0.002)
    assert significance.nemenyi_critical_difference(4, 14) == pytest.approx(1.25, abs=0.005)


def test_holm_correction_matches_hand_computation_and_keeps_nans():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04
    # -> made monotone: 0.02, 0.03, 0.06, 0.06.
    adjusted = significance.adjust_pvalues(p)
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])


def test_bootstrap_metric_interval_contains_the_value():
    true = np.arange(100) % 4
    pred = np.where(np.arange(100) % 5 == 0, (true + 1) % 4, true)
    value, low, high = significance.bootstrap_metric(_accuracy, true, pred, n_resamples=500)
    assert value == 0.8 and low < value < high
