"""Survival analysis of transition times, where the budget censors runs.

A run that has not grokked by its step budget has an unknown, *later*
grokking time. Averaging the observed times ignores those runs and is biased
low; these wrappers around :mod:`statsmodels.duration` (Kaplan-Meier,
log-rank, Cox proportional hazards) use the censoring correctly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.duration.hazard_regression import PHReg
from statsmodels.duration.survfunc import SurvfuncRight, survdiff

from ._common import InsufficientDataError, as_1d_float, as_events, check_same_length

__all__ = [
    "KaplanMeier",
    "kaplan_meier",
    "CensoredMedian",
    "censored_median",
    "LogrankResult",
    "logrank",
    "CoxResult",
    "cox_slope",
    "CensoredSlopeResult",
    "censored_loglog_slope",
]


def _clean(times, events, *extra, names=()):
    """Validate times/events (+ aligned extras), drop non-finite times."""
    t = as_1d_float(times, "times")
    e = as_events(events)
    arrays = {"times": t, "events": e}
    for name, arr in zip(names, extra):
        arrays[name] = arr
    check_same_length(**arrays)
    keep = np.isfinite(t)
    if (t[keep] < 0).any():
        raise ValueError("times must be >= 0")
    return (t[keep], e[keep], *(np.asarray(a)[keep] for a in extra))


@dataclass(frozen=True)
class CensoredMedian:
    """Kaplan-Meier median of right-censored times.

    Attributes
    ----------
    median : float
        Smallest time with estimated survival < 0.5; ``inf`` when the
        survival curve never drops below 0.5 (more than half the runs
        censored before the event: the median exceeds the follow-up).
    ci_low, ci_high : float
        ``1 - alpha`` confidence interval (statsmodels' inverted cloglog
        test); ``ci_high`` is ``inf`` when unbounded by the data, ``ci_low``
        NaN when not determinable.
    reached : bool
        False when the median is not reached.
    n, n_events : int
        Runs and observed events.
    """

    median: float
    ci_low: float
    ci_high: float
    reached: bool
    n: int
    n_events: int


@dataclass(frozen=True)
class KaplanMeier:
    """Kaplan-Meier estimate.

    Attributes
    ----------
    table : DataFrame
        One row per distinct event time: ``time``, ``survival``, ``se``,
        ``n_risk``, ``n_events``.
    median : CensoredMedian
        Median with confidence interval.
    survfunc : statsmodels SurvfuncRight or None
        The underlying statsmodels object (None when there are no events).
    """

    table: pd.DataFrame
    median: CensoredMedian
    survfunc: object

    def survival_at(self, t: float) -> float:
        """Estimated survival probability S(t) (right-continuous step function)."""
        times = self.table["time"].to_numpy()
        idx = np.searchsorted(times, t, side="right") - 1
        return 1.0 if idx < 0 else float(self.table["survival"].iloc[idx])


def kaplan_meier(times, events, *, alpha: float = 0.05) -> KaplanMeier:
    """Kaplan-Meier survival curve via :class:`statsmodels.duration.SurvfuncRight`.

    Parameters
    ----------
    times : array_like
        Event time if observed, censoring time otherwise. Non-finite entries
        are dropped.
    events : array_like of bool/0/1
        1 (True) = event observed, 0 = right-censored.
    alpha : float
        Level for the median's confidence interval.

    Returns
    -------
    KaplanMeier

    Raises
    ------
    InsufficientDataError
        If no finite time is given.
    """
    t, e = _clean(times, events)
    if t.size == 0:
        raise InsufficientDataError("kaplan_meier: no finite times")
    n, n_events = int(t.size), int(e.sum())
    if n_events == 0:
        # statsmodels returns empty arrays here; spell the answer out: S(t) = 1 throughout.
        table = pd.DataFrame({"time": [], "survival": [], "se": [], "n_risk": [], "n_events": []})
        med = CensoredMedian(float("inf"), float("nan"), float("inf"), False, n, 0)
        return KaplanMeier(table, med, None)
    sf = SurvfuncRight(t, e)
    table = pd.DataFrame(
        {
            "time": sf.surv_times,
            "survival": sf.surv_prob,
            "se": sf.surv_prob_se,
            "n_risk": sf.n_risk,
            "n_events": sf.n_events,
        }
    )
    median = sf.quantile(0.5)
    reached = bool(np.isfinite(median))
    lo, hi = sf.quantile_ci(0.5, alpha=alpha)
    # statsmodels reports "not reached" as NaN; for an upper limit that means unbounded.
    med = CensoredMedian(
        median=float(median) if reached else float("inf"),
        ci_low=float(lo),
        ci_high=float(hi) if np.isfinite(hi) else float("inf"),
        reached=reached,
        n=n,
        n_events=n_events,
    )
    return KaplanMeier(table, med, sf)


def censored_median(times, events, *, alpha: float = 0.05) -> CensoredMedian:
    """Kaplan-Meier median of right-censored times (see :class:`CensoredMedian`)."""
    return kaplan_meier(times, events, alpha=alpha).median


@dataclass(frozen=True)
class LogrankResult:
    """Log-rank test of equal survival across groups.

    Attributes
    ----------
    statistic : float
        Chi-square statistic.
    p_value : float
    df : int
        ``n_groups - 1``.
    n, n_events, n_groups : int
    """

    statistic: float
    p_value: float
    df: int
    n: int
    n_events: int
    n_groups: int


def logrank(times, events, groups) -> LogrankResult:
    """Log-rank test via :func:`statsmodels.duration.survdiff`.

    Parameters
    ----------
    times, events : array_like
        As in :func:`kaplan_meier`.
    groups : array_like
        Group label per run (any hashable values).

    Returns
    -------
    LogrankResult

    Raises
    ------
    InsufficientDataError
        Fewer than two groups, or no event at all (the test is undefined).
    """
    g_raw = np.asarray(groups)
    t, e, g = _clean(times, events, g_raw, names=("groups",))
    labels, codes = np.unique(g, return_inverse=True)
    if len(labels) < 2:
        raise InsufficientDataError(f"logrank needs >= 2 groups, got {len(labels)}: {labels.tolist()}")
    if e.sum() == 0:
        raise InsufficientDataError("logrank: no events observed in any group")
    stat, p = survdiff(t, e, codes)
    return LogrankResult(float(stat), float(p), len(labels) - 1, int(t.size), int(e.sum()), len(labels))


@dataclass(frozen=True)
class CoxResult:
    """Cox proportional-hazards fit with one covariate.

    Attributes
    ----------
    log_hr, se : float
        Log hazard ratio per unit of the covariate and its standard error.
        Positive: larger covariate -> events happen sooner.
    ci_low, ci_high : float
        ``1 - alpha`` Wald interval of ``log_hr``.
    p_value : float
        Wald test of ``log_hr == 0``.
    hazard_ratio : float
        ``exp(log_hr)``.
    n, n_events : int
    """

    log_hr: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    hazard_ratio: float
    n: int
    n_events: int


def cox_slope(times, events, covariate, *, alpha: float = 0.05, ties: str = "efron") -> CoxResult:
    """Cox regression of censored times on one covariate (statsmodels PHReg).

    Parameters
    ----------
    times, events : array_like
        As in :func:`kaplan_meier`.
    covariate : array_like
        One numeric covariate per run (e.g. ``log10(weight_decay)``).
    alpha : float
        Level of the confidence interval.
    ties : {'efron', 'breslow'}
        Tie handling. Efron by default: transition times sit on a logging
        grid, so ties are common and Breslow's approximation is biased there.

    Returns
    -------
    CoxResult

    Raises
    ------
    InsufficientDataError
        No events, or a covariate without variation.
    """
    cov_raw = as_1d_float(covariate, "covariate")
    t, e, c = _clean(times, events, cov_raw, names=("covariate",))
    keep = np.isfinite(c)
    t, e, c = t[keep], e[keep], c[keep].astype(float)
    if e.sum() == 0:
        raise InsufficientDataError("cox_slope: no events observed")
    if c.size < 2 or np.ptp(c) == 0:
        raise InsufficientDataError("cox_slope: the covariate does not vary")
    res = PHReg(t, c[:, None], status=e, ties=ties).fit()
    ci = np.asarray(res.conf_int(alpha=alpha))
    log_hr = float(res.params[0])
    return CoxResult(
        log_hr=log_hr,
        se=float(res.bse[0]),
        ci_low=float(ci[0, 0]),
        ci_high=float(ci[0, 1]),
        p_value=float(res.pvalues[0]),
        hazard_ratio=float(np.exp(log_hr)),
        n=int(t.size),
        n_events=int(e.sum()),
    )


# ----------------------------------------------------------------------------
# Censored power law: log-normal accelerated-failure-time regression
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CensoredSlopeResult:
    """Fit of ``log10 T = intercept + slope * log10 x + sigma * eps`` (eps ~ N(0, 1)) with right-censoring.

    Attributes
    ----------
    slope, slope_se : float
        Exponent of the power law and its standard error (inverse Hessian at the MLE).
    intercept, sigma : float
    ci_low, ci_high : float
        Wald ``1 - alpha`` interval of the slope.
    p_values : dict[float, float]
        Two-sided Wald p-value of ``slope == null`` for each null value.
    n, n_censored : int
    converged : bool
    """

    slope: float
    slope_se: float
    intercept: float
    sigma: float
    ci_low: float
    ci_high: float
    alpha: float
    p_values: dict
    n: int
    n_censored: int
    converged: bool

    def p_value(self, null: float) -> float:
        return self.p_values[float(null)]


def censored_loglog_slope(x, times, events, *, null_values=(-1.0, 0.0), alpha: float = 0.05) -> CensoredSlopeResult:
    """Power-law exponent of times on ``x`` when some times are right-censored.

    A log-normal accelerated-failure-time model (a Tobit regression on log
    time), fitted by maximum likelihood with statsmodels'
    ``GenericLikelihoodModel``: an observed time contributes its density, a
    censored one the probability of a later time. Dropping censored runs, or
    using their budget as if it were their time, biases the slope toward 0.

    Parameters
    ----------
    x : array_like
        Positive covariate (e.g. weight decay).
    times : array_like
        Positive times (event time, or the censoring time).
    events : array_like of bool
        True where the time was observed, False where censored.
    null_values : tuple of float
        Slopes to test against.
    alpha : float
        Level of the interval.

    Raises
    ------
    InsufficientDataError
        Fewer than 3 observed events, or fewer than 2 distinct x among them.
    """
    from scipy.stats import norm
    from statsmodels.base.model import GenericLikelihoodModel

    xa = as_1d_float(x, "x")
    ta = as_1d_float(times, "times")
    ev = as_events(events).astype(bool)
    check_same_length(x=xa, times=ta, events=ev)
    keep = np.isfinite(xa) & np.isfinite(ta) & (xa > 0) & (ta > 0)
    xa, ta, ev = xa[keep], ta[keep], ev[keep]
    if ev.sum() < 3 or len(np.unique(xa[ev])) < 2:
        raise InsufficientDataError(f"censored slope needs >= 3 observed times at >= 2 x values; got {int(ev.sum())} "
                                    f"at {len(np.unique(xa[ev]))}")
    lx, ly = np.log10(xa), np.log10(ta)

    class _AFT(GenericLikelihoodModel):
        def loglikeobs(self, params):
            b0, b1, log_sigma = params
            sigma = np.exp(log_sigma)
            z = (ly - b0 - b1 * lx) / sigma
            return np.where(ev, norm.logpdf(z) - log_sigma, norm.logsf(z))

    exog = np.column_stack([np.ones_like(lx), lx])
    model = _AFT(ly, exog, extra_params_names=["log_sigma"])
    # start from OLS on the observed times
    b1, b0 = np.polyfit(lx[ev], ly[ev], 1) if len(np.unique(lx[ev])) > 1 else (0.0, ly[ev].mean())
    resid = ly[ev] - b0 - b1 * lx[ev]
    start = np.array([b0, b1, np.log(max(resid.std(), 0.05))])
    import warnings
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # reported through ``converged`` instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = model.fit(start_params=start, method="bfgs", maxiter=2000, disp=False)
    params, cov = np.asarray(fit.params), np.asarray(fit.cov_params())
    se = float(np.sqrt(cov[1, 1])) if np.isfinite(cov[1, 1]) and cov[1, 1] > 0 else float("nan")
    z = norm.ppf(1 - alpha / 2)
    slope = float(params[1])
    pvals = {float(v): float(2 * norm.sf(abs(slope - v) / se)) if se > 0 else float("nan") for v in null_values}
    converged = bool(fit.mle_retvals.get("converged", True))
    return CensoredSlopeResult(slope, se, float(params[0]), float(np.exp(params[2])), slope - z * se, slope + z * se,
                               alpha, pvals, int(len(ta)), int((~ev).sum()), converged)
