"""Power-law fits: ordinary least squares of log y on log x.

Scaling predictions ("t_grok ~ 1/weight_decay", "delay independent of width")
are statements about a log-log slope, so the slope, its confidence interval
and t-tests against the theory's exponents are the primary quantities.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import statsmodels.api as sm

from ._common import InsufficientDataError, as_1d_float, check_same_length

__all__ = ["SlopeResult", "loglog_slope"]


@dataclass(frozen=True)
class SlopeResult:
    """OLS fit of ``log10 y = intercept + slope * log10 x``.

    Attributes
    ----------
    slope, slope_se : float
        Exponent of the power law and its standard error.
    intercept, intercept_se : float
        log10 of the prefactor and its standard error.
    ci_low, ci_high : float
        ``1 - alpha`` two-sided t confidence interval of the slope.
    alpha : float
        Level used for the interval.
    p_values : dict[float, float]
        Two-sided p-value of the t-test ``slope == null`` for each null value.
    r2 : float
        Coefficient of determination on the log scale.
    n : int
        Points used.
    n_dropped : int
        Points dropped because x or y was <= 0 or not finite.
    df_resid : float
        Residual degrees of freedom (``n - 2``).
    """

    slope: float
    slope_se: float
    intercept: float
    intercept_se: float
    ci_low: float
    ci_high: float
    alpha: float
    p_values: dict = field(default_factory=dict)
    r2: float = float("nan")
    n: int = 0
    n_dropped: int = 0
    df_resid: float = float("nan")

    def p_value(self, null: float) -> float:
        """p-value of ``slope == null`` (must be one of the nulls fitted)."""
        try:
            return self.p_values[float(null)]
        except KeyError:
            raise KeyError(f"null value {null} not tested; tested {sorted(self.p_values)}") from None

    def summary(self) -> str:
        """Fixed-width text block in the style of statsmodels summaries."""
        w = 66
        conf = f"{100 * (1 - self.alpha):.0f}%"
        lines = [
            "=" * w,
            f"{'Log-log OLS: log10 y = a + b log10 x':<44}{'n:':>10}{self.n:>12d}",
            f"{'':<44}{'dropped:':>10}{self.n_dropped:>12d}",
            f"{'':<44}{'R-squared:':>10}{self.r2:>12.4f}",
            "-" * w,
            f"{'':<12}{'coef':>10}{'std err':>10}{'[' + conf:>12}{'CI]':>12}",
            f"{'slope b':<12}{self.slope:>10.4f}{self.slope_se:>10.4f}{self.ci_low:>12.4f}{self.ci_high:>12.4f}",
            f"{'intercept a':<12}{self.intercept:>10.4f}{self.intercept_se:>10.4f}{'':>12}{'':>12}",
            "-" * w,
        ]
        for null, p in sorted(self.p_values.items()):
            lines.append(f"{'t-test slope = ' + format(null, 'g'):<44}{'p =':>10}{p:>12.4g}")
        lines.append("=" * w)
        return "\n".join(line.ljust(w) for line in lines)

    def __str__(self) -> str:  # print(result) shows the table
        return self.summary()


def loglog_slope(x, y, *, null_values=(-1.0, 0.0), alpha: float = 0.05) -> SlopeResult:
    """Slope of log10 y against log10 x by OLS, with CI and t-tests.

    Parameters
    ----------
    x, y : array_like
        Positive data (e.g. weight decay and grokking time). Pairs with
        ``x <= 0``, ``y <= 0`` or non-finite entries are dropped (logs are
        undefined there) and counted in ``n_dropped``.
    null_values : sequence of float
        Slopes to test against (two-sided t-tests); defaults to -1 (inverse
        proportionality) and 0 (no dependence).
    alpha : float
        The confidence interval has level ``1 - alpha``.

    Returns
    -------
    SlopeResult

    Raises
    ------
    InsufficientDataError
        (a ValueError) if fewer than 3 usable points remain, or x takes a
        single value (slope undefined).
    ValueError
        If x and y differ in length or ``alpha`` is not in (0, 1).

    Notes
    -----
    Censored y (runs that never grokked) must not be passed as if observed:
    they bias the slope towards 0. Drop them or use :func:`cox_slope`.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    xa = as_1d_float(x, "x")
    ya = as_1d_float(y, "y")
    check_same_length(x=xa, y=ya)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(xa) & np.isfinite(ya) & (xa > 0) & (ya > 0)
    n_dropped = int((~keep).sum())
    n = int(keep.sum())
    if n < 3:
        raise InsufficientDataError(
            f"loglog_slope needs >= 3 points with x > 0 and y > 0 (finite); "
            f"got {n} of {len(xa)} ({n_dropped} dropped for x <= 0, y <= 0 or non-finite)"
        )
    lx, ly = np.log10(xa[keep]), np.log10(ya[keep])
    if np.ptp(lx) == 0:
        raise InsufficientDataError(f"loglog_slope: x takes a single value ({xa[keep][0]}); slope undefined")
    res = sm.OLS(ly, sm.add_constant(lx, has_constant="add")).fit()
    ci = res.conf_int(alpha=alpha)
    p_values = {}
    for null in null_values:
        # t-test of R beta = q with R = [0, 1]: slope == null.
        tt = res.t_test((np.array([[0.0, 1.0]]), np.array([float(null)])))
        p_values[float(null)] = float(np.asarray(tt.pvalue).squeeze())
    return SlopeResult(
        slope=float(res.params[1]),
        slope_se=float(res.bse[1]),
        intercept=float(res.params[0]),
        intercept_se=float(res.bse[0]),
        ci_low=float(ci[1, 0]),
        ci_high=float(ci[1, 1]),
        alpha=float(alpha),
        p_values=p_values,
        r2=float(res.rsquared),
        n=n,
        n_dropped=n_dropped,
        df_resid=float(res.df_resid),
    )
