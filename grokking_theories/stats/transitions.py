"""Transition times and transition shapes from the tidy metric table.

A *transition time* is the first logged step at which a metric crosses a
threshold (no interpolation: the logging grid is the resolution we actually
have). A run that never crosses is right-censored at its last logged step for
that metric -- we only know the crossing, if any, happens later -- so every
time comes with a ``censored`` flag that the survival tools consume.

A *transition shape* is a logistic fit in log10(step), the natural axis for
grokking curves that span decades of training.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

from ..levels import FIT_ACC, GROK_ACC, HALF_ACC
from ._common import MEASUREMENT_COLUMNS, REQUIRED_COLUMNS, as_1d_float, check_same_length

Direction = Literal["above", "below"]

__all__ = [
    "Crossing",
    "first_crossing",
    "run_configs",
    "transition_times",
    "grokking_times",
    "SigmoidFit",
    "fit_sigmoid_logtime",
]


# ----------------------------------------------------------------------------
# threshold crossings
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Crossing:
    """First crossing of a threshold.

    Attributes
    ----------
    time : float
        Step of the first crossing, or the last logged step if the threshold
        was never crossed (then ``censored`` is True).
    censored : bool
        True when the threshold was never reached in the logged steps.
    """

    time: float
    censored: bool

    @property
    def event(self) -> bool:
        """True when the crossing was observed (``not censored``)."""
        return not self.censored


def _check_direction(direction: str) -> None:
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")


def first_crossing(steps, values, threshold: float, direction: Direction = "above") -> Crossing:
    """First logged step at which ``values`` reaches ``threshold``.

    Parameters
    ----------
    steps, values : array_like
        One run's logged steps and metric values (any order; sorted here).
    threshold : float
        Crossing level.
    direction : {'above', 'below'}
        'above': first step with ``value >= threshold`` (accuracies);
        'below': first step with ``value <= threshold`` (losses).

    Returns
    -------
    Crossing
        ``Crossing(time, censored)``. If the threshold is never reached the
        time is the last logged step with a finite value and ``censored`` is
        True.

    Raises
    ------
    ValueError
        If the arrays differ in length, ``direction`` is unknown, or there is
        no finite value at all (nothing to censor at).

    Notes
    -----
    NaN values (e.g. a diverged loss) never count as a crossing, and a run is
    censored at its last *finite* observation: after divergence we do not know
    what the metric would have done.
    """
    _check_direction(direction)
    s = as_1d_float(steps, "steps")
    v = as_1d_float(values, "values")
    check_same_length(steps=s, values=v)
    keep = np.isfinite(v) & np.isfinite(s)
    s, v = s[keep], v[keep]
    if s.size == 0:
        raise ValueError("first_crossing: no finite (step, value) pair to look at")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    hit = v >= threshold if direction == "above" else v <= threshold
    if hit.any():
        return Crossing(float(s[np.argmax(hit)]), False)
    return Crossing(float(s[-1]), True)


def _check_table(table: pd.DataFrame) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"tidy table lacks required column(s) {missing}; has {list(table.columns)}")


def run_configs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run with every column that is constant within the run.

    Parameters
    ----------
    table : DataFrame
        Tidy long-form table (``run_id``, ``status``, config columns, ``step``,
        ``metric``, ``value``).

    Returns
    -------
    DataFrame
        Indexed 0..n-1 with ``run_id`` first, then the per-run columns
        (``status`` and the flat config columns) in table order. Columns that
        vary within a run are left out (they are not config).
    """
    _check_table(table)
    candidates = [c for c in table.columns if c not in MEASUREMENT_COLUMNS and c != "run_id"]
    grouped = table.groupby("run_id", sort=True, dropna=False)
    if candidates:
        # dropna=False so a column that is None for some rows and set for others counts as varying.
        n_unique = grouped[candidates].nunique(dropna=False).max()
        constant = [c for c in candidates if n_unique[c] <= 1]
    else:
        constant = []
    out = grouped[constant].first() if constant else pd.DataFrame(index=grouped.size().index)
    # groupby.first() skips NaN; a column that is all-NaN in a run must stay NaN, which it does.
    return out.reset_index()


