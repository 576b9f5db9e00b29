"""Known-answer tests of bootstrap, TOST, peak prominence, lead/lag and Holm."""
import numpy as np
import pytest
from scipy import stats

from grokking_theories.stats import (
    InsufficientDataError,
    bootstrap_ci,
    holm,
    lead_lag,
    peak_prominence_test,
    tost,
)

# ---------------------------------------------------------------- bootstrap


def test_bootstrap_mean_ci_matches_normal_theory():
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 2.0, 200)
    ci = bootstrap_ci(x, np.mean, confidence=0.95, n_resamples=2000, seed=1)
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.ci_low < 10.0 < ci.ci_high
    t_half = stats.t.ppf(0.975, 199) * x.std(ddof=1) / np.sqrt(200)
    assert ci.ci_high - ci.ci_low == pytest.approx(2 * t_half, rel=0.15)
    assert ci.standard_error == pytest.approx(x.std(ddof=1) / np.sqrt(200), rel=0.15)
    again = bootstrap_ci(x, np.mean, confidence=0.95, n_resamples=2000, seed=1)
    assert (again.ci_low, again.ci_high) == (ci.ci_low, ci.ci_high)  # seeded


def test_bootstrap_small_and_degenerate_samples():
    with pytest.raises(InsufficientDataError, match=">= 2"):
        bootstrap_ci([3.0])
    with pytest.raises(ValueError):  # InsufficientDataError is a ValueError
        bootstrap_ci([np.nan, 1.0])
    const = bootstrap_ci([2.0, 2.0, 2.0])
    assert (const.ci_low, const.estimate, const.ci_high) == (2.0, 2.0, 2.0) and const.method == "constant"
    # a statistic without an ``axis`` argument works too (scipy loops)
    med = bootstrap_ci([1, 2, 3, 4, 50], lambda v: float(np.median(v)), n_resamples=300)
    assert med.ci_low <= 3 <= med.ci_high


# ---------------------------------------------------------------- TOST


def test_tost_equal_groups_equivalent_shifted_not():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 60), rng.normal(0, 1, 60)
    eq = tost(a, -0.6, 0.6, b)
    assert eq.equivalent and eq.p_value < 0.05 and eq.kind == "independent"
    assert -0.6 < eq.ci_low < eq.ci_high < 0.6
    shifted = tost(a + 1.0, -0.6, 0.6, b)
    assert not shifted.equivalent and shifted.p_value > 0.5


def test_tost_one_sample_matches_hand_computation():
    rng = np.random.default_rng(4)
    x = rng.normal(0.1, 0.5, 25)
    r = tost(x, -0.3, 0.3)
    se = x.std(ddof=1) / np.sqrt(x.size)
    p_low = stats.t.sf((x.mean() + 0.3) / se, x.size - 1)  # H0: mean <= -0.3
    p_high = stats.t.cdf((x.mean() - 0.3) / se, x.size - 1)  # H0: mean >= 0.3
    assert r.p_value == pytest.approx(max(p_low, p_high))
    assert r.kind == "one-sample" and r.estimate == pytest.approx(x.mean())
    # equivalence at alpha <=> the (1 - 2 alpha) CI inside the margins
    assert r.equivalent == (-0.3 < r.ci_low and r.ci_high < 0.3)


def test_tost_paired():
    rng = np.random.default_rng(5)
    base = rng.normal(5, 3, 30)  # large between-seed spread, small paired difference
    r = tost(base + rng.normal(0, 0.1, 30), -0.2, 0.2, base, paired=True)
    assert r.equivalent and r.kind == "paired" and r.n == 30
    assert not tost(base + 0.5 + rng.normal(0, 0.1, 30), -0.2, 0.2, base, paired=True).equivalent
    with pytest.raises(ValueError, match="low < high"):
        tost(base, 1, -1)


# ---------------------------------------------------------------- peak prominence

XS = np.array([1, 2, 4, 8, 16, 32, 64], float)


def test_peak_found_at_planted_bump():
    rng = np.random.default_rng(6)
    bump = np.array([0.0, 0.5, 1.5, 3.0, 1.5, 0.5, 0.2])
    r = peak_prominence_test(XS, bump + rng.normal(0, 0.4, (5, XS.size)), n_resamples=999)
    assert r.significant and r.x_peak == 8.0 and r.peak_index == 3
    assert r.ci_low > 0 and r.p_value < 0.01
    assert r.ci_low < 2.8 < r.ci_high  # planted prominence 3.0 - 0.2


