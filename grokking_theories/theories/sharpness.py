"""Family `sharpness`: is the abruptness of grokking an artifact of argmax accuracy?

Schaeffer et al. (2023) showed that "emergent" jumps can come from the metric:
a discontinuous score of smoothly moving outputs jumps. For single-token
answers the only such non-linearity is the argmax: accuracy is the fraction
of test examples whose correct-logit margin is positive. Three predictions
separate "the metric makes the jump" from "the network makes the jump":

* **S1** (Schaeffer's own test): accuracy's transition is narrower than that
  of a linear per-example metric, the Brier score. Expected under the artifact
  view, but also under the circuits view (accuracy sharp, progress measures
  smooth), so S1 alone separates neither; it is kept as the paper's claim.
* **M3**: does the mean margin mu(t) itself jump? The artifact view needs a
  smooth mu (its transition much wider than accuracy's); a genuine
  transition moves mu about as sharply as accuracy.
* **M2**: do individual margins drift through 0 with the population (artifact)
  or flip one by one, abruptly (genuine)? Read from per-example flip times
  recomputed offline from the checkpoints (:mod:`grokking_theories.probes.flips`).

The old S2 (accuracy reproduced from a normal fitted to the margin quartiles)
is gone: accuracy *is* the fraction of positive margins, so it reproduced
accuracy whether or not the margins jump (see ``docs/sharpness.md``).

Every threshold is a module constant (or comes from :mod:`grokking_theories.levels`),
and the rule texts are built from them.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..levels import ALPHA, FIT_ACC, GROK_ACC, pct
from ..probes.flips import DELTA_FRAC, OFFLINE_METRICS
from ..stats import Calibration, Design, Outcome, Prediction
from ._series import first_step, one_sample_decision, series_by_run
from .base import Family, register

# ----------------------------------------------------------------------------
# constants of the rules (fixed before any data is seen)
# ----------------------------------------------------------------------------

#: The one continuous comparator of S1: the Brier score, Schaeffer et al.'s linear per-example metric.
S1_COMPARATOR = "test_brier"
#: Direction of each metric whose transition is fitted: +1 rises when the network generalises, -1 falls.
DIRECTION = {"test_acc": +1, "test_brier": -1, "test_margin_mean": +1}
#: The late plateau is looked for in this last fraction of log-time between t_grok and the run's last step.
PLATEAU_TAIL = 0.2
#: ... and the run must go on at least this many decades past t_grok for a plateau to be observable.
MIN_TAIL_DECADES = 0.2
#: Plateau: over that tail the metric's least-squares slope against log10(step) is at most this fraction of
#: its range after t_fit per decade. For a logistic that leaves <= ~2-4 % of its change beyond the run's end
#: (widths up to ~0.6 decades at a budget of 3 t_grok); a slow log-linear drift (~0.5 of its range per
#: decade over a run) never passes.
PLATEAU_SLOPE = 0.2
#: Fit window start: the first step >= t_fit at which the metric is within this fraction of its range of
#: its worst value up to t_grok (a test loss or Brier score that still rises after t_fit is not forced
#: into the logistic).
START_TOL = 0.05
#: Runs excluded after grokking (no late plateau, failed fit, metric missing) may be at most this fraction
#: of the grokking runs; more, and the verdict is inconclusive whatever the test says.
MAX_EXCLUDED_FRAC = 0.25
#: Least number of usable runs for a t-test.
MIN_RUNS = 4
#: M3: the artifact view needs mu's transition at least 10**M3_MARGIN (2x) wider than accuracy's.
M3_MARGIN = 0.3
#: M2: a common smooth drift of all margins gives crossing width / IQR of flip times = 2 * DELTA_FRAC
#: (derivation in probes/flips.py); individual abrupt flips give much less. The decision line is a
#: factor M2_FACTOR below the drift value (log10 2 = 0.3 decades).
M2_DRIFT_RATIO = 2 * DELTA_FRAC
M2_FACTOR = 2.0
M2_THRESHOLD = math.log10(M2_DRIFT_RATIO / M2_FACTOR)
#: M2: a run where more than this fraction of test examples never flip is excluded (the flip times
#: would describe a minority of the test set).
M2_MAX_CENSORED = 0.1

#: The primary design: runs trained to their budget (no stop rule tied to test accuracy, so every metric's
#: late plateau can be observed), decay toward zero, no fixed norm; the most replicated configuration.
DESIGN = Design(
    runs="decay_target == 'zero' and fixed_norm.isna() and stop_after_grok.isna()",
    hold=("arch", "p", "width", "lr", "weight_decay"),
)

_PLATEAU_TEXT = (
    f"A run enters only if it reaches test accuracy >= {pct(GROK_ACC)} (t_grok; t_fit = first step with train "
    f"accuracy >= {pct(FIT_ACC)}) and shows an observed late plateau of each fitted metric: it runs at least "
    f"{MIN_TAIL_DECADES} decades past t_grok, and over the last {PLATEAU_TAIL:.0%} of log-time between t_grok "
    f"and its last step the metric's least-squares slope against log10(step) is at most {PLATEAU_SLOPE:.0%} of "
    f"its range after t_fit per decade. Each metric's "
    f"transition is a 4-parameter logistic in log10(step), fitted from the first step >= t_fit at which the "
    f"metric is within {START_TOL:.0%} of its range of its worst value up to t_grok, to the run's last step; "
    f"width = its 10->90 % width in decades (a width below the log10 gap between the logged steps at its "
    f"midpoint is set to that gap, an upper bound). A fit fails when its covariance is not finite or its "
    f"midpoint lies outside the fitted steps. Runs without a plateau and runs with a failed fit are excluded "
    f"and counted in the notes, never dropped silently; if they are more than {MAX_EXCLUDED_FRAC:.0%} of the "
    f"grokking runs the "
    f"verdict is inconclusive whatever the test says. Needs >= {MIN_RUNS} usable runs. ")


# ----------------------------------------------------------------------------
# per-run curves and transition widths
# ----------------------------------------------------------------------------


class _Fit(NamedTuple):
    width: float  # 10-90 % width in decades
    success: bool
    message: str
    midpoint: float = float("nan")  # log10 step


_LN9 = math.log(9.0)


def _levenberg_marquardt(residual, jac, p0, max_iter: int = 200):
    """Minimise ``sum(residual(p)**2)`` (damped Gauss-Newton); returns (p, jacobian at p, sse)."""
    p = np.asarray(p0, dtype=float)
    r = residual(p)
    cost = float(r @ r)
    lam = 1e-3
    J = jac(p)
    for _ in range(max_iter):
        A, g = J.T @ J, J.T @ r
        scale = np.maximum(np.diag(A), 1e-12)
        while lam < 1e12:
            try:
                step = np.linalg.solve(A + lam * np.diag(scale), -g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            r_new = residual(p + step)
            c_new = float(r_new @ r_new)
            if np.isfinite(c_new) and c_new < cost:
                break
            lam *= 10
        else:  # no step lowers the cost: a minimum
            break
        done = (cost - c_new) <= 1e-12 * cost or np.max(np.abs(step)) < 1e-10
        p, r, cost = p + step, r_new, c_new
        lam = max(lam / 10, 1e-12)
        J = jac(p)
        if done:
            break
    return p, J, cost


def _fit_logistic(steps, values) -> _Fit:
    """The 4-parameter logistic in log10(step) of :func:`~grokking_theories.stats.fit_sigmoid_logtime`.

    One Levenberg-Marquardt fit from a start read off the data (its own 10/50/90 % crossings); when
    that start fails (covariance not finite, width, midpoint or asymptotes outside the stats layer's
    bounds), the stats layer's multi-start fit decides. Same model, same success criteria, ~10x faster
    (the calibration benchmark fits thousands of planted curves).
    """
    from scipy.special import expit

    from ..stats import fit_sigmoid_logtime

    x = np.log10(np.asarray(steps, dtype=float))
    y = np.asarray(values, dtype=float)
    n = x.size
    if n < 5:
        return _Fit(float("nan"), False, f"need >= 5 points, got {n}")
    span, yspan = float(np.ptp(x)), float(np.ptp(y))
    if span == 0 or yspan == 0:
        return _Fit(float("nan"), False, "no change to fit")
    k = max(3, n // 10)
    a0, b0 = float(y[0]), float(np.median(y[-k:]))
    z = (y - a0) / (b0 - a0) if b0 != a0 else np.zeros_like(y)

    def first(level):
        hit = np.nonzero(z >= level)[0]
        return float(x[hit[0]]) if hit.size else float(x[-1])

    m0 = first(0.5)
    s0 = max((first(0.9) - first(0.1)) / (2 * _LN9), 1e-3 * span)

    def residual(p):
        a, b, m, u = p
        return a + (b - a) * expit((x - m) / np.exp(min(u, 700.0))) - y

    def jac(p):
        a, b, m, u = p
        s = np.exp(min(u, 700.0))
        e = expit((x - m) / s)
        d = (b - a) * e * (1 - e)
        return np.stack([1 - e, e, -d / s, -d * (x - m) / s], axis=1)

    ok = False
    with np.errstate(all="ignore"):
        try:
            (a, b, m, u), J, sse = _levenberg_marquardt(residual, jac, [a0, b0, m0, math.log(s0)])
            s = math.exp(min(u, 700.0))
            se = np.sqrt(np.diag(np.linalg.inv(J.T @ J) * (sse / (n - 4))))
            ok = (bool(np.all(np.isfinite(se))) and x[0] <= m <= x[-1] and 1e-4 * span <= s <= 10 * span
                  and min(a, b) >= y.min() - yspan and max(a, b) <= y.max() + yspan)
        except (np.linalg.LinAlgError, ValueError, OverflowError):
            ok = False
    if ok:
        return _Fit(float(2 * _LN9 * s), True, "", float(m))
    fit = fit_sigmoid_logtime(np.power(10.0, x), y)
    return _Fit(fit.width_10_90, fit.success, fit.message, fit.midpoint_log10)


def _transition(series, sign: int, t_fit: float, t_grok: float) -> tuple[str, float, str]:
    """('ok' | 'no plateau' | 'fit failed', width in decades, detail) of one metric of one run.

    A fitted width below the logging resolution (the log10 gap between the logged steps around the
    midpoint) is not measured: it is set to that gap, an upper bound, and the detail says 'resolution'.
    """
    steps, values = series
    keep = steps >= t_fit
    s, v = steps[keep], values[keep]
    if s.size < 5 or s[-1] <= 0:
        return "no plateau", float("nan"), f"{s.size} logged point(s) after t_fit"
    full = float(np.ptp(v))
    lt_end, lt_grok = math.log10(s[-1]), math.log10(max(t_grok, 1.0))
    tail = lt_end - lt_grok
    if tail < MIN_TAIL_DECADES:
        return "no plateau", float("nan"), f"the run ends {tail:.2f} decades after t_grok"
    late = s >= 10 ** (lt_grok + (1 - PLATEAU_TAIL) * tail)
    if late.sum() < 3:
        return "no plateau", float("nan"), f"{int(late.sum())} logged point(s) in the late window"
    if full == 0:
        return "fit failed", float("nan"), "the metric does not change after t_fit"
    slope = float(np.polyfit(np.log10(s[late]), v[late], 1)[0])
    if abs(slope) > PLATEAU_SLOPE * full:
        return "no plateau", float("nan"), f"late slope {abs(slope) / full:.2f} of the range per decade"
    before = s <= t_grok
    worst = float(v[before].min() if sign > 0 else v[before].max()) if before.any() else float(v[0])
    near = np.abs(v - worst) <= START_TOL * full
    start = int(np.argmax(near & before)) if (near & before).any() else 0
    fit = _fit_logistic(s[start:], v[start:])
    if not (fit.success and np.isfinite(fit.width) and fit.width > 0):
        return "fit failed", float("nan"), fit.message or "no finite width"
    ls = np.log10(s[start:])
    i = int(np.clip(np.searchsorted(ls, fit.midpoint), 1, ls.size - 1))
    gap = float(ls[i] - ls[i - 1])
    if fit.width < gap:
        return "ok", gap, "resolution"
    return "ok", fit.width, ""


def _count_text(counter: dict) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(counter.items()))


def _width_log_ratios(table, numerator: str, denominator: str):
    """Per-run log10(width(numerator) / width(denominator)), grokking runs, runs excluded, and the notes."""
    data = series_by_run(table, {"train_acc", "test_acc", numerator, denominator})
    ratios, not_grokked, no_acc, n_grok, lacking = [], 0, 0, 0, 0
    no_plateau: dict = {}
    failed: dict = {}
    clamped: dict = {}
    for series in data.values():
        if "test_acc" not in series or "train_acc" not in series:
            no_acc += 1
            continue
        t_grok = first_step(series["test_acc"], GROK_ACC)
        if t_grok is None:
            not_grokked += 1
            continue
        n_grok += 1
        if numerator not in series or denominator not in series:
            lacking += 1
            continue
        t_fit = first_step(series["train_acc"], FIT_ACC)
        t_fit = t_fit if t_fit is not None else float(series["train_acc"][0][0])
        results = {m: _transition(series[m], DIRECTION[m], t_fit, t_grok) for m in (numerator, denominator)}
        flat = [m for m, r in results.items() if r[0] == "no plateau"]
        bad = [m for m, r in results.items() if r[0] == "fit failed"]
        for m in flat:
            no_plateau[m] = no_plateau.get(m, 0) + 1
        if not flat:
            for m in bad:
                failed[m] = failed.get(m, 0) + 1
        if not flat and not bad:
            ratios.append(math.log10(results[numerator][1] / results[denominator][1]))
            for m, r in results.items():
                if r[2] == "resolution":
                    clamped[m] = clamped.get(m, 0) + 1
    n_excl = n_grok - len(ratios)
    parts = [f"{len(data)} run(s) in the design", f"{n_grok} reached test acc >= {pct(GROK_ACC)}",
             f"{not_grokked} did not"]
    if no_acc:
        parts.append(f"{no_acc} lack train_acc/test_acc")
    detail = []
    if no_plateau:
        detail.append(f"no observed late plateau of {_count_text(no_plateau)}")
    if failed:
        detail.append(f"failed fit of {_count_text(failed)}")
    if lacking:
        detail.append(f"{lacking} lack {numerator} or {denominator}")
    parts.append(f"excluded before the test: {n_excl} run(s)" + (f" ({'; '.join(detail)})" if detail else ""))
    parts.append(f"{len(ratios)} used")
    if clamped:
        parts.append(f"widths narrower than the logging grid, set to the grid gap (an upper bound): "
                     f"{_count_text(clamped)}")
    return np.asarray(ratios, float), n_grok, n_excl, "; ".join(parts)


def _decide(values, n_eligible: int, n_excluded: int, notes: str, **kwargs) -> Outcome:
    """One-sample t-test of the per-run values, with this family's run minimum and exclusion cap."""
    return one_sample_decision(values, n_eligible, n_excluded, notes, min_runs=MIN_RUNS,
                               max_excluded_frac=MAX_EXCLUDED_FRAC, **kwargs)


