"""Family `weight_decay`: weight decay as a slow regulariser (Power et al. 2022).

After the training set is fitted the loss gradient is tiny, and decoupled
weight decay shrinks every weight by a factor (1 - lr * wd) per step. The
explanation: this slow shrinkage, not the data gradient, carries the network
to a low-norm solution that generalises. So the time from fitting to
generalising scales like 1 / (lr * wd), fitting itself does not depend on wd,
without decay there is no grokking within a practical budget, decay toward the
initial weights helps less than decay toward zero, and the norm falls at the
decay rate while it lies far above AdamW's equilibrium.

Every prediction is decided once, on its primary :class:`~grokking_theories.stats.Design`:
decay toward zero, no fixed norm and the default init (alpha = 1) unless the
prediction is about another arm; decay toward init and fixed-norm runs are
never pooled with decay toward zero. Every decided verdict rests on one
p-value; "the slope is -1" claims are equivalence tests (TOST) with a stated
margin, contradicted only when non-equivalence is shown. Thresholds come from
:mod:`grokking_theories.levels`, and every rule text is built from the same
constants as its code. Each prediction ships a calibration planter
(:mod:`grokking_theories.theories.calibration`): tables planted on the
trainer's own step schedule under a null, the paper's effect, and the opposite.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from ..levels import ALPHA, FIT_ACC, GROK_ACC, pct
from ..stats import (CensoredFit, Calibration, Design, InsufficientDataError, Outcome, Prediction, censored_fit,
                     equivalence_from_statistics, equivalence_outcome, permutation_logrank, profile_slope)
from . import planted
from .planted import quick_t_fit
from ._series import run_series
from .base import Family, register

# ---------------------------------------------------------------------------- margins and design constants
#: W1: the 1/wd exponent -1 counts as reproduced when the slope is shown inside -1 +- this margin. A third of
#: the predicted exponent: it excludes "wd does not matter" (0) and square-root laws (-0.5), and is ~5
#: standard errors of the slope on the quick study's 20 runs at 20 % seed noise (se ~0.075).
SLOPE_MARGIN = 0.35
#: W5 (bend) and W1b (lr vs wd exponent): margin on a *difference* of two exponents. Each exponent is held to
#: SLOPE_MARGIN, so two independent ones differ by up to SLOPE_MARGIN * sqrt(2) ~ 0.5 without either leaving it.
DIFF_MARGIN = 0.5
#: W2: |slope of log t_fit on log wd| below this counts as "t_fit independent of wd": t_fit changes by less than
#: 10**0.15 ~ 1.4x per decade of wd (pilots: ~75 steps at every wd; Nanda's runs 174 vs ~270 epochs at wd 0.1
#: vs 1 would be a slope of ~0.19, just outside).
FIT_MARGIN = 0.15
#: W4: the measured norm fall rate counts as "the decay rate lr*wd" within a factor 2 (margin on ln r).
RATE_MARGIN = math.log(2.0)
#: W4: runs whose init is at least this many times the default (Omnigrok's alpha) can start far above AdamW's
#: norm equilibrium; the window ends when the norm has fallen to NORM_FAR times its final value.
FAR_ALPHA = 4.0
NORM_FAR = 2.0
#: W4: a run whose norm does not fall inside its window counts as this ratio (strongly "not at the rate").
RATE_FLOOR = 1e-3
#: W3: least runs per arm (wd = 0 and the base wd); below 8 a one-sided Fisher test has little power.
W3_MIN_SEEDS = 8
#: W3: the base wd is the wd > 0 level with the most runs; ties go to the level nearest Power et al.'s wd = 1.
POWER_WD = 1.0

#: The standard arm: decay toward zero, free norm, default init. Never pooled with decay toward init or
#: fixed-norm runs or another init scale.
STANDARD = "decay_target == 'zero' and fixed_norm.isna() and alpha == 1"
HOLD = ("lr", "decayed")

_W1_DESIGN = Design(runs=f"{STANDARD} and weight_decay > 0", hold=HOLD, levels={"weight_decay": 3}, min_seeds=2)
_W5_DESIGN = Design(runs=f"{STANDARD} and weight_decay > 0", hold=HOLD, levels={"weight_decay": 4}, min_seeds=2)
_W1B_DESIGN = Design(runs=f"{STANDARD} and weight_decay > 0", hold=("decayed",),
                     levels={"lr": 2, "weight_decay": 2}, min_seeds=2)
_W2_DESIGN = _W1_DESIGN
_W3_DESIGN = Design(runs=STANDARD, hold=HOLD, levels={"weight_decay": 2}, min_seeds=W3_MIN_SEEDS)
_W4_DESIGN = Design(runs=(f"decay_target == 'zero' and fixed_norm.isna() and decayed == 'all' and "
                          f"alpha >= {FAR_ALPHA:g} and weight_decay > 0"),
                    levels={"weight_decay": 1}, min_seeds=3)
_W6_DESIGN = Design(runs="fixed_norm.isna() and alpha == 1 and weight_decay > 0", hold=HOLD,
                    levels={"decay_target": 2}, min_seeds=2)
#: What the figures draw: the standard arm at one lr (wd = 0 included).
_FIGURE_DESIGN = Design(runs=STANDARD, hold=HOLD)


# ---------------------------------------------------------------------------- times per run
def run_times(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: config columns, t_fit / t_grok (first logged step at FIT_ACC / GROK_ACC) and delay.

    ``t_fit``, ``t_grok``, ``delay`` and the ``*_censored`` flags are those of
    :func:`grokking_theories.stats.grokking_times` with FIT_ACC and GROK_ACC (a censored time is the run's
    last finite logged step of that metric), computed with numpy so that calibration can evaluate
    thousands of planted tables. ``t_fit_prev``, ``t_grok_prev``: the logged step before an observed
    crossing (NaN if none), so the crossing lies in (prev, t]; the first logged step alone is late by up to
    one grid spacing, which biases a fitted slope toward 0 where the spacing is a larger share of the
    delay (the regressions use the interval instead).
    """
    if table.empty:
        raise InsufficientDataError("no runs of the kind this prediction needs")
    codes, ids = pd.factorize(table["run_id"], sort=True)
    steps = table["step"].to_numpy(float)
    values = table["value"].to_numpy(float)
    config_cols = [c for c in table.columns if c not in ("step", "metric", "value")]
    first_rows = np.unique(codes, return_index=True)[1]
    out = table[config_cols].take(first_rows).reset_index(drop=True)
    finite = np.isfinite(values)
    for name, met, source, thr in (("t_fit", "fit", "train_acc", FIT_ACC), ("t_grok", "grok", "test_acc", GROK_ACC)):
        rows = (table["metric"] == source).to_numpy(bool) & finite
        first, last, prev = np.full(len(ids), np.inf), np.full(len(ids), -np.inf), np.full(len(ids), -np.inf)
        np.maximum.at(last, codes[rows], steps[rows])
        hit = rows & (values >= thr)
        np.minimum.at(first, codes[hit], steps[hit])
        before = rows & (steps < first[codes])
        np.maximum.at(prev, codes[before], steps[before])
        observed = np.isfinite(first)
        out[name] = np.where(observed, first, np.where(np.isfinite(last), last, np.nan))
        out[f"{name}_prev"] = np.where(observed & np.isfinite(prev), prev, np.nan)
        out[f"{met}_censored"] = ~observed
    out["delay"] = out["t_grok"] - out["t_fit"]
    out["delay_censored"] = out["grok_censored"] | out["fit_censored"]
    return out