def test_peak_absent_on_monotone_curve():
    rng = np.random.default_rng(7)
    mono = np.log2(XS)  # strictly increasing
    r = peak_prominence_test(XS, mono + rng.normal(0, 0.4, (5, XS.size)), n_resamples=999)
    assert not r.significant and r.prominence < 0 and r.ci_high < 0.5


def test_peak_unsorted_x_handled():
    rng = np.random.default_rng(8)
    bump = np.array([0.0, 0.5, 1.5, 3.0, 1.5, 0.5, 0.2])
    Y = bump + rng.normal(0, 0.4, (5, XS.size))
    perm = np.array([3, 0, 6, 1, 5, 2, 4])
    r = peak_prominence_test(XS[perm], Y[:, perm], n_resamples=499)
    assert r.x_peak == 8.0 and r.significant


def test_peak_false_positive_rate_on_flat_curve_is_controlled():
    # Least-favourable null: a flat curve. The max-of-means bootstrap alone would flag
    # ~30 % of these at 3 seeds; the decision must stay near or below alpha.
    rng = np.random.default_rng(9)
    hits = sum(
        peak_prominence_test(XS, rng.normal(0, 1, (3, XS.size)), n_resamples=199, seed=i).significant
        for i in range(40)
    )
    assert hits <= 5  # Binomial(40, 0.05): P(X > 5) < 0.02


def test_peak_input_checks():
    with pytest.raises(InsufficientDataError, match="3 x values"):
        peak_prominence_test([1, 2], np.zeros((4, 2)))
    with pytest.raises(InsufficientDataError, match="2 seeds"):
        peak_prominence_test(XS, np.zeros((1, XS.size)))
    with pytest.raises(ValueError, match="shape"):
        peak_prominence_test(XS, np.zeros((XS.size, 4)))


# ---------------------------------------------------------------- lead / lag


def test_lead_lag_finds_planted_lead():
    rng = np.random.default_rng(10)
    t_fourier = rng.normal(3000, 300, 10)  # e.g. Fourier sparsity transition per seed
    t_grok = t_fourier + 500 + rng.normal(0, 100, 10)  # test accuracy jumps 500 steps later
    r = lead_lag(t_fourier, t_grok, n_resamples=999)
    assert r.n_a_first == 10 and r.n_b_first == 0 and r.fraction_a_first == 1.0
    assert r.sign_p == pytest.approx(2 * 0.5**10)  # exact two-sided sign test
    assert r.wilcoxon_p == pytest.approx(2 / 2**10)  # exact signed-rank: all ranks positive
    assert r.ci_low < 500 < r.ci_high and r.ci_low > 0
    assert r.median_lead == pytest.approx(np.median(t_grok - t_fourier))


def test_lead_lag_null_and_log_scale():
    rng = np.random.default_rng(11)
    a = rng.lognormal(8, 0.3, 12)
    b = a * np.exp(rng.normal(0, 0.2, 12))  # no systematic lead
    r = lead_lag(a, b, log=True, n_resamples=499)
    assert r.log and r.wilcoxon_p > 0.05 and r.sign_p > 0.05 and r.ci_low < 0 < r.ci_high
    tied = lead_lag([1, 2, 3], [1, 2, 3])
    assert tied.n_ties == 3 and tied.wilcoxon_p == 1.0 and tied.median_lead == 0
    with pytest.raises(InsufficientDataError):
        lead_lag([1.0, np.nan], [2.0, 3.0])


# ---------------------------------------------------------------- Holm


def test_holm_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone max 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_holm_keeps_nan_out_of_family():
    out = holm([0.01, np.nan, 0.04])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_holm_leaves_garbage_collection_as_it_found_it():
    """holm freezes the heap around statsmodels' full collection; afterwards nothing stays frozen and a cycle
    made before the call is still collectable."""
    import gc
    import weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle: only the cycle collector frees it
    alive = weakref.ref(a)
    del a, b
    assert holm([0.01, 0.2]) == pytest.approx([0.02, 0.2])
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None