# ----------------------------------------------------------------------------
# S1: accuracy's width against the Brier score's
# ----------------------------------------------------------------------------


def _test_s1(table) -> Outcome:
    ratios, n_grok, n_excl, notes = _width_log_ratios(table, "test_acc", S1_COMPARATOR)
    return _decide(ratios, n_grok, n_excl, notes, null=0.0, expected="negative",
                   test="two-sided one-sample t-test of mean log10 width ratio = 0 (t interval)",
                   statistic_name="t", effect_name="mean log10 width(test_acc) / width(test_brier)",
                   describe=lambda m: f"mean width ratio acc/Brier = {10 ** m:.2f}")


S1_RULE = (
    _PLATEAU_TEXT
    + f"Statistic per run: r = log10(width(test_acc) / width({S1_COMPARATOR})), the Brier score being the one "
    f"pre-specified continuous comparator (no minimum over metrics). Two-sided one-sample t-test of mean r = 0 "
    f"at alpha = {pct(ALPHA)}, with a t interval (no bootstrap): supported if p < {pct(ALPHA)} and mean r < 0 "
    f"(accuracy's transition narrower), contradicted if p < {pct(ALPHA)} and mean r > 0; otherwise inconclusive.")


# ----------------------------------------------------------------------------
# M3: does the mean margin itself jump?
# ----------------------------------------------------------------------------