def transition_times(
    table: pd.DataFrame,
    metric: str = "test_acc",
    threshold: float = 0.99,
    direction: Direction = "above",
) -> pd.DataFrame:
    """Threshold-crossing time of ``metric`` for every run of a tidy table.

    Parameters
    ----------
    table : DataFrame
        Tidy long-form table.
    metric : str
        Metric name in the ``metric`` column.
    threshold : float
        Crossing level.
    direction : {'above', 'below'}
        See :func:`first_crossing`.

    Returns
    -------
    DataFrame
        One row per run that logged at least one finite value of ``metric``:
        ``run_id``, the per-run config columns (see :func:`run_configs`),
        ``time`` (float steps), ``censored`` (bool) and ``event``
        (``not censored``). Same semantics as :func:`first_crossing`.

    Warns
    -----
    UserWarning
        If some runs have no finite value of ``metric`` (they are left out:
        with no observation there is no censoring time either).

    Raises
    ------
    ValueError
        If no run logged ``metric`` at all.
    """
    _check_direction(direction)
    _check_table(table)
    out = _crossings(table, metric, threshold, direction)
    configs = run_configs(table)
    n_dropped = len(configs) - len(out)
    if n_dropped > 0:
        warnings.warn(
            f"transition_times: {n_dropped} run(s) have no finite {metric!r} value and are left out",
            stacklevel=2,
        )
    merged = configs.merge(out, on="run_id", how="inner")
    return merged[[*configs.columns, "time", "censored", "event"]].reset_index(drop=True)


def _crossings(table: pd.DataFrame, metric: str, threshold: float, direction: str) -> pd.DataFrame:
    """run_id, time, censored, event for runs with a finite value of ``metric`` (no config columns)."""
    sub = table.loc[table["metric"] == metric, ["run_id", "step", "value"]]
    sub = sub[np.isfinite(sub["value"].to_numpy(dtype=float))]
    if sub.empty:
        known = sorted(pd.unique(table["metric"]).tolist())
        raise ValueError(f"no finite values of metric {metric!r} in the table; metrics present: {known}")
    values = sub["value"].to_numpy(dtype=float)
    hit = values >= threshold if direction == "above" else values <= threshold
    # Vectorised equivalent of first_crossing per run: min step among hits, else max step.
    first_hit = sub.loc[hit].groupby("run_id")["step"].min()
    last_step = sub.groupby("run_id")["step"].max()
    fh = first_hit.reindex(last_step.index)
    out = pd.DataFrame({"run_id": last_step.index})
    out["time"] = fh.fillna(last_step).to_numpy(dtype=float)
    out["censored"] = fh.isna().to_numpy()
    out["event"] = ~out["censored"]
    return out


def grokking_times(
    table: pd.DataFrame,
    *,
    fit_threshold: float = FIT_ACC,
    grok_threshold: float = GROK_ACC,
    half_threshold: float = HALF_ACC,
) -> pd.DataFrame:
    """The standard grokking times of every run.

    Parameters
    ----------
    table : DataFrame
        Tidy long-form table with ``train_acc`` and ``test_acc`` metrics.
    fit_threshold, grok_threshold, half_threshold : float
        Levels for ``t_fit`` (train_acc), ``t_grok`` (test_acc) and
        ``t_grok50`` (test_acc).

    Returns
    -------
    DataFrame
        One row per run: ``run_id``, config columns, then
        ``t_fit, fit_censored`` (train_acc >= 0.99),
        ``t_grok, grok_censored`` (test_acc >= 0.99),
        ``t_grok50, grok50_censored`` (test_acc >= 0.5) and
        ``delay = t_grok - t_fit`` with ``delay_censored``. The delay is
        flagged censored when either end is censored: with ``t_grok`` censored
        the delay is only a lower bound, with ``t_fit`` censored it is
        undefined. Runs lacking one metric get NaN times (censored True) for it.
    """
    _check_table(table)
    configs = run_configs(table)
    specs = (
        ("t_fit", "fit_censored", "train_acc", fit_threshold),
        ("t_grok", "grok_censored", "test_acc", grok_threshold),
        ("t_grok50", "grok50_censored", "test_acc", half_threshold),
    )
    out = configs
    present = set(pd.unique(table["metric"]).tolist())
    for time_col, cens_col, metric, thr in specs:
        # Runs without the metric get NaN times (censored) from the left merge, not a warning.
        if metric in present:
            try:
                tt = _crossings(table, metric, thr, "above")
            except ValueError:  # metric present but never finite
                tt = pd.DataFrame({"run_id": [], "time": [], "censored": []})
        else:
            tt = pd.DataFrame({"run_id": [], "time": [], "censored": []})
        times = tt[["run_id", "time", "censored"]].rename(columns={"time": time_col, "censored": cens_col})
        out = out.merge(times.astype({time_col: float}), on="run_id", how="left")
        out[cens_col] = out[cens_col].astype("boolean").fillna(True).astype(bool)
    out["delay"] = out["t_grok"] - out["t_fit"]
    out["delay_censored"] = out["grok_censored"] | out["fit_censored"]
    return out


