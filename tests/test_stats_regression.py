"""Known-answer tests of grokking_theories.stats.regression."""
import numpy as np
import pytest
from scipy import stats

from grokking_theories.stats import InsufficientDataError, loglog_slope

X = np.logspace(-3, 0, 24)  # e.g. a weight-decay sweep over three decades


def planted(slope, noise=0.15, seed=0):
    rng = np.random.default_rng(seed)
    return 2e3 * X**slope * np.exp(rng.normal(0, noise, X.size))


def test_planted_inverse_law():
    r = loglog_slope(X, planted(-1.0))
    assert r.ci_low < -1.0 < r.ci_high
    assert r.ci_high < 0
    assert r.p_value(-1.0) > 0.05 and r.p_value(0.0) < 1e-10
    assert r.n == X.size and r.n_dropped == 0 and r.r2 > 0.9


def test_planted_flat_law():
    r = loglog_slope(X, planted(0.0, seed=1))
    assert r.ci_low < 0.0 < r.ci_high
    assert r.ci_low > -1.0  # excludes -1
    assert r.p_value(-1.0) < 1e-10 and r.p_value(0.0) > 0.05


def test_matches_scipy_linregress():
    y = planted(-0.7, seed=3)
    r = loglog_slope(X, y, alpha=0.10)
    ref = stats.linregress(np.log10(X), np.log10(y))
    assert r.slope == pytest.approx(ref.slope)
    assert r.intercept == pytest.approx(ref.intercept)
    assert r.slope_se == pytest.approx(ref.stderr)
    assert r.p_value(0.0) == pytest.approx(ref.pvalue)
    assert r.r2 == pytest.approx(ref.rvalue**2)
    half = stats.t.ppf(0.95, X.size - 2) * ref.stderr  # 90 % interval
    assert (r.ci_low, r.ci_high) == pytest.approx((ref.slope - half, ref.slope + half))


def test_exact_power_law_recovers_prefactor():
    r = loglog_slope(X, 5.0 * X**-1.5)
    assert r.slope == pytest.approx(-1.5) and 10**r.intercept == pytest.approx(5.0)


def test_nonpositive_points_dropped_and_reported():
    x = np.concatenate([X, [0.0, -1.0]])
    y = np.concatenate([planted(-1.0), [1.0, 1.0]])
    y[0] = 0.0
    r = loglog_slope(x, y)
    assert r.n == X.size - 1 and r.n_dropped == 3


def test_nothing_left_is_a_clear_value_error():
    with pytest.raises(ValueError, match="x > 0 and y > 0"):
        loglog_slope([0, -1, 2], [1, 1, 1])
    with pytest.raises(InsufficientDataError, match="single value"):
        loglog_slope([2, 2, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="same length"):
        loglog_slope([1, 2, 3], [1, 2])


def test_summary_mentions_estimates():
    r = loglog_slope(X, planted(-1.0))
    text = r.summary()
    assert "slope" in text and f"{r.slope:.4f}" in text and "slope = -1" in text
    assert len({len(line) for line in text.splitlines()}) == 1  # fixed width