def _test_m3(table) -> Outcome:
    ratios, n_grok, n_excl, notes = _width_log_ratios(table, "test_margin_mean", "test_acc")
    return _decide(ratios, n_grok, n_excl, notes, null=M3_MARGIN, expected="positive",
                   test=f"two-sided one-sample t-test of mean log10 width ratio = {M3_MARGIN} (t interval)",
                   statistic_name="t", effect_name="mean log10 width(test_margin_mean) / width(test_acc)",
                   describe=lambda m: f"mean width ratio mu/acc = {10 ** m:.2f} (artifact needs >= "
                                      f"{10 ** M3_MARGIN:.1f})")


M3_RULE = (
    _PLATEAU_TEXT
    + f"Statistic per run: r = log10(width(test_margin_mean) / width(test_acc)). The artifact view needs the mean "
    f"margin to move much more smoothly than accuracy, r >= {M3_MARGIN} (a {10 ** M3_MARGIN:.1f}x wider "
    f"transition); a genuine transition moves it about as sharply (r within +-{M3_MARGIN} of 0), and a mean "
    f"margin sharper than accuracy (r < -{M3_MARGIN}) contradicts the artifact as well, so the rule tests one "
    f"line: two-sided one-sample t-test of mean r = {M3_MARGIN} at alpha = {pct(ALPHA)} (t interval). Supported "
    f"(artifact) if p < {pct(ALPHA)} and mean r > {M3_MARGIN}; contradicted (the margin itself jumps) if "
    f"p < {pct(ALPHA)} and mean r < {M3_MARGIN}; otherwise inconclusive.")