# ----------------------------------------------------------------------------
# sigmoid in log-time
# ----------------------------------------------------------------------------

_LN9 = float(np.log(9.0))


@dataclass(frozen=True)
class SigmoidFit:
    """Logistic fit of a metric against log10(step).

    Model: ``y = a + (b - a) / (1 + exp(-(log10 t - m) / s))`` with ``s > 0``,
    ``a`` the early-time and ``b`` the late-time asymptote.

    Attributes
    ----------
    midpoint : float
        ``10**m``, the step of the half-way point.
    midpoint_se : float
        Delta-method standard error of ``midpoint`` (``ln 10 * 10**m * se(m)``).
    midpoint_log10, midpoint_log10_se : float
        ``m`` and its standard error (symmetric intervals live on this axis).
    width_10_90, width_10_90_se : float
        10 %->90 % transition width in log10 steps, ``2 ln 9 * s``, and its
        standard error (``2 ln 9 * se(s)``).
    lower, upper : float
        The smaller and the larger asymptote.
    lower_se, upper_se : float
        Their standard errors.
    increasing : bool
        True when the late asymptote is the upper one (accuracy); False for a
        decreasing curve (loss).
    r2 : float
        Coefficient of determination of the fit on the points used.
    n : int
        Number of points used (``step > 0`` and finite value).
    success : bool
        The optimiser converged, the covariance is finite, and the midpoint
        lies inside the observed step range (an extrapolated midpoint is not a
        measured transition).
    message : str
        Why ``success`` is False, or ``''``.
    """

    midpoint: float
    midpoint_se: float
    midpoint_log10: float
    midpoint_log10_se: float
    width_10_90: float
    width_10_90_se: float
    lower: float
    lower_se: float
    upper: float
    upper_se: float
    increasing: bool
    r2: float
    n: int
    success: bool
    message: str = ""

    def predict(self, steps) -> np.ndarray:
        """Evaluate the fitted curve at ``steps`` (> 0)."""
        x = np.log10(np.asarray(steps, dtype=float))
        s = self.width_10_90 / (2 * _LN9)
        early, late = (self.lower, self.upper) if self.increasing else (self.upper, self.lower)
        return _logistic(x, early, late, self.midpoint_log10, s)


def _logistic(x, a, b, m, s):
    # scipy.special.expit is overflow-safe where 1/(1+exp(-z)) warns.
    from scipy.special import expit

    return a + (b - a) * expit((x - m) / s)


def _failed_fit(n: int, message: str) -> SigmoidFit:
    nan = float("nan")
    return SigmoidFit(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, False, nan, n, False, message)