def _fitted(times: pd.DataFrame) -> pd.DataFrame:
    fitted = times[~times["fit_censored"]]
    if fitted.empty:
        raise InsufficientDataError(f"no run reached train accuracy {pct(FIT_ACC)}")
    return fitted


def _levels_note(times: pd.DataFrame, col: str) -> str:
    x = times[col].to_numpy(float)
    seen = ~times["delay_censored"].to_numpy(bool)
    parts = [f"{lv:g}: {int(seen[x == lv].sum())}/{int((x == lv).sum())}" for lv in np.unique(x)]
    return f"runs reaching test accuracy {pct(GROK_ACC)} per {col}: " + ", ".join(parts)


# ---------------------------------------------------------------------------- censored log-normal regression
# (the fit itself is grokking_theories.stats.censored_fit; the bounds below are this family's: steps
# of the logging grid and the t_fit / t_grok columns of run_times)
def _log_bounds(lo, hi):
    """log10 bounds from step bounds (a bound below one step is one step; hi = inf stays inf)."""
    lo = np.log10(np.maximum(np.asarray(lo, float), 1.0))
    hi = np.asarray(hi, float)
    return lo, np.where(np.isfinite(hi), np.log10(np.maximum(hi, 1.0)), np.inf)


def delay_bounds(times: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on log10 (t_grok - t_fit) of fitted runs from the logging grid.

    t_fit lies in (t_fit_prev, t_fit] and t_grok in (t_grok_prev, t_grok], so the delay lies in
    (t_grok_prev - t_fit, t_grok - t_fit_prev]; a run that never reached GROK_ACC has a delay above
    last step - t_fit.
    """
    f, g = times["t_fit"].to_numpy(float), times["t_grok"].to_numpy(float)
    f_prev = times["t_fit_prev"].fillna(times["t_fit"]).to_numpy(float)
    g_prev = times["t_grok_prev"].fillna(times["t_grok"]).to_numpy(float)
    cens = times["grok_censored"].to_numpy(bool)
    return _log_bounds(np.where(cens, g - f, g_prev - f), np.where(cens, np.inf, g - f_prev))


def _delay_fit(times: pd.DataFrame, columns: tuple, knot: float | None = None) -> CensoredFit:
    """Censored regression of log10(t_grok - t_fit) on log10 of ``columns`` (plus a hinge at ``knot``)."""
    cols = [np.ones(len(times))] + [np.log10(times[c].to_numpy(float)) for c in columns]
    names = ["intercept", *columns]
    if knot is not None:  # per-range fit: slope below the knot, and its change above
        x = cols[1] - math.log10(knot)
        cols[1] = x
        cols.append(np.maximum(x, 0.0))
        names.append("bend")
    return censored_fit(np.column_stack(cols), *delay_bounds(times), names)


def _knot(levels) -> float:
    """W5's knot: the middle wd level; the low range is the levels up to it, the high range those from it."""
    levels = sorted(levels)
    return float(levels[len(levels) // 2])


# ---------------------------------------------------------------------------- W1, W5, W1b: the delay laws
def _test_w1(sub: pd.DataFrame) -> Outcome:
    times = _fitted(run_times(sub))
    fit = _delay_fit(times, ("weight_decay",))
    slope, se = fit.contrast({"weight_decay": 1.0})
    notes = (f"lr {times['lr'].iloc[0]:g}; {fit.n} fitted runs, {fit.n - fit.n_events} censored at the budget "
             f"({_levels_note(times, 'weight_decay')}); sigma {fit.sigma:.3f} log10 units; t reference with "
             f"{fit.df} df")
    return equivalence_outcome(estimate=slope, se=se, df=fit.df, target=-1.0, margin=SLOPE_MARGIN,
                               test=f"TOST on the censored log-normal AFT slope, margin {SLOPE_MARGIN:g}",
                               statistic_name="slope of log(t_grok - t_fit) on log wd",
                               effect_name="slope (theory: -1)", n_runs=fit.n, notes=notes)


def _test_w5(sub: pd.DataFrame) -> Outcome:
    times = _fitted(run_times(sub))
    levels = sorted(times["weight_decay"].unique())
    if len(levels) < 4:
        raise InsufficientDataError(f"fitted runs at {len(levels)} wd level(s); the per-range fit needs 4")
    knot = _knot(levels)
    observed = times.loc[~times["delay_censored"], "weight_decay"]
    for name, part in (("low", observed[observed <= knot]), ("high", observed[observed >= knot])):
        if part.nunique() < 2:
            raise InsufficientDataError(f"observed delays at {part.nunique()} level(s) of the {name} wd range "
                                        f"(knot wd {knot:g}); its slope is not identified")
    fit = _delay_fit(times, ("weight_decay",), knot=knot)
    low, low_se = fit.contrast({"weight_decay": 1.0})
    high, high_se = fit.contrast({"weight_decay": 1.0, "bend": 1.0})
    bend, se = fit.contrast({"bend": 1.0})
    notes = (f"lr {times['lr'].iloc[0]:g}; knot wd {knot:g}; low range wd {levels[0]:g}-{knot:g}: slope "
             f"{low:.2f} (se {low_se:.2f}); high range wd {knot:g}-{levels[-1]:g}: slope {high:.2f} (se "
             f"{high_se:.2f}); {fit.n} runs, {fit.n - fit.n_events} censored; t reference with {fit.df} df")
    return equivalence_outcome(estimate=bend, se=se, df=fit.df, target=0.0, margin=DIFF_MARGIN,
                               test=f"TOST on the bend of a broken-line censored AFT fit, margin {DIFF_MARGIN:g}",
                               statistic_name="slope(high wd) - slope(low wd)",
                               effect_name="change of the log-log slope (theory: 0)", n_runs=fit.n, notes=notes)


def _complete_grid(times: pd.DataFrame) -> pd.DataFrame:
    """The runs in cells of the complete lr x wd grid (wd levels present at every lr level)."""
    cells = times.groupby(["lr", "weight_decay"]).size()
    lrs = sorted(times["lr"].unique())
    common = set.intersection(*(set(cells.loc[lr].index) for lr in lrs)) if lrs else set()
    if len(lrs) < 2 or len(common) < 2:
        raise InsufficientDataError(f"primary design absent: no complete lr x wd grid with >= 2 levels of each "
                                    f"(lr {[float(v) for v in lrs]}, wd levels present at every lr: "
                                    f"{sorted(float(v) for v in common)})")
    return times[times["weight_decay"].isin(common)]


def _test_w1b(sub: pd.DataFrame) -> Outcome:
    times = _complete_grid(_fitted(run_times(sub)))
    fit = _delay_fit(times, ("lr", "weight_decay"))
    diff, se = fit.contrast({"lr": 1.0, "weight_decay": -1.0})
    b_lr, se_lr = fit.contrast({"lr": 1.0})
    b_wd, se_wd = fit.contrast({"weight_decay": 1.0})
    grid = [", ".join(f"{v:g}" for v in sorted(times[c].unique())) for c in ("lr", "weight_decay")]
    notes = (f"grid lr {{{grid[0]}}} x wd {{{grid[1]}}}; exponent "
             f"of lr {b_lr:.2f} (se {se_lr:.2f}), of wd {b_wd:.2f} (se {se_wd:.2f}); {fit.n} runs, "
             f"{fit.n - fit.n_events} censored; t reference with {fit.df} df")
    return equivalence_outcome(estimate=diff, se=se, df=fit.df, target=0.0, margin=DIFF_MARGIN,
                               test=f"TOST on b_lr - b_wd of a censored AFT fit, margin {DIFF_MARGIN:g}",
                               statistic_name="exponent of lr - exponent of wd",
                               effect_name="b_lr - b_wd (theory: 0)", n_runs=fit.n, notes=notes)


# ---------------------------------------------------------------------------- W2: t_fit against wd
def _test_w2(sub: pd.DataFrame) -> Outcome:
    times = _fitted(run_times(sub))
    if times["weight_decay"].nunique() < 3:
        raise InsufficientDataError("W2 needs fitted runs at >= 3 wd levels")
    x = np.log10(times["weight_decay"].to_numpy(float))
    lo, hi = _log_bounds(times["t_fit_prev"].fillna(times["t_fit"]), times["t_fit"])
    # t_fit is known only to a grid interval, and at the quick scale every run's falls in one or two of them: a
    # line can fit them all, sigma runs to 0 and a Wald error from the curvature means nothing (it gave a 90 %
    # interval of +-45). The likelihood ratio at each margin boundary still says which slopes the intervals admit.
    prof = profile_slope(x, lo, hi)
    per_level = times.groupby("weight_decay")["t_fit"].agg(["min", "max"])
    notes = (f"lr {times['lr'].iloc[0]:g}; {prof.n} fitted runs; t_fit (first logged step at train accuracy "
             f"{pct(FIT_ACC)}) per wd: " + ", ".join(f"{wd:g}: {r['min']:g}-{r['max']:g}" for wd, r in
                                                  per_level.iterrows())
             + "; each t_fit enters as the interval between two logged steps; likelihood-ratio tests at the "
               f"margin's boundaries (signed root, t reference with n - 3 = {prof.n - 3} df), profile-likelihood "
               "interval")
    return equivalence_from_statistics(
        estimate=prof.slope, z_low=prof.signed_root(-FIT_MARGIN), z_high=prof.signed_root(FIT_MARGIN),
        df=prof.n - 3, ci=prof.interval(1 - 2 * ALPHA, df=prof.n - 3), target=0.0, margin=FIT_MARGIN,
        test=f"TOST by likelihood ratio on the slope of log t_fit on log wd (interval-censored normal regression), "
             f"margin {FIT_MARGIN:g}",
        statistic_name="slope of log t_fit on log wd", effect_name="slope (theory: 0)", n_runs=prof.n, notes=notes)


# ---------------------------------------------------------------------------- W3: wd = 0 against the base wd
def _base_wd(times: pd.DataFrame) -> float:
    counts = times.loc[times["weight_decay"] > 0].groupby("weight_decay").size()
    if counts.empty:
        raise InsufficientDataError("primary design absent: no run with wd > 0")
    top = counts[counts == counts.max()].index.to_numpy(float)
    return float(top[np.argmin(np.abs(np.log(top / POWER_WD)))])


def _test_w3(sub: pd.DataFrame) -> Outcome:
    from scipy.stats import binomtest, fisher_exact
    from statsmodels.stats.proportion import confint_proportions_2indep

    times = run_times(sub)
    base = _base_wd(times)
    times = times[times["weight_decay"].isin([0.0, base])]
    n = {"zero": int((times["weight_decay"] == 0).sum()), "base": int((times["weight_decay"] == base).sum())}
    if min(n.values()) < W3_MIN_SEEDS:
        raise InsufficientDataError(f"primary design absent: {n['zero']} run(s) at wd = 0 and {n['base']} at the "
                                    f"base wd {base:g}; W3 needs >= {W3_MIN_SEEDS} in each")
    # one budget for both arms: the smallest budget among the compared runs (a run with a longer budget
    # counts as grokked only if it did so within it)
    budget = float(times["max_steps"].min()) if "max_steps" in times else float(times["t_grok"].max())
    grokked = (~times["grok_censored"] & (times["t_grok"] <= budget)).to_numpy()
    zero = (times["weight_decay"] == 0).to_numpy()
    g = {"zero": int(grokked[zero].sum()), "base": int(grokked[~zero].sum())}
    p_help = float(fisher_exact([[g["base"], n["base"] - g["base"]], [g["zero"], n["zero"] - g["zero"]]],
                                alternative="greater")[1])
    p_groks = float(binomtest(g["zero"], n["zero"], 0.5, alternative="greater").pvalue)
    lo, hi = confint_proportions_2indep(g["base"], n["base"], g["zero"], n["zero"], method="newcomb",
                                        alpha=ALPHA)
    notes = (f"lr {times['lr'].iloc[0]:g}; budget {budget:g} steps (the smallest of the compared runs'); grokked "
             f"(test accuracy {pct(GROK_ACC)}) within it: wd = 0 {g['zero']}/{n['zero']}, base wd {base:g} "
             f"{g['base']}/{n['base']}; Fisher one-sided p = {p_help:.3g}; binomial p(wd = 0 groks in most "
             f"runs) = {p_groks:.3g}")
    if p_help < ALPHA:
        verdict, p, supports = "supported", p_help, "supported"
    elif p_groks < ALPHA:
        verdict, p, supports = "contradicted", p_groks, "contradicted"
    else:
        verdict = "inconclusive"
        p, supports = (p_help, "supported") if p_help <= p_groks else (p_groks, "contradicted")
    diff = g["base"] / n["base"] - g["zero"] / n["zero"]
    return Outcome(verdict=verdict, test="Fisher's exact test (one-sided) / exact binomial test",
                   statistic_name="fraction grokked: base wd minus wd = 0", statistic=diff,
                   effect_name="fraction grokked within the budget: base wd minus wd = 0", effect_size=diff,
                   ci_low=float(lo), ci_high=float(hi), confidence=1 - ALPHA, p_value=p, p_supports=supports,
                   n_runs=n["zero"] + n["base"], notes=notes)


# ---------------------------------------------------------------------------- W4: norm fall rate far above equilibrium
def _window_ratio(steps, norm, t_fit, lr, wd) -> float | None:
    """Fall rate of the norm over lr*wd, from the norm's peak after t_fit while it is >= NORM_FAR x its final value.

    The rate is the OLS slope of -(1/2) ln(||theta||^2 - ||theta_final||^2): far above the final norm it is
    -d ln||theta||/dt, and it removes the slowing that AdamW's equilibrium adds as the norm comes down to
    it (with Adam's unit-size updates ||theta||^2 relaxes to its equilibrium at exactly 2 lr*wd*rate; the
    plain -d ln||theta||/dt would read a rate of 2 as ~1.75 over this window). None when the norm is never
    that far above its final value on >= 3 logged steps after t_fit.
    """
    after = steps >= t_fit
    s, w = steps[after], norm[after]
    if len(s) < 3:
        return None
    final = norm[-1]
    peak = int(np.argmax(w))
    far = w[peak:] >= NORM_FAR * final
    end = peak + (int(np.argmin(far)) if not far.all() else len(far))
    if end - peak < 3:
        return None
    slope = np.polyfit(s[peak:end], 0.5 * np.log(w[peak:end] ** 2 - final ** 2), 1)[0]
    return float(-slope / (lr * wd)) if slope < 0 else RATE_FLOOR


def _rates(sub: pd.DataFrame) -> tuple[np.ndarray, int]:
    times = run_times(sub).set_index("run_id")
    ratios = []
    for run_id, g in sub[sub["metric"] == "weight_norm"].groupby("run_id", sort=True):
        row = times.loc[run_id]
        if row["fit_censored"]:
            continue
        steps, norm = run_series(g, "weight_norm")
        r = _window_ratio(steps, norm, row["t_fit"], float(row["lr"]), float(row["weight_decay"]))
        if r is not None:
            ratios.append(r)
    return np.array(ratios), len(times)


def _test_w4(sub: pd.DataFrame) -> Outcome:
    ratios, n_all = _rates(sub)
    if len(ratios) < 3:
        raise InsufficientDataError(
            f"{len(ratios)} of {n_all} run(s) have a norm >= {NORM_FAR:g}x its final value on >= 3 logged steps "
            f"after t_fit (far above AdamW's equilibrium); W4 needs 3 (a larger init scale alpha, or a smaller "
            f"lr*wd against t_fit, puts the norm there)")
    lr_ = np.log(ratios)
    mean, se = float(lr_.mean()), float(lr_.std(ddof=1) / math.sqrt(len(lr_)))
    notes = (f"per-run ratios {np.array2string(ratios, precision=2, separator=', ')} (geometric mean "
             f"{math.exp(mean):.2f}); {n_all - len(ratios)} run(s) without a far-from-equilibrium window")
    return equivalence_outcome(estimate=mean, se=max(se, 1e-12), df=len(lr_) - 1, target=0.0, margin=RATE_MARGIN,
                               test=f"TOST (t over runs) on the mean ln r, margin ln 2 = {RATE_MARGIN:.3f}",
                               statistic_name="mean ln r, r = (-d ln||theta||/dt) / (lr*wd)",
                               effect_name="mean ln r (theory: 0)", n_runs=len(lr_), notes=notes)


# ---------------------------------------------------------------------------- W6: decay toward init
def _common_grid(times: pd.DataFrame) -> tuple[np.ndarray, float]:
    """t_grok of every run on one grid: up to the next multiple of the coarsest linear logging interval.

    Runs with different budgets log on different log-spaced grids; left as logged, one arm's crossings
    would read earlier or later by up to a grid spacing (a planted null comparing budgets 6,000 and 8,000
    rejected in one direction only). Censored times stay at the run's last step.
    """
    t = times["t_grok"].to_numpy(float)
    every = float(times["log_every"].max()) if "log_every" in times and times["log_every"].max() > 0 else 0.0
    if every <= 0:
        return t, 0.0
    return np.where(times["grok_censored"], t, np.ceil(t / every) * every), every


def _test_w6(sub: pd.DataFrame) -> Outcome:
    from scipy.stats import norm

    times = run_times(sub)
    both = times.groupby("weight_decay")["decay_target"].nunique()
    strata = both[both >= 2].index
    times = times[times["weight_decay"].isin(strata) & times["decay_target"].isin(["zero", "init"])]
    if times.empty or times["decay_target"].nunique() < 2:
        raise InsufficientDataError("primary design absent: no wd level with runs decaying toward zero and toward "
                                    "init at the same lr")
    init = (times["decay_target"] == "init").to_numpy()
    event = ~times["grok_censored"].to_numpy(bool)
    t_grok, grid = _common_grid(times)
    test = permutation_logrank(t_grok, event, init, strata=times["weight_decay"].to_numpy())
    o_e, var, p = test.o_minus_e, test.variance, test.p_two_sided
    if var <= 0:
        raise InsufficientDataError(f"no run reached test accuracy {pct(GROK_ACC)} in a stratum holding both "
                                    "decay targets")
    log_hr, se = o_e / var, 1 / math.sqrt(var)
    z = norm.ppf(1 - ALPHA / 2)
    frac = {k: f"{int(event[m].sum())}/{int(m.sum())}" for k, m in (("zero", ~init), ("init", init))}
    budgets = sorted({float(b) for b in times["max_steps"]}) if "max_steps" in times else []
    notes = (f"lr {times['lr'].iloc[0]:g}; strata wd {', '.join(f'{s:g}' for s in strata)}; grokked within "
             f"the budget ({', '.join(f'{b:g}' for b in budgets)} steps; crossings read on a common {grid:g}-step "
             f"grid): toward zero {frac['zero']}, toward init "
             f"{frac['init']}; observed - expected grokking events of the init runs {o_e:.2f} (variance "
             f"{var:.2f}); the interval is Wald's on Peto's estimate, descriptive: the verdict rests on the "
             f"exact permutation p")
    direction = "supported" if o_e < 0 else "contradicted"
    return Outcome(verdict=direction if p < ALPHA else "inconclusive",
                   test=(f"log-rank test stratified by wd, exact permutation p (time to test accuracy "
                         f"{pct(GROK_ACC)}, censored at the budget)"),
                   statistic_name="observed - expected grokking events, init runs", statistic=o_e,
                   effect_name="Peto log hazard ratio of grokking, init vs zero (theory: < 0)", effect_size=log_hr,
                   ci_low=log_hr - z * se, ci_high=log_hr + z * se, confidence=1 - ALPHA, p_value=p,
                   p_supports=direction, n_runs=len(times), notes=notes)


# ---------------------------------------------------------------------------- planted worlds (calibration)
#: The planted "Power world" at the quick scale (the omnigrok quick MLP, a+b mod 31, train fraction 0.7, lr
#: 1e-2): t_fit ~ 62 steps at every wd (alpha 1; larger alphas fit later, :func:`planted.quick_t_fit`) and
#: t_grok ~ 1,300 at wd 1 (the study's runs: 950-1,650), so t_grok - t_fit ~ 1,240; both scale like 1/lr
#: (pilot: lr / 2 at wd 1 gave t_fit 100-119 and t_grok 1,500-1,650).
REF_LR, REF_WD = 1e-2, 1.0
T_FIT_REF, DELAY_REF = 62.0, 1240.0
#: Planted seed noise (natural-log sd): delays 0.2 (the quick runs spread 950-1,650 at wd 1, sd ~0.2), t_fit
#: 0.1, the W4 fall rate 0.15 between runs, logged norm 0.005 per step.
SD_DELAY, SD_FIT, SD_RATE, SD_NORM = 0.2, 0.1, 0.15, 0.005
#: W4 world: the norm the runs settle at, 9.2 w0 at lr 1e-2, wd 1 (w0 ~ 7.32), and nearly the same at every
#: lr and wd where runs grok (measured 9.9 at wd 0.3, 10.3 at wd 0.1, 9.3 at lr 5e-3): (lr/wd)^0.05.
W0, NORM_EQ_REF, NORM_EQ_EXP = 7.32, 9.2, 0.05
#: W6: smallest effect of interest (Power et al. give no number): decay toward init doubles the delay.
INIT_FACTOR = 2.0


def _world(cfg, rng, *, wd_exp=-1.0, lr_exp=None, bend=0.0, knot=None, fit_exp=0.0, zero_wd_delay=np.inf,
           init_factor=INIT_FACTOR, base_wd=None, base_delay=None):
    """(t_fit, t_grok) of one planted run. wd = 0 groks after ``zero_wd_delay``; ``base_wd`` runs after
    ``base_delay`` when given (W3's scenarios)."""
    o = cfg.optim
    lr, wd = o.lr, o.weight_decay
    t_fit = (T_FIT_REF * (REF_LR / lr) * (wd / REF_WD if wd > 0 else 1.0) ** fit_exp * math.exp(rng.normal(0, SD_FIT))
             * quick_t_fit(cfg.model.alpha) / quick_t_fit(1.0))
    noise = math.exp(rng.normal(0, SD_DELAY))
    if wd <= 0:
        delay = zero_wd_delay * noise
    elif base_wd is not None and base_delay is not None and wd == base_wd:
        delay = base_delay * noise
    else:
        x = math.log10(wd / REF_WD)
        b_lr = wd_exp if lr_exp is None else lr_exp
        log_delay = math.log10(DELAY_REF) + wd_exp * x + b_lr * math.log10(lr / REF_LR)
        if knot is not None:
            log_delay += bend * max(math.log10(wd / knot), 0.0)
        delay = 10 ** log_delay * noise
    if o.decay_target == "init" and wd > 0:
        delay *= init_factor
    return t_fit, t_fit + delay


def _tidy(runs) -> pd.DataFrame:
    """One tidy table from [(cfg, steps, {metric: values})]: the rows :func:`planted.run_frame` builds."""
    flats = [cfg.flat() for cfg, _, _ in runs]
    sizes = np.array([len(steps) * len(m) for _, steps, m in runs])
    cols = {"run_id": pd.Categorical(np.repeat([cfg.run_id for cfg, _, _ in runs], sizes)),
            "status": np.repeat("complete", sizes.sum())}
    for key in flats[0]:
        cols[key] = pd.Series([f[key] for f in flats]).repeat(sizes).to_numpy()
    cols["step"] = np.concatenate([np.tile(np.asarray(s, float), len(m)) for _, s, m in runs])
    cols["metric"] = pd.Categorical(np.concatenate([np.repeat(list(m), len(s)) for _, s, m in runs]))
    cols["value"] = np.concatenate([np.concatenate([np.asarray(v, float) for v in m.values()]) for _, _, m in runs])
    return pd.DataFrame(cols)


@functools.lru_cache(maxsize=64)
def _steps(budget) -> np.ndarray:
    class _C:  # logged_steps reads cfg.budget only
        pass
    c = _C()
    c.budget = budget
    return planted.logged_steps(c)


@functools.lru_cache(maxsize=16)
def _skeleton(configs: tuple, metrics: tuple) -> pd.DataFrame:
    """The planted table of ``configs`` without its values (every column but ``value`` is fixed)."""
    return _tidy([(cfg, _steps(cfg.budget), {m: np.zeros(len(_steps(cfg.budget))) for m in metrics})
                  for cfg in configs])


@functools.lru_cache(maxsize=64)
def _admitted(configs: tuple, runs: str) -> tuple:
    """Which configs a design's run filter admits (config columns only: the same in every draw)."""
    if not runs:
        return tuple(True for _ in configs)
    frame = pd.DataFrame([c.flat() for c in configs])
    return tuple(frame.index.isin(frame.query(runs, engine="python").index))


def _table(configs, rng, norm=None, only=None, **world) -> pd.DataFrame:
    """A planted tidy table: every config's run on the trainer's step grid, times from :func:`_world`.

    ``only`` (a Design): every run is drawn, so each keeps the noise it has in the full table, but only the
    runs the design's run filter admits are written out (the verdict is the same; the calibration of
    thousands of draws is faster). Run ids and the metric name are categorical, for the same reason.
    """
    configs = tuple(configs)
    keep = _admitted(configs, only.runs if only is not None else "")
    metrics = ("train_acc", "test_acc") + (("weight_norm",) if norm is not None else ())
    values = []
    for cfg, kept in zip(configs, keep):
        steps = _steps(cfg.budget)
        t_fit, t_grok = _world(cfg, rng, **world)
        curves = planted.accuracy_curves(steps, t_fit, t_grok) if kept else {}
        if norm is not None:
            curves["weight_norm"] = norm(cfg, steps, t_fit, rng)
        if kept:
            values.extend(curves[m] for m in metrics)
    kept_configs = tuple(c for c, k in zip(configs, keep) if k)
    if not kept_configs:
        return _skeleton(configs[:1], metrics).iloc[:0]
    table = _skeleton(kept_configs, metrics).copy(deep=False)
    table["value"] = np.concatenate(values)
    return table


def power_world(configs, rng) -> pd.DataFrame:
    """Every run of ``configs`` in the planted Power world (each prediction's effect, with the weight norm)."""
    return _table(configs, rng, norm=lambda cfg, steps, t_fit, rng: norm_trajectory(cfg, steps, 1.0))


def _standard_wd_levels(configs):
    """wd > 0 levels of the standard arm at its most common lr (what W5's design selects)."""
    std = [c for c in configs if c.optim.decay_target == "zero" and c.optim.fixed_norm is None
           and c.model.alpha == 1 and c.optim.weight_decay > 0]
    if not std:
        return []
    lrs = pd.Series([c.optim.lr for c in std])
    counts = lrs.value_counts()
    lr = counts[counts == counts.max()].index.min()
    return sorted({c.optim.weight_decay for c in std if c.optim.lr == lr})


def _plant_w1(configs, scenario, rng):
    exp = {"effect": -1.0, "null": -1.0 + SLOPE_MARGIN, "opposite": -1.0 - SLOPE_MARGIN}[scenario]
    return _table(configs, rng, wd_exp=exp, lr_exp=-1.0, only=_W1_DESIGN)


def _plant_w5(configs, scenario, rng):
    levels = _standard_wd_levels(configs)
    knot = _knot(levels) if levels else REF_WD
    bend = {"effect": 0.0, "null": DIFF_MARGIN, "opposite": -DIFF_MARGIN}[scenario]
    return _table(configs, rng, wd_exp=-1.0, lr_exp=-1.0, bend=bend, knot=knot, only=_W5_DESIGN)


def _plant_w1b(configs, scenario, rng):
    lr_exp = {"effect": -1.0, "null": -1.0 + DIFF_MARGIN, "opposite": -1.0 - DIFF_MARGIN}[scenario]
    return _table(configs, rng, wd_exp=-1.0, lr_exp=lr_exp, only=_W1B_DESIGN)


def _plant_w2(configs, scenario, rng):
    fit_exp = {"effect": 0.0, "null": FIT_MARGIN, "opposite": -FIT_MARGIN}[scenario]
    return _table(configs, rng, fit_exp=fit_exp, only=_W2_DESIGN)


def _plant_w3(configs, scenario, rng):
    std = [c for c in configs if c.optim.decay_target == "zero" and c.optim.fixed_norm is None
           and c.model.alpha == 1]
    base, budget = None, max((c.budget.max_steps for c in std), default=1)
    if std:
        lrs = pd.Series([c.optim.lr for c in std]).value_counts()
        lr = lrs[lrs == lrs.max()].index.min()
        std = [c for c in std if c.optim.lr == lr]
        counts = pd.Series([c.optim.weight_decay for c in std if c.optim.weight_decay > 0]).value_counts()
        if not counts.empty:
            top = counts[counts == counts.max()].index.to_numpy(float)
            base = float(top[np.argmin(np.abs(np.log(top / POWER_WD)))])
            budget = min(c.budget.max_steps for c in std if c.optim.weight_decay in (0.0, base))
    if scenario == "effect":  # Power/Nanda: no grokking without decay; the base wd groks on the 1/wd law
        return _table(configs, rng, zero_wd_delay=np.inf, only=_W3_DESIGN)
    if scenario == "null":  # wd = 0 behaves like the base wd, both with half the runs grokking in the budget
        half = budget - T_FIT_REF
        return _table(configs, rng, zero_wd_delay=half, base_wd=base, base_delay=half, only=_W3_DESIGN)
    # opposite: wd = 0 groks on the base wd's schedule, the base wd never does
    base_delay = DELAY_REF * (base / REF_WD) ** -1 if base else DELAY_REF
    return _table(configs, rng, zero_wd_delay=base_delay, base_wd=base, base_delay=np.inf, only=_W3_DESIGN)


def _plant_w6(configs, scenario, rng):
    factor = {"effect": INIT_FACTOR, "null": 1.0, "opposite": 1.0 / INIT_FACTOR}[scenario]
    return _table(configs, rng, init_factor=factor, only=_W6_DESIGN)


def norm_trajectory(cfg, steps, rate: float) -> np.ndarray:
    """Noise-free AdamW norm: ||theta||^2 relaxes to its equilibrium at 2 * rate * lr * wd per step.

    The equilibrium is NORM_EQ_REF * w0 at lr 1e-2, wd 1, scaling like (lr / wd)^NORM_EQ_EXP; far above it
    d ln||theta||/dt ~ -rate * lr * wd, and the fall slows as the norm approaches it.
    """
    o = cfg.optim
    n0 = cfg.model.alpha * W0
    if o.weight_decay <= 0:
        return np.full(len(steps), n0)
    eq = NORM_EQ_REF * W0 * ((o.lr / REF_LR) / (o.weight_decay / REF_WD)) ** NORM_EQ_EXP
    k = 2 * rate * o.lr * o.weight_decay
    return np.sqrt(eq ** 2 + (n0 ** 2 - eq ** 2) * np.exp(-k * np.asarray(steps, float)))


def _plant_w4(configs, scenario, rng):
    rate = {"effect": 1.0, "null": 2.0, "opposite": 0.5}[scenario]  # Power: the weights shrink by lr*wd per step

    def norm(cfg, steps, t_fit, rng):
        n = norm_trajectory(cfg, steps, rate * math.exp(rng.normal(0, SD_RATE)))
        return n * np.exp(rng.normal(0, SD_NORM, len(steps)))
    return _table(configs, rng, norm=norm, only=_W4_DESIGN)


# ---------------------------------------------------------------------------- report figures
def figure_curves_per_wd(table):
    """Train/test accuracy against step, one colour per weight decay (decay toward zero, free norm, alpha 1)."""
    from ..plotting import accuracy_grid
    sub, problems = _FIGURE_DESIGN.select(table)
    if problems or sub["weight_decay"].nunique() < 2:
        return None
    return accuracy_grid(sub, hue="weight_decay", label_fmt="wd={:g}")


def figure_times_vs_wd(table):
    """Delay and t_fit against wd (log-log) on W1's design, with the W1 and W5 censored fits."""
    from ..plotting import new_figure
    sub, problems = _W1_DESIGN.select(table)
    if problems or sub.empty or sub["weight_decay"].nunique() < 2:
        return None
    times = run_times(sub)
    fig, axes = new_figure(2, 1, width=4.8)
    ax = axes[0][0]
    ok = ~times["delay_censored"]
    ax.scatter(times.loc[ok, "weight_decay"], times.loc[ok, "delay"].clip(lower=1), color="C0", label="delay")
    ax.scatter(times.loc[~ok, "weight_decay"], times.loc[~ok, "delay"].clip(lower=1), facecolors="none",
               edgecolors="C0", marker="^", label="censored (lower bound)")
    fitted = times[~times["fit_censored"]]
    levels = sorted(fitted["weight_decay"].unique())
    xs = np.geomspace(min(levels), max(levels), 50)
    try:  # W1: one line
        fit = _delay_fit(fitted, ("weight_decay",))
        b0, b1 = fit.coef
        ax.plot(xs, 10 ** (b0 + b1 * np.log10(xs)), color="C1", label=f"W1: slope {b1:.2f}")
    except InsufficientDataError:
        pass
    if len(levels) >= 4:
        try:  # W5: broken line at the middle level
            knot = _knot(levels)
            fit = _delay_fit(fitted, ("weight_decay",), knot=knot)
            b0, b1, b2 = fit.coef
            x = np.log10(xs / knot)
            ax.plot(xs, 10 ** (b0 + b1 * x + b2 * np.maximum(x, 0)), color="C3", ls="--",
                    label=f"W5: {b1:.2f} below / {b1 + b2:.2f} above wd {knot:g}")
        except InsufficientDataError:
            pass
    ax.set_title(f"t_grok - t_fit vs wd (lr {times['lr'].iloc[0]:g})")
    axes[0][1].scatter(times["weight_decay"], times["t_fit"], color="C2")
    axes[0][1].set_title("t_fit vs wd")
    for a in axes[0]:
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("weight decay")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_norm_per_wd(table):
    """Weight norm against step, one colour per weight decay (decay toward zero, free norm, alpha 1)."""
    from ..plotting import curves_by, new_figure
    sub, problems = _FIGURE_DESIGN.select(table)
    if problems or sub["weight_decay"].nunique() < 2 or not (sub["metric"] == "weight_norm").any():
        return None
    fig, axes = new_figure(1, 1, width=6.0)
    curves_by(sub, metric="weight_norm", hue="weight_decay", ax=axes[0][0], label_fmt="wd={:g}")
    axes[0][0].set_yscale("log")
    axes[0][0].set_title("weight norm per weight decay")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the family
_DELAY = (f"t_grok - t_fit (t_fit: train accuracy >= {pct(FIT_ACC)}; t_grok: test accuracy >= {pct(GROK_ACC)}; a "
          "crossing between two logged steps enters as that interval, a run that never reaches test accuracy "
          f"{pct(GROK_ACC)} is right-censored at its budget)")
_AFT = ("a log-normal accelerated-failure-time (censored normal) regression of log10 delay, decided on a t reference "
        "with d - p df and the covariance scaled by d/(d - p) (d runs with a seen delay, p parameters incl. sigma)")
_TOST = (f"Supported if TOST at {pct(ALPHA)} shows the {{what}} inside {{target}} +- {{margin}} (both one-sided "
         f"p < {pct(ALPHA)}); contradicted if a one-sided test at {pct(ALPHA)} shows it outside; otherwise "
         "inconclusive.")


def _tost(what, target, margin):
    return _TOST.format(what=what, target=target, margin=margin)


WEIGHT_DECAY = register(Family(
    name="weight_decay",
    title="Weight decay as a slow regulariser",
    explanation=(
        "Once the training set is fitted the loss gradient nearly vanishes and decoupled weight decay shrinks "
        "every weight by (1 - lr*wd) per step. This slow shrinkage carries the network to a low-norm solution "
        "that generalises: the delay scales like 1/(lr*wd), fitting does not depend on wd, without decay there "
        "is no grokking within a practical budget, and decay toward the initial weights helps less."),
    references=("Power et al. 2022, arXiv 2201.02177",
                "Liu, Michaud, Tegmark 2022 (App. C: t ~ 1/wd), arXiv 2210.01117",
                "Nanda et al. 2023 (App. D.1: wd sweep), arXiv 2301.05217"),
    study="weight_decay",
    predictions=(
        Prediction(
            id="W1", family="weight_decay",
            statement="At fixed lr the delay t_grok - t_fit scales like 1/wd (log-log slope -1).",
            design=_W1_DESIGN,
            paper=("Omnigrok App. C: t ~ 1/wd over ~2 decades of wd (slope -1); Power et al.: decay toward zero "
                   "is the intervention that most speeds generalisation (SCIENCE.md 1c W1)."),
            metrics_needed=("train_acc", "test_acc"), config_present=("lr", "weight_decay"),
            rule=(f"Decay toward zero, free norm, alpha 1, wd > 0, one lr: {_AFT} of the delay {_DELAY} on log10 "
                  f"wd. " + _tost("slope", -1, SLOPE_MARGIN) + f" Margin {SLOPE_MARGIN:g}: a third of the "
                  "predicted exponent; it excludes wd-independence (0) and square-root laws."),
            test=_test_w1,
            calibration=Calibration(plant=_plant_w1, effect=(
                f"effect: slope -1 (Omnigrok App. C), delay {DELAY_REF:g} steps at lr 1e-2, wd 1, scaling 1/lr, "
                f"log-normal seed noise sd {SD_DELAY:g}, censored at each run's budget; null and opposite: the "
                f"two least favourable boundaries, slope -1 +- {SLOPE_MARGIN:g}"))),
        Prediction(
            id="W1b", family="weight_decay",
            statement=("On the lr x wd grid the delay depends on lr*wd only (t ~ 1/(lr*wd)): the exponents of lr "
                       "and of wd are equal."),
            design=_W1B_DESIGN,
            paper=("Power et al. (AdamW decays the weights by (1 - lr*wd) per step): t_grok - t_mem ~ 1/(lr*wd) "
                   "(SCIENCE.md 1c W1); pilot: lr x3 at wd 1 shrank t_mem and t_grok both ~2.8x."),
            metrics_needed=("train_acc", "test_acc"), config_present=("lr", "weight_decay"),
            rule=(f"Decay toward zero, free norm, alpha 1, wd > 0, the cells of the complete lr x wd grid (>= 2 "
                  f"levels of each): {_AFT} of the delay {_DELAY} on log10 lr and log10 wd together. "
                  + _tost("difference b_lr - b_wd", 0, DIFF_MARGIN) + f" Margin {DIFF_MARGIN:g} = "
                  f"{SLOPE_MARGIN:g} x sqrt(2), W1's margin for a difference of two exponents."),
            test=_test_w1b,
            calibration=Calibration(plant=_plant_w1b, effect=(
                f"effect: delay ~ 1/(lr*wd) (b_lr = b_wd = -1), seed noise sd {SD_DELAY:g}; null and opposite: "
                f"b_lr = -1 +- {DIFF_MARGIN:g} with b_wd = -1 (the boundaries)"))),
        Prediction(
            id="W2", family="weight_decay",
            statement="The time to fit the training set, t_fit, does not depend on wd.",
            design=_W2_DESIGN,
            paper=("Omnigrok Fig. 2c; Nanda's saved runs: train loss < 1e-2 at 174 epochs with wd 0.1 vs ~270 "
                   "with wd 1; pilot MLP 260/280/350 steps at wd 0.3/1/3 (SCIENCE.md 1c W2)."),
            metrics_needed=("train_acc",), config_present=("lr", "weight_decay"),
            rule=(f"Decay toward zero, free norm, alpha 1, wd > 0, one lr: normal regression of log10 t_fit "
                  f"(train accuracy >= {pct(FIT_ACC)}; each t_fit known to lie between two logged steps, an "
                  f"interval-censored observation) on log10 wd over fitted runs; each boundary of the margin is "
                  f"tested by likelihood ratio (the signed root of twice the drop of the profile log-likelihood, "
                  f"t reference on n - 3 df), which stays valid when every t_fit falls in one or two grid "
                  f"intervals. "
                  + _tost("slope", 0, FIT_MARGIN) + f" Margin {FIT_MARGIN:g}: t_fit changes by < "
                  f"{10 ** FIT_MARGIN:.1f}x per decade of wd."),
            test=_test_w2,
            calibration=Calibration(plant=_plant_w2, effect=(
                f"effect: t_fit ~ {T_FIT_REF:g} steps at lr 1e-2 whatever wd (seed noise sd {SD_FIT:g}), on the "
                f"trainer's log-linear step grid; null and opposite: t_fit ~ wd^(+-{FIT_MARGIN:g}) (the boundaries)"))),
        Prediction(
            id="W3", family="weight_decay",
            statement="Without weight decay the runs do not grok within the budget, while runs at the base wd do.",
            design=_W3_DESIGN,
            paper=("Power et al. Fig. 1 (Adam, no wd) generalises only after ~1e6 steps; Nanda App. D.1: no "
                   "grokking without wd (SCIENCE.md 1c W3)."),
            metrics_needed=("train_acc", "test_acc"), config_present=("lr", "weight_decay"),
            rule=(f"Decay toward zero, free norm, alpha 1, one lr: wd = 0 against the base wd (the wd > 0 level "
                  f"with the most runs; ties: nearest wd = {POWER_WD:g}), >= {W3_MIN_SEEDS} runs per arm, "
                  f"grokked = test accuracy >= {pct(GROK_ACC)} within the budget (stated in the notes). "
                  f"Supported if Fisher's exact one-sided test shows the base wd groks more often (p < "
                  f"{pct(ALPHA)}); contradicted if the exact binomial test shows P(grok | wd = 0) > 0.5 (p < "
                  f"{pct(ALPHA)}); otherwise inconclusive. No pooled wd > 0 arm."),
            test=_test_w3,
            calibration=Calibration(plant=_plant_w3, effect=(
                "effect: wd = 0 never groks within the budget (Power Fig. 1, Nanda D.1), the base wd groks on "
                "the 1/wd law; null: wd = 0 behaves like the base wd, both with median t_grok at the budget "
                "(half grok: the least conservative point of Fisher's test); opposite: wd = 0 groks on the base "
                "wd's schedule and the base wd never does"))),
        Prediction(
            id="W4", family="weight_decay",
            statement=("While the norm lies far above AdamW's equilibrium after t_fit, it falls at the decay rate: "
                       "d ln||theta||/dt ~ -lr*wd."),
            design=_W4_DESIGN,
            paper=("Power et al.'s mechanism: d log||theta||/dt ~ -lr*wd once train loss is ~0 (SCIENCE.md 1c, "
                   "listed there as W5)."),
            metrics_needed=("train_acc", "weight_norm"), config_present=("lr", "weight_decay", "alpha"),
            rule=(f"Restated for AdamW: Adam's update is ~lr per coordinate whatever the gradient, so the norm "
                  f"settles at an lr*wd-set equilibrium after ~1/(lr*wd) steps and any late step shows its "
                  f"~zero fall rate; the decay rate can only show while the norm is far above it. Runs decaying "
                  f"every tensor toward zero, free norm, wd > 0, init scale alpha >= {FAR_ALPHA:g}: per run, "
                  f"r = (-d ln||theta||/dt) / (lr*wd), measured as the OLS slope of -(1/2) ln(||theta||^2 - "
                  f"||theta_final||^2) (the fall rate, less the slowing the equilibrium adds as the norm nears "
                  f"it) from the norm's peak after t_fit "
                  f"(train accuracy >= {pct(FIT_ACC)}) while the norm stays >= {NORM_FAR:g}x its final value "
                  f"(>= 3 logged steps; a norm that does not fall counts as r = {RATE_FLOOR:g}). "
                  + _tost("mean of ln r over runs (t, n - 1 df)", 0, "ln 2") +
                  " Fewer than 3 such runs: inconclusive (no run far above equilibrium)."),
            test=_test_w4,
            calibration=Calibration(plant=_plant_w4, effect=(
                f"effect: ||theta||^2 relaxes to an equilibrium of {NORM_EQ_REF:g} w0 x ((lr/1e-2)/wd)^{NORM_EQ_EXP:g} at rate "
                f"2 lr*wd (far above it the norm falls at lr*wd), run-to-run rate sd {SD_RATE:g}, logged-norm "
                f"noise {SD_NORM:g}; null and opposite: rates 2 and 1/2 x lr*wd (the boundaries)"))),
        Prediction(
            id="W5", family="weight_decay",
            statement=("One power law in wd holds across the swept range: the log-log slope of the delay is the "
                       "same below and above the middle wd level."),
            design=_W5_DESIGN,
            paper=("Omnigrok App. C: one 1/wd law over ~2 decades; against it, Nanda App. D.1 (delay rising "
                   "with wd: 3k, 5-10k, 20k epochs at 0.3, 1, 3) and our pilot's bend above wd ~ 1 "
                   "(SCIENCE.md 14.1)."),
            metrics_needed=("train_acc", "test_acc"), config_present=("lr", "weight_decay"),
            rule=(f"Decay toward zero, free norm, alpha 1, wd > 0, one lr, >= 4 wd levels: {_AFT} of the delay "
                  f"{_DELAY} on a broken line in log10 wd with its knot at the middle level (the low range is "
                  f"the levels up to it, the high range those from it; one joint fit, so the shared level's "
                  f"runs enter the covariance once); the bend is slope(high) - slope(low). "
                  + _tost("bend", 0, DIFF_MARGIN) + " The per-range slopes are in the notes."),
            test=_test_w5,
            calibration=Calibration(plant=_plant_w5, effect=(
                f"effect: one 1/wd law (bend 0), seed noise sd {SD_DELAY:g}, censored at the budget; null and "
                f"opposite: a bend of +-{DIFF_MARGIN:g} at the middle level (the boundaries)"))),
        Prediction(
            id="W6", family="weight_decay",
            statement="Decay toward the initial weights delays grokking compared with decay toward zero.",
            design=_W6_DESIGN,
            paper=("Power et al. (A.1.2, Fig. 2): decay toward init works, but less well than decay toward 0 "
                   "(no effect size given; SCIENCE.md 1c W3)."),
            metrics_needed=("test_acc",), config_present=("decay_target", "weight_decay", "lr"),
            rule=(f"Free norm, alpha 1, wd > 0, one lr, the wd levels run with both decay targets: log-rank test "
                  f"of the time to test accuracy >= {pct(GROK_ACC)} (right-censored at the budget), init against "
                  f"zero, stratified by wd, with the exact permutation p (labels reassigned within each wd "
                  f"stratum; the chi-square reference is unreliable with a handful of runs per arm); effect = "
                  f"Peto's log hazard ratio of grokking (< 0: init groks later). Supported if init groks later "
                  f"with two-sided p < {pct(ALPHA)}; contradicted if it groks earlier with p < {pct(ALPHA)}; "
                  f"otherwise inconclusive."),
            test=_test_w6,
            calibration=Calibration(plant=_plant_w6, effect=(
                f"effect: decay toward init multiplies the delay by {INIT_FACTOR:g} (smallest effect of interest; "
                f"Power gives no number), seed noise sd {SD_DELAY:g}, censored at the budget; null: x1; "
                f"opposite: x{1 / INIT_FACTOR:g}"))),
    ),
    figures=(figure_curves_per_wd, figure_times_vs_wd, figure_norm_per_wd),
))