# ----------------------------------------------------------------------------
# M2: per-example flip times (offline)
# ----------------------------------------------------------------------------


def _test_m2(table) -> Outcome:
    data = series_by_run(table, {"test_acc", "flip_cross_width_rel", "flip_censored_frac"})
    values, not_grokked, no_acc, n_grok, no_summary, censored, undefined = [], 0, 0, 0, 0, 0, 0
    for series in data.values():
        if "test_acc" not in series:
            no_acc += 1
            continue
        if first_step(series["test_acc"], GROK_ACC) is None:
            not_grokked += 1
            continue
        n_grok += 1
        if "flip_cross_width_rel" not in series:
            no_summary += 1
            continue
        ratio = series["flip_cross_width_rel"][1]
        cens = series.get("flip_censored_frac", (None, np.array([])))[1]
        if cens.size and cens[-1] > M2_MAX_CENSORED:
            censored += 1
            continue
        if ratio.size == 0 or not (np.isfinite(ratio[-1]) and ratio[-1] > 0):
            undefined += 1
            continue
        values.append(math.log10(ratio[-1]))
    n_excl = n_grok - len(values)
    notes = (f"{len(data)} run(s) in the design; {n_grok} reached test acc >= {pct(GROK_ACC)}, {not_grokked} did "
             f"not{f', {no_acc} lack test_acc' if no_acc else ''}; excluded before the test: {n_excl} run(s) "
             f"({no_summary} without a flip summary, {censored} with > {M2_MAX_CENSORED:.0%} of test examples never "
             f"flipping, {undefined} with no defined ratio); {len(values)} used")
    return _decide(np.asarray(values, float), n_grok, n_excl, notes, null=M2_THRESHOLD, expected="positive",
                   test=f"two-sided one-sample t-test of mean log10 ratio = log10({10 ** M2_THRESHOLD:.3g}) "
                        "(t interval)",
                   statistic_name="t", effect_name="mean log10 (median crossing width / IQR of flip times)",
                   describe=lambda m: f"mean ratio {10 ** m:.3f} (common smooth drift: {M2_DRIFT_RATIO:g}; "
                                      f"decision line {10 ** M2_THRESHOLD:.3g})")


