"""Bootstrap confidence intervals over seeds (thin layer on scipy.stats.bootstrap)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

from ._common import InsufficientDataError

__all__ = ["BootstrapCI", "bootstrap_ci", "DEFAULT_RESAMPLES"]

#: Enough for stable 95 % percentile/BCa limits while keeping a test suite fast.
DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class BootstrapCI:
    """Bootstrap confidence interval of a statistic.

    Attributes
    ----------
    estimate : float
        The statistic on the original sample.
    ci_low, ci_high : float
        Interval limits.
    standard_error : float
        Standard deviation of the bootstrap distribution.
    confidence : float
    n : int
        Sample size.
    method : str
        'BCa', 'percentile' or 'basic' -- the one actually used ('percentile'
        when BCa was degenerate, see :func:`bootstrap_ci`; 'constant' when all
        values are equal).
    distribution : ndarray
        The bootstrap distribution (empty for 'constant').
    """

    estimate: float
    ci_low: float
    ci_high: float
    standard_error: float
    confidence: float
    n: int
    method: str
    distribution: np.ndarray

    def excludes(self, value: float = 0.0) -> bool:
        """True when ``value`` lies outside ``[ci_low, ci_high]``."""
        return bool(value < self.ci_low or value > self.ci_high)


def bootstrap_ci(
    values,
    statistic: Callable = np.mean,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = 0,
    *,
    method: str = "BCa",
) -> BootstrapCI:
    """Bootstrap CI of ``statistic(values)`` via :func:`scipy.stats.bootstrap`.

    Parameters
    ----------
    values : array_like
        1-D sample (e.g. one number per seed). Non-finite entries are dropped.
    statistic : callable
        ``statistic(sample) -> float``. If it accepts an ``axis`` keyword
        (like ``np.mean``/``np.median``) scipy vectorises the resampling.
    confidence : float
        Two-sided confidence level.
    n_resamples : int
        Bootstrap resamples.
    seed : int or None
        Seed of the resampling generator; fixed by default so reports are
        reproducible.
    method : {'BCa', 'percentile', 'basic'}
        scipy's interval method.

    Returns
    -------
    BootstrapCI

    Raises
    ------
    InsufficientDataError
        (a ValueError) if fewer than 2 finite values are given: one value has
        no sampling variability to resample.

    Notes
    -----
    With all values equal the interval is the point itself (method
    'constant'), as the bootstrap distribution is degenerate. When BCa
    yields NaN limits (degenerate jackknife, typical for medians of a few
    tied values) the percentile interval of the same resamples is reported
    instead and ``method`` says so. Bootstrap intervals from fewer than ~8
    seeds are too narrow; treat them as descriptive.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n < 2:
        raise InsufficientDataError(f"bootstrap_ci needs >= 2 finite values, got {n}")
    estimate = float(statistic(arr))
    if np.ptp(arr) == 0:
        return BootstrapCI(estimate, estimate, estimate, 0.0, confidence, n, "constant", np.empty(0))
    return _scipy_bootstrap((arr,), statistic, estimate, confidence, n_resamples, seed, method, n)


def _scipy_bootstrap(data, statistic, estimate, confidence, n_resamples, seed, method, n) -> BootstrapCI:
    """Run scipy.stats.bootstrap with a BCa->percentile fallback on NaN limits."""
    with warnings.catch_warnings():
        # DegenerateDataWarning (BCa NaN) is handled by the fallback below.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            data,
            statistic,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method=method,
            rng=np.random.default_rng(seed),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    used = method
    if not (np.isfinite(low) and np.isfinite(high)):
        tail = (1 - confidence) / 2
        low, high = (float(q) for q in np.nanquantile(dist, [tail, 1 - tail]))
        used = "percentile"
    return BootstrapCI(estimate, low, high, float(np.nanstd(dist, ddof=1)), confidence, n, used, dist)