def _initial_guesses(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float, float, float]]:
    """A few starting points for (a, b, m, s); the best-SSE fit among them wins."""
    n = len(x)
    k = max(1, n // 10)
    a0 = float(np.median(y[:k]))
    b0 = float(np.median(y[-k:]))
    span = float(x[-1] - x[0])
    # Midpoint guess: first x where y passes half-way between the ends (ignoring noise).
    half = 0.5 * (a0 + b0)
    passed = (y >= half) if b0 >= a0 else (y <= half)
    m0 = float(x[np.argmax(passed)]) if passed.any() else float(np.median(x))
    guesses = []
    for m in (m0, float(np.median(x))):
        for frac in (0.02, 0.1, 0.3):
            guesses.append((a0, b0, m, max(frac * span, 1e-3)))
    return guesses


def fit_sigmoid_logtime(steps, values) -> SigmoidFit:
    """Fit a logistic curve in log10(step) to one run's metric.

    Parameters
    ----------
    steps, values : array_like
        Logged steps and metric values of one run. Points with ``step <= 0``
        (log undefined) or non-finite values are dropped.

    Returns
    -------
    SigmoidFit
        Midpoint (in steps), 10->90 % width (in log10 steps), asymptotes,
        their standard errors from the :func:`scipy.optimize.curve_fit`
        covariance (delta method for derived quantities), ``r2`` and
        ``success``. Never raises on bad data: a failed fit has
        ``success=False``, NaN estimates and a ``message``.

    Notes
    -----
    The model is ``y = a + (b - a) / (1 + exp(-(log10 t - m) / s))`` with
    ``s > 0`` enforced by bounds, so a decreasing curve (loss) is fitted with
    ``b < a`` rather than a negative ``s`` -- that keeps the width positive and
    the parameterisation identifiable. Several starting points are tried and
    the one with the smallest residual sum of squares is kept, because a
    single poor start (e.g. a width far too small) can stall the optimiser on
    a plateau.
    """
    s_arr = as_1d_float(steps, "steps")
    v_arr = as_1d_float(values, "values")
    check_same_length(steps=s_arr, values=v_arr)
    keep = np.isfinite(s_arr) & np.isfinite(v_arr) & (s_arr > 0)
    x = np.log10(s_arr[keep])
    y = v_arr[keep]
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    n = int(x.size)
    if n < 5:
        return _failed_fit(n, f"need >= 5 points with step > 0 and finite value, got {n}")
    if np.ptp(x) == 0:
        return _failed_fit(n, "all steps are equal")
    yspan = float(np.ptp(y))
    if yspan == 0:
        return _failed_fit(n, "values are constant: no transition to fit")

    xspan = float(np.ptp(x))
    ylo, yhi = float(y.min()) - yspan, float(y.max()) + yspan
    # Bounds keep the search in a sensible region: asymptotes near the data, midpoint
    # within one span of the observed range, width from tiny to much wider than the data.
    lb = [ylo, ylo, float(x[0]) - xspan, 1e-4 * xspan]
    ub = [yhi, yhi, float(x[-1]) + xspan, 10.0 * xspan]

    best = None
    for p0 in _initial_guesses(x, y):
        p0 = np.clip(p0, np.add(lb, 1e-12), np.subtract(ub, 1e-12))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # OptimizeWarning on singular covariance: judged below
                popt, pcov = curve_fit(_logistic, x, y, p0=p0, bounds=(lb, ub), method="trf", maxfev=5000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((y - _logistic(x, *popt)) ** 2))
        if best is None or sse < best[0]:
            best = (sse, popt, pcov)
    if best is None:
        return _failed_fit(n, "curve_fit did not converge from any starting point")

    sse, (a, b, m, s), pcov = best
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(pcov))
    se_a, se_b, se_m, se_s = (float(v) for v in se)
    messages = []
    if not np.all(np.isfinite(se)):
        messages.append("covariance not finite (parameters not identifiable from these points)")
    if not (x[0] <= m <= x[-1]):
        messages.append(f"midpoint 10**{m:.3g} lies outside the logged steps")
    increasing = bool(b >= a)
    lower, upper = (a, b) if increasing else (b, a)
    lower_se, upper_se = (se_a, se_b) if increasing else (se_b, se_a)
    midpoint = float(10.0**m)
    return SigmoidFit(
        midpoint=midpoint,
        midpoint_se=float(np.log(10.0) * midpoint * se_m),
        midpoint_log10=float(m),
        midpoint_log10_se=se_m,
        width_10_90=float(2 * _LN9 * s),
        width_10_90_se=float(2 * _LN9 * se_s),
        lower=float(lower),
        lower_se=lower_se,
        upper=float(upper),
        upper_se=upper_se,
        increasing=increasing,
        r2=float(r2),
        n=n,
        success=not messages,
        message="; ".join(messages),
    )