M2_RULE = (
    f"Per grokking run of the primary design (test accuracy >= {pct(GROK_ACC)}), from its stored checkpoints "
    f"(offline, probes/flips.py): each test example's flip time (first checkpoint from which its margin stays "
    f"> 0, interpolated to the zero crossing; never -> censored) and crossing width (time its margin takes from "
    f"-delta to +delta around the flip, delta = {DELTA_FRAC} x the IQR of the test margins at the first "
    f"checkpoint with half the examples correct). Statistic per run: r = log10(median crossing width / IQR of "
    f"the flip times). Margins drifting smoothly with the population give r = log10({M2_DRIFT_RATIO:g}) "
    f"(2 x {DELTA_FRAC}); examples flipping individually and abruptly give r far below. Runs without a flip "
    f"summary, with more than {M2_MAX_CENSORED:.0%} of test examples never flipping, or with no defined ratio "
    f"are excluded and counted; if they are more than {MAX_EXCLUDED_FRAC:.0%} of the grokking runs the verdict "
    f"is inconclusive. Two-sided "
    f"one-sample t-test of mean r = log10({10 ** M2_THRESHOLD:.3g}) (the drift value / {M2_FACTOR:g}) "
    f"at alpha = {pct(ALPHA)}, t interval, >= {MIN_RUNS} runs: supported (artifact: crossing width comparable to "
    f"the spread) if p < {pct(ALPHA)} and the mean lies above; contradicted (individual abrupt flips) if "
    f"p < {pct(ALPHA)} and it lies below; otherwise inconclusive.")


