"""Hypothesis tests the theory predictions are decided with.

* :func:`tost` -- equivalence ("no effect within +-delta"), the honest way to
  *support* a null-effect prediction instead of reading p > 0.05 as evidence.
* :func:`peak_prominence_test` -- non-monotonicity (double descent, Goldilocks
  zone): an interior maximum that stands out from both ends beyond seed noise.
* :func:`lead_lag` -- does event A precede event B in the same run (e.g.
  Fourier-circuit formation before the test-accuracy jump), paired by seed.
* :func:`holm` -- family-wise correction across predictions.
"""
from __future__ import annotations

import gc
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttost_ind, ttost_paired

from ._common import InsufficientDataError, as_1d_float, check_same_length
from .resampling import DEFAULT_RESAMPLES, BootstrapCI, _scipy_bootstrap, bootstrap_ci

__all__ = [
    "TostResult",
    "tost",
    "PeakResult",
    "peak_prominence_test",
    "LeadLagResult",
    "lead_lag",
    "holm",
]


# ----------------------------------------------------------------------------
# equivalence
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TostResult:
    """Two one-sided tests (TOST) for equivalence.

    Attributes
    ----------
    p_value : float
        TOST p-value: the larger of the two one-sided p-values.
    equivalent : bool
        ``p_value < alpha``: the mean (or mean difference) lies within
        ``(low, high)`` at level alpha.
    estimate : float
        Mean of ``x`` (one sample) or mean difference ``x - y``.
    ci_low, ci_high : float
        ``1 - 2 alpha`` confidence interval of ``estimate``; equivalence at
        level alpha is the same as this interval lying inside ``(low, high)``.
    low, high : float
        Equivalence margins.
    alpha : float
    n : int
        Observations (pairs for paired, total for two samples).
    kind : str
        'one-sample', 'paired' or 'independent'.
    """

    p_value: float
    equivalent: bool
    estimate: float
    ci_low: float
    ci_high: float
    low: float
    high: float
    alpha: float
    n: int
    kind: str


def tost(x, low: float, high: float, y=None, *, paired: bool = False, alpha: float = 0.05) -> TostResult:
    """Equivalence test: is the mean of ``x`` (or of ``x - y``) inside ``(low, high)``?

    Parameters
    ----------
    x : array_like
        Sample (e.g. per-seed log-slopes, or one arm of a comparison).
    low, high : float
        Equivalence margins, ``low < high``, fixed before seeing the data.
    y : array_like, optional
        Second sample. Without it the one-sample TOST of ``mean(x)`` is done
        (statsmodels ``DescrStatsW.ttost_mean``).
    paired : bool
        With ``y``: paired TOST (``ttost_paired``) instead of the pooled
        independent-samples TOST (``ttost_ind``).
    alpha : float
        Level.

    Returns
    -------
    TostResult

    Raises
    ------
    InsufficientDataError
        Fewer than 2 finite observations in a sample.
    """
    if not low < high:
        raise ValueError(f"need low < high, got low={low}, high={high}")
    xa = as_1d_float(x, "x")
    if y is None:
        xa = xa[np.isfinite(xa)]
        if xa.size < 2:
            raise InsufficientDataError(f"tost needs >= 2 finite values, got {xa.size}")
        d = DescrStatsW(xa)
        p, _, _ = d.ttost_mean(low, high)
        lo, hi = d.tconfint_mean(alpha=2 * alpha)
        return TostResult(float(p), bool(p < alpha), float(d.mean), float(lo), float(hi), low, high, alpha,
                          int(xa.size), "one-sample")
    ya = as_1d_float(y, "y")
    if paired:
        check_same_length(x=xa, y=ya)
        keep = np.isfinite(xa) & np.isfinite(ya)
        xa, ya = xa[keep], ya[keep]
        if xa.size < 2:
            raise InsufficientDataError(f"paired tost needs >= 2 finite pairs, got {xa.size}")
        p, _, _ = ttost_paired(xa, ya, low, high)
        d = DescrStatsW(xa - ya)
        lo, hi = d.tconfint_mean(alpha=2 * alpha)
        return TostResult(float(p), bool(p < alpha), float(d.mean), float(lo), float(hi), low, high, alpha,
                          int(xa.size), "paired")
    xa, ya = xa[np.isfinite(xa)], ya[np.isfinite(ya)]
    if xa.size < 2 or ya.size < 2:
        raise InsufficientDataError(f"tost needs >= 2 finite values per sample, got {xa.size} and {ya.size}")
    p, _, _ = ttost_ind(xa, ya, low, high, usevar="pooled")
    cm = CompareMeans(DescrStatsW(xa), DescrStatsW(ya))
    lo, hi = cm.tconfint_diff(alpha=2 * alpha, usevar="pooled")
    return TostResult(float(p), bool(p < alpha), float(xa.mean() - ya.mean()), float(lo), float(hi), low, high,
                      alpha, int(xa.size + ya.size), "independent")


