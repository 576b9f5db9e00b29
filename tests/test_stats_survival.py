"""Known-answer tests of grokking_theories.stats.survival (planted censoring)."""
import numpy as np
import pytest

from grokking_theories.stats import (
    InsufficientDataError,
    censored_median,
    cox_slope,
    kaplan_meier,
    logrank,
)

BUDGET = 1000.0
SCALE = 1000.0  # exponential mean; true median = SCALE * ln 2 = 693


def censored_exponential(n, scale, seed, budget=BUDGET, latent=False):
    rng = np.random.default_rng(seed)
    t = rng.exponential(scale, n)
    out = (np.minimum(t, budget), t <= budget)
    return (*out, t) if latent else out


def test_km_median_unbiased_where_naive_mean_is_not():
    times, events, latent = censored_exponential(2000, SCALE, seed=0, latent=True)
    true_median = SCALE * np.log(2)
    assert 0.25 < 1 - events.mean() < 0.45  # a sizeable share never "grokked" within budget
    naive = times[events].mean()  # mean over runs that grokked: ignores the censored ones
    assert naive < 0.7 * true_median  # biased low (expected ~418 vs 693)
    med = censored_median(times, events)
    # the median is below the budget, so KM must reproduce the uncensored sample median
    assert med.reached and med.median == pytest.approx(np.median(latent), rel=0.005)
    assert med.median == pytest.approx(true_median, rel=0.08)
    assert med.ci_low < true_median < med.ci_high
    assert (med.n, med.n_events) == (2000, int(events.sum()))


def test_km_curve_tracks_true_survival():
    times, events = censored_exponential(400, SCALE, seed=1)
    km = kaplan_meier(times, events)
    for t in (100.0, 400.0, 900.0):
        assert km.survival_at(t) == pytest.approx(np.exp(-t / SCALE), abs=0.06)
    assert km.survival_at(0.0) == 1.0
    assert km.table["survival"].is_monotonic_decreasing
    assert {"time", "survival", "se", "n_risk", "n_events"} <= set(km.table.columns)


def test_median_not_reached_is_infinite():
    times = np.full(20, BUDGET)
    events = np.zeros(20, bool)
    events[:3] = True
    times[:3] = [100, 200, 300]
    med = censored_median(times, events)
    assert not med.reached and med.median == np.inf and med.ci_high == np.inf
    none = censored_median(np.full(5, BUDGET), np.zeros(5))
    assert none.median == np.inf and none.n_events == 0


def test_events_must_be_binary():
    with pytest.raises(ValueError, match="0/1"):
        kaplan_meier([1, 2, 3], [0, 1, 2])
    with pytest.raises(ValueError, match="same length"):
        kaplan_meier([1, 2, 3], [0, 1])


def test_logrank_detects_planted_hazard_difference():
    t1, e1 = censored_exponential(100, SCALE, seed=2)
    t2, e2 = censored_exponential(100, SCALE / 2.5, seed=3)  # hazard 2.5x higher
    r = logrank(np.r_[t1, t2], np.r_[e1, e2], ["slow"] * 100 + ["fast"] * 100)
    assert r.p_value < 1e-4 and r.df == 1 and r.n_groups == 2


def test_logrank_null_rejection_rate_near_nominal():
    rejections = 0
    for seed in range(60):
        t, e = censored_exponential(60, SCALE, seed=100 + seed)
        groups = np.repeat([0, 1], 30)
        rejections += logrank(t, e, groups).p_value < 0.05
    assert rejections <= 8  # Binomial(60, 0.05): P(X > 8) < 0.01


def test_logrank_needs_two_groups_and_events():
    with pytest.raises(InsufficientDataError, match="2 groups"):
        logrank([1, 2, 3], [1, 1, 1], [0, 0, 0])
    with pytest.raises(InsufficientDataError, match="no events"):
        logrank([1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 1, 1])


def test_cox_recovers_planted_log_hazard_ratio():
    rng = np.random.default_rng(4)
    z = rng.uniform(-1, 1, 400)  # e.g. log10(weight decay)
    beta = 0.8  # higher z -> higher hazard -> earlier grokking
    t = rng.exponential(SCALE * np.exp(-beta * z))
    times, events = np.minimum(t, BUDGET), t <= BUDGET
    r = cox_slope(times, events, z)
    assert r.ci_low < beta < r.ci_high
    assert r.log_hr > 0 and r.p_value < 1e-6
    assert r.hazard_ratio == pytest.approx(np.exp(r.log_hr))
    null = cox_slope(times, events, rng.normal(size=400))
    assert null.ci_low < 0 < null.ci_high


def test_cox_errors():
    with pytest.raises(InsufficientDataError, match="does not vary"):
        cox_slope([1, 2, 3], [1, 1, 0], [5, 5, 5])
    with pytest.raises(InsufficientDataError, match="no events"):
        cox_slope([1, 2, 3], [0, 0, 0], [1, 2, 3])


def test_censored_loglog_slope_recovers_a_planted_exponent_that_naive_fits_miss():
    """t = 2000 / x * lognormal noise, censored at 8000: about a third of the runs never 'grok'."""
    import numpy as np
    from grokking_theories.stats import censored_loglog_slope, loglog_slope
    rng = np.random.default_rng(0)
    x = np.repeat([0.1, 0.2, 0.4, 0.8, 1.6], 8)
    t = 2000 / x * np.exp(rng.normal(0, 0.3, len(x)))
    events = t < 8000
    observed = np.minimum(t, 8000)
    assert 0.2 < (~events).mean() < 0.5
    fit = censored_loglog_slope(x, observed, events)
    assert fit.converged and fit.n_censored == int((~events).sum())
    assert fit.ci_low < -1 < fit.ci_high and fit.ci_high < -0.7
    naive = loglog_slope(x[events], observed[events])  # dropping censored runs flattens the law
    budget_as_time = loglog_slope(x, observed)
    assert budget_as_time.slope > -0.8 and abs(budget_as_time.slope + 1) > abs(fit.slope + 1)
    assert abs(naive.slope + 1) > abs(fit.slope + 1)


def test_censored_loglog_slope_coverage_over_draws():
    """The 95 % interval covers the planted exponent in most of 60 seeded draws (Wald, so allow 85 %)."""
    import numpy as np
    from grokking_theories.stats import censored_loglog_slope
    covered = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        x = np.repeat([0.1, 0.3, 1.0, 3.0], 6)
        t = 500 * x ** -0.5 * np.exp(rng.normal(0, 0.4, len(x)))
        fit = censored_loglog_slope(x, np.minimum(t, 1200), t < 1200)
        covered += fit.ci_low <= -0.5 <= fit.ci_high
    assert covered >= 51


def test_censored_loglog_slope_needs_events():
    import numpy as np
    import pytest
    from grokking_theories.stats import InsufficientDataError, censored_loglog_slope
    with pytest.raises(InsufficientDataError, match="needs >= 3 observed times"):
        censored_loglog_slope([1, 2, 3], [10, 10, 10], [False, False, True])