# ----------------------------------------------------------------------------
# calibration planters (shipped study configs -> planted tidy tables)
# ----------------------------------------------------------------------------

#: Seed-to-seed SD of each planted per-run log10 ratio (assumed; no pilot measured it yet).
PLANT_SD = {"S1": 0.15, "M3": 0.15, "M2": 0.2}
_S1_EFFECT = -math.log10(3.0)
_M3_SHIFT = 0.3
_M2_SHIFT = math.log10(M2_FACTOR)


def _planted_times(cfg, rng):
    """t_grok around a third of the budget, t_fit a twentieth of t_grok (as in the quick MLP runs)."""
    t_grok = cfg.budget.max_steps / 3 * math.exp(rng.normal(0, 0.1))
    t_fit = t_grok / 20 * math.exp(rng.normal(0, 0.1))
    return t_fit, t_grok


def _acc_midpoint(t_grok: float, width: float) -> float:
    """Midpoint of planted.accuracy_curves' logistic that passes GROK_ACC at t_grok."""
    return t_grok / 10 ** (width / (2 * _LN9) * math.log(GROK_ACC / (1 - GROK_ACC)))


def _memorisation_drift(steps, t_fit: float, height: float) -> np.ndarray:
    """0 until t_fit, rising linearly in log-time to ``height`` at 3 t_fit, then flat: a test loss or Brier score
    that keeps rising after the training set is fitted (multiplied by 1 - progress, the transition takes it
    down with the rest of the curve, so the observable transition width is the planted one)."""
    lt = np.log10(np.maximum(steps, 1.0))
    return height * np.clip((lt - math.log10(t_fit)) / math.log10(3.0), 0.0, 1.0)


def _plant_widths(configs, scenario: str, rng, *, kind: str):
    from .planted import accuracy_curves, logged_steps, logistic_logtime, table_of_runs

    centre = {"S1": {"null": 0.0, "effect": _S1_EFFECT, "opposite": -_S1_EFFECT},
              "M3": {"null": M3_MARGIN, "effect": M3_MARGIN + _M3_SHIFT, "opposite": M3_MARGIN - _M3_SHIFT}}[kind]
    if scenario not in centre:
        raise ValueError(f"scenario must be one of {tuple(centre)}, got {scenario!r}")
    runs = []
    for cfg in configs:
        steps = logged_steps(cfg)
        t_fit, t_grok = _planted_times(cfg, rng)
        w_acc = 0.1 * 10 ** rng.normal(0, 0.05)
        r = centre[scenario] + rng.normal(0, PLANT_SD[kind])
        curves = accuracy_curves(steps, t_fit, t_grok, width=w_acc)
        curves["test_acc"] = np.clip(curves["test_acc"] + rng.normal(0, 0.002, steps.size), 0, 1)
        mid = _acc_midpoint(t_grok, w_acc)
        if kind == "S1":  # r = log10(w_acc / w_brier)
            w = w_acc / 10 ** r
            progress = logistic_logtime(steps, mid, w)
            brier = 0.02 + (0.96 + _memorisation_drift(steps, t_fit, 0.15)) * (1 - progress)
            curves["test_brier"] = brier + rng.normal(0, 0.004, steps.size)
        else:  # M3: r = log10(w_mu / w_acc)
            w = w_acc * 10 ** r
            progress = logistic_logtime(steps, mid, w)
            mu = -4.0 - _memorisation_drift(steps, t_fit, 1.0) * (1 - progress) + 12.0 * progress
            curves["test_margin_mean"] = mu + rng.normal(0, 0.03, steps.size)
        runs.append((cfg, {name: (steps, values) for name, values in curves.items()}))
    return table_of_runs(runs)