# ----------------------------------------------------------------------------
# non-monotonicity
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PeakResult:
    """Interior-peak test of a seed-averaged curve.

    Attributes
    ----------
    x_peak : float
        x of the interior maximum of the seed-mean curve.
    peak_index : int
        Its index in the sorted x.
    prominence : float
        ``max(interior mean) - max(mean at the two ends)``; positive when an
        interior point is above both ends.
    ci_low, ci_high : float
        Bootstrap-over-seeds confidence interval of the prominence (the peak
        location is re-selected in every resample).
    p_value : float
        Valid one-sided p-value of "some interior point is above both ends":
        for each interior point the larger of the two paired one-sided t-test
        p-values against the ends (intersection-union test), the smallest of
        those times the number of interior points (Bonferroni over the
        data-chosen peak location).
    bootstrap_p : float
        ``(1 + #{resampled prominence <= 0}) / (B + 1)``; descriptive only
        (anticonservative with few seeds, see :func:`peak_prominence_test`).
    significant : bool
        ``ci_low > 0`` *and* ``p_value < alpha``.
    alpha : float
    n_seeds, n_x : int
    method : str
        Bootstrap interval method used.
    """

    x_peak: float
    peak_index: int
    prominence: float
    ci_low: float
    ci_high: float
    p_value: float
    bootstrap_p: float
    significant: bool
    alpha: float
    n_seeds: int
    n_x: int
    method: str


def _prominence(curve: np.ndarray) -> tuple[float, int]:
    interior = curve[1:-1]
    i = int(np.nanargmax(interior))
    return float(interior[i] - max(curve[0], curve[-1])), i + 1


def _iut_peak_p(Y: np.ndarray) -> float:
    """Bonferroni-over-location intersection-union p-value for an interior peak.

    Point i is a peak above both ends iff mu_i > mu_0 AND mu_i > mu_last; an
    intersection-union test rejects that conjunction's null at level alpha
    when *both* one-sided tests do, so its p-value is the larger of the two.
    The peak location is chosen by the data, hence the Bonferroni factor.
    """
    n_interior = Y.shape[1] - 2
    p_min = 1.0
    for i in range(1, Y.shape[1] - 1):
        p_pair = []
        for end in (0, Y.shape[1] - 1):
            d = Y[:, i] - Y[:, end]
            d = d[np.isfinite(d)]
            if d.size < 2:
                p_pair.append(1.0)
            elif np.ptp(d) == 0:
                # No seed noise at all: the sign of the constant difference decides.
                p_pair.append(0.0 if d[0] > 0 else 1.0)
            else:
                p_pair.append(float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue))
        p_min = min(p_min, max(p_pair))
    return float(min(1.0, n_interior * p_min))