def plant_s1(configs, scenario: str, rng):
    """S1 planter: accuracy and Brier transitions with a chosen log10 width ratio (see S1's Calibration)."""
    return _plant_widths(configs, scenario, rng, kind="S1")


def plant_m3(configs, scenario: str, rng):
    """M3 planter: accuracy and mean-margin transitions with a chosen log10 width ratio."""
    return _plant_widths(configs, scenario, rng, kind="M3")


def plant_m2(configs, scenario: str, rng):
    """M2 planter: accuracy curves plus the per-run flip summary rows, planted directly."""
    from .planted import accuracy_curves, logged_steps, table_of_runs

    centre = {"null": M2_THRESHOLD, "effect": M2_THRESHOLD + _M2_SHIFT, "opposite": M2_THRESHOLD - _M2_SHIFT}
    if scenario not in centre:
        raise ValueError(f"scenario must be one of {tuple(centre)}, got {scenario!r}")
    runs = []
    for cfg in configs:
        steps = logged_steps(cfg)
        t_fit, t_grok = _planted_times(cfg, rng)
        metrics = {name: (steps, v) for name, v in accuracy_curves(steps, t_fit, t_grok).items()}
        ratio = 10 ** (centre[scenario] + rng.normal(0, PLANT_SD["M2"]))
        summary = {"flip_iqr_rel": 0.3 * 10 ** rng.normal(0, 0.1), "flip_median_rel": 0.9,
                   "flip_cross_width_rel": ratio, "flip_censored_frac": abs(rng.normal(0, 0.003)),
                   "flip_width_frac": 0.95, "flip_delta": 1.0}
        metrics.update({name: (steps[-1:], np.array([v])) for name, v in summary.items()})
        runs.append((cfg, metrics))
    return table_of_runs(runs)


# ----------------------------------------------------------------------------
# the family
# ----------------------------------------------------------------------------

_SCHAEFFER = ("Schaeffer, Miranda, Koyejo 2023: for fixed model outputs, 'emergent' jumps appear under "
              "discontinuous metrics (exact match, multiple-choice grade) and vanish under linear ones (token "
              "edit distance, Brier score); for single-token answers the only non-linearity is the argmax.")