def peak_prominence_test(
    x,
    y_by_seed,
    *,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = 0,
) -> PeakResult:
    """Does the seed-mean curve have an interior maximum above both ends beyond seed noise?

    Parameters
    ----------
    x : array_like, shape (n_x,)
        Swept knob (e.g. width, or the fixed weight norm); sorted here.
    y_by_seed : array_like, shape (n_seeds, n_x)
        The measured quantity for each seed (row) at each x (column), e.g.
        test loss, or ``-log10 t_grok`` to look for a Goldilocks speed-up.
        Row i should be the same seed at every x (paired differences); NaN
        entries (missing runs) are ignored.
    alpha : float
        One-sided level of the test.
    confidence : float
        Two-sided level of the bootstrap interval of the prominence.
    n_resamples : int
    seed : int or None
        Resampling seed.

    Returns
    -------
    PeakResult

    Raises
    ------
    InsufficientDataError
        Fewer than 3 x values (no interior), fewer than 2 seeds, or an x with
        no finite value.

    Notes
    -----
    The effect size is the prominence with a bootstrap-over-seeds interval
    (seeds are the resampling unit: runs sharing a seed are not
    independent). The bootstrap *alone* is not a valid test here: the
    prominence is a maximum over noisy means, and on a flat curve the
    percentile/BCa lower limit exceeds 0 far more often than nominal with few
    seeds (measured: ~33 % / 19 % / 7 % false positives at 3 / 5 / 10 seeds
    for a nominal 2.5 %). ``significant`` therefore also requires the
    conservative intersection-union t-test p-value (``p_value``) to be below
    ``alpha``. A monotone curve has prominence < 0, so it is never
    significant.
    """
    xa = as_1d_float(x, "x")
    Y = np.asarray(y_by_seed, dtype=float)
    if Y.ndim == 1:
        Y = Y[None, :]
    if Y.ndim != 2 or Y.shape[1] != xa.size:
        raise ValueError(f"y_by_seed must have shape (n_seeds, {xa.size}), got {Y.shape}")
    n_seeds, n_x = Y.shape
    if n_x < 3:
        raise InsufficientDataError(f"peak_prominence_test needs >= 3 x values, got {n_x}")
    if n_seeds < 2:
        raise InsufficientDataError(f"peak_prominence_test needs >= 2 seeds to measure seed noise, got {n_seeds}")
    if (~np.isfinite(Y)).all(axis=0).any():
        bad = xa[(~np.isfinite(Y)).all(axis=0)]
        raise InsufficientDataError(f"no finite value at x = {bad.tolist()}")
    order = np.argsort(xa, kind="stable")
    xa, Y = xa[order], Y[:, order]

    def stat(idx):
        # Resample whole seeds (rows); cast because scipy may hand the indices back as floats.
        with warnings.catch_warnings():
            # 'Mean of empty slice' when a resample lost every seed at some x: handled via NaN below.
            warnings.simplefilter("ignore", RuntimeWarning)
            curve = np.nanmean(Y[np.asarray(idx, dtype=int)], axis=0)
        if not np.all(np.isfinite(curve)):
            return np.nan
        return _prominence(curve)[0]

    prom, peak = _prominence(np.nanmean(Y, axis=0))
    boot = _scipy_bootstrap((np.arange(n_seeds),), stat, prom, confidence, n_resamples, seed, "BCa", n_seeds)
    dist = boot.distribution[np.isfinite(boot.distribution)]
    boot_p = float((1 + np.sum(dist <= 0)) / (dist.size + 1))
    p = _iut_peak_p(Y)
    return PeakResult(
        x_peak=float(xa[peak]),
        peak_index=peak,
        prominence=prom,
        ci_low=boot.ci_low,
        ci_high=boot.ci_high,
        p_value=p,
        bootstrap_p=boot_p,
        significant=bool(boot.ci_low > 0 and p < alpha),
        alpha=alpha,
        n_seeds=n_seeds,
        n_x=n_x,
        method=boot.method,
    )


# ----------------------------------------------------------------------------
# lead / lag
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadLagResult:
    """Paired comparison of two event times across seeds.

    Lead is ``t_b - t_a``: positive when A happens before B.

    Attributes
    ----------
    median_lead : float
        Median of ``t_b - t_a`` (in log10 steps when ``log=True``).
    ci_low, ci_high : float
        Bootstrap interval of the median lead.
    wilcoxon_statistic, wilcoxon_p : float
        Wilcoxon signed-rank test of a zero-centred lead (two-sided); p = 1
        when every lead is 0.
    sign_p : float
        Exact two-sided sign test (binomial, ties dropped).
    n_pairs, n_a_first, n_b_first, n_ties : int
    log : bool
        Whether times were compared as log10.
    """

    median_lead: float
    ci_low: float
    ci_high: float
    wilcoxon_statistic: float
    wilcoxon_p: float
    sign_p: float
    n_pairs: int
    n_a_first: int
    n_b_first: int
    n_ties: int
    log: bool

    @property
    def fraction_a_first(self) -> float:
        """Share of untied pairs in which A came first."""
        m = self.n_a_first + self.n_b_first
        return self.n_a_first / m if m else float("nan")


def lead_lag(
    t_a,
    t_b,
    *,
    log: bool = False,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = 0,
) -> LeadLagResult:
    """Does event A precede event B? Paired by seed.

    Parameters
    ----------
    t_a, t_b : array_like
        Event times per seed, aligned (``t_a[i]`` and ``t_b[i]`` from the
        same run/seed). Pairs with a non-finite entry are dropped.
    log : bool
        Compare log10 times (leads as ratios), natural when times span
        decades; requires positive times.
    confidence : float
        Level of the bootstrap interval of the median lead.
    n_resamples : int
    seed : int or None

    Returns
    -------
    LeadLagResult

    Raises
    ------
    InsufficientDataError
        Fewer than 2 usable pairs.

    Notes
    -----
    Censored times are not handled: drop pairs where either time is censored
    (or, if only B is censored after an observed A, count it as A-first by
    hand in a sign test).
    """
    a = as_1d_float(t_a, "t_a")
    b = as_1d_float(t_b, "t_b")
    check_same_length(t_a=a, t_b=b)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if log:
        if (a <= 0).any() or (b <= 0).any():
            raise ValueError("lead_lag(log=True) needs positive times")
        a, b = np.log10(a), np.log10(b)
    n = int(a.size)
    if n < 2:
        raise InsufficientDataError(f"lead_lag needs >= 2 finite pairs, got {n}")
    d = b - a
    n_a_first, n_b_first = int((d > 0).sum()), int((d < 0).sum())
    n_ties = n - n_a_first - n_b_first
    if n_a_first + n_b_first == 0:
        w_stat, w_p, sign_p = 0.0, 1.0, 1.0
    else:
        w = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        w_stat, w_p = float(w.statistic), float(w.pvalue)
        sign_p = float(stats.binomtest(n_a_first, n_a_first + n_b_first, 0.5).pvalue)
    ci: BootstrapCI = bootstrap_ci(d, np.median, confidence, n_resamples, seed)
    return LeadLagResult(
        median_lead=float(np.median(d)),
        ci_low=ci.ci_low,
        ci_high=ci.ci_high,
        wilcoxon_statistic=w_stat,
        wilcoxon_p=w_p,
        sign_p=sign_p,
        n_pairs=n,
        n_a_first=n_a_first,
        n_b_first=n_b_first,
        n_ties=n_ties,
        log=log,
    )


# ----------------------------------------------------------------------------
# multiplicity
# ----------------------------------------------------------------------------


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels ``multipletests(method='holm')``).

    Parameters
    ----------
    pvalues : array_like
        Raw p-values. NaN entries (tests not run) are kept as NaN and do not
        count towards the family size.

    Returns
    -------
    ndarray
        Adjusted p-values in the input order, capped at 1.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p[ok][(p[ok] < 0) | (p[ok] > 1)].tolist()}")
    if ok.any():
        # statsmodels' Holm branch ends in gc.collect(), a full collection of the process's heap: ~0.3 s a call
        # with a study's long table in memory. Freezing the heap for the call (gc.freeze: the objects move to
        # the permanent generation, which collections skip; gc.unfreeze moves them back) leaves it the objects
        # made during the call; nothing else about collection changes.
        gc.freeze()
        try:
            out[ok] = multipletests(p[ok], method="holm")[1]
        finally:
            gc.unfreeze()
    return out