SHARPNESS = register(Family(
    name="sharpness",
    title="The abruptness is an artifact of argmax accuracy",
    explanation=(
        "Accuracy counts the examples whose correct-logit margin is positive: a step function of the "
        "margins. If the margins drift smoothly and cross zero together, accuracy can still jump, and the "
        "'sudden' generalisation is a property of the metric, not of learning. The test is whether the "
        "quantities under the step (the mean margin, each example's margin, a linear metric) move smoothly."),
    references=("Schaeffer, Miranda, Koyejo 2023, arXiv 2304.15004",
                "Nanda et al. 2023, arXiv 2301.05217 (progress measures)"),
    study="sharpness",
    probes=("flips",),  # M2 reads the stored per-example flip summary
    predictions=(
        Prediction(
            id="S1", family="sharpness",
            statement=("Test accuracy's transition (10->90 % width of a logistic fit in log-time, after the "
                       "training set is fitted) is narrower than that of the Brier score, a linear per-example "
                       "metric of the same outputs. (Expected under the circuits view too: S1 alone does not "
                       "separate the two.)"),
            rule=S1_RULE, test=_test_s1, design=DESIGN,
            paper=_SCHAEFFER + " No width ratio is given; we take a 3x narrower accuracy as the smallest effect "
                               "of interest.",
            metrics_needed=("train_acc", "test_acc", S1_COMPARATOR),
            calibration=Calibration(
                plant=plant_s1,
                effect=(f"accuracy's width 3x narrower than the Brier score's (log10 ratio {_S1_EFFECT:.2f}; the "
                        f"smallest effect of interest, the paper gives no number); null: equal widths; opposite: "
                        f"accuracy 3x wider. Accuracy width 0.1 decades, seed-to-seed SD of the log ratio "
                        f"{PLANT_SD['S1']} (assumed), a Brier score that rises after t_fit (by 0.15, up to "
                        f"3 t_fit) before it falls."))),
        Prediction(
            id="M2", family="sharpness",
            statement=("Individual test margins drift smoothly through 0 with the population: each example's "
                       "crossing of a band around 0 takes about as long as the population's spread of flip "
                       "times implies for a common drift, rather than each example flipping abruptly on its own."),
            rule=M2_RULE, test=_test_m2, design=DESIGN,
            paper=_SCHAEFFER + " SCIENCE.md 6 M2: the discriminating test is whether per-example margins drift "
                               "smoothly and cross 0 at widely spread times (artifact) or flip individually.",
            metrics_needed=("test_acc", "flip_cross_width_rel", "flip_censored_frac", "flip_iqr_rel"),
            calibration=Calibration(
                plant=plant_m2,
                effect=(f"crossing width / flip IQR = {M2_DRIFT_RATIO:g}, the common-smooth-drift value (derivation "
                        f"in probes/flips.py); null: the decision line {10 ** M2_THRESHOLD:.3g}; opposite: "
                        f"{10 ** (M2_THRESHOLD - _M2_SHIFT):.3g} (examples flip faster than the population "
                        f"drifts). Summary rows planted directly; seed-to-seed SD of the log ratio "
                        f"{PLANT_SD['M2']} (assumed)."))),
        Prediction(
            id="M3", family="sharpness",
            statement=("The mean test margin mu(t) moves much more smoothly than accuracy: its transition is at "
                       f"least {10 ** M3_MARGIN:.0f}x wider in log-time. (A mean margin that jumps about as "
                       "sharply as accuracy means the abruptness is not only an artifact of the argmax.)"),
            rule=M3_RULE, test=_test_m3, design=DESIGN,
            paper=(_SCHAEFFER + " Against it: in Nanda et al.'s runs the test-loss drop is itself abrupt, 4-9 % "
                   "of elapsed training time from 4.73 to 0.1 nats (SCIENCE.md 6 M4)."),
            metrics_needed=("train_acc", "test_acc", "test_margin_mean"),
            calibration=Calibration(
                plant=plant_m3,
                effect=(f"null at the decision line (mu {10 ** M3_MARGIN:.1f}x wider than accuracy, log10 ratio "
                        f"{M3_MARGIN}); effect: {10 ** (M3_MARGIN + _M3_SHIFT):.0f}x wider "
                        f"({M3_MARGIN + _M3_SHIFT:.1f} decades: a smooth mu twice past the line, about the widest "
                        f"transition the quick budget of 3 t_grok shows with its plateau); opposite: "
                        f"{M3_MARGIN - _M3_SHIFT:.1f} decades (mu exactly as sharp as accuracy: the genuine "
                        f"transition, cf. Nanda's abrupt loss drop). Accuracy width 0.1 decades, seed-to-seed SD "
                        f"{PLANT_SD['M3']} (assumed), a "
                        f"mean margin that keeps falling after t_fit (by 1 logit) until the transition."))),
    ),
))

#: Metrics M2 reads that the trainer does not log: the probe ``flips`` (declared above in ``probes``) computes
#: them from stored checkpoints, and ``check_family`` accepts them because the family declares it.
OFFLINE = OFFLINE_METRICS
