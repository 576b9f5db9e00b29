"""Family `weight_decay`: weight decay as a slow regulariser (Power et al. 2022).

After the training set is fitted the loss gradient is tiny, and decoupled
weight decay shrinks every weight by a factor (1 - lr * wd) per step. The
explanation: this slow shrinkage, not the data gradient, carries the network
to a low-norm solution that generalises. So the time from fitting to
generalising scales like 1 / (lr * wd), fitting itself does not depend on wd,
without decay there is no grokking within a practical budget, and the norm
falls after t_fit at about the decay rate.

Runs used: a weight-decay sweep at one learning rate (including wd = 0), an
lr x wd grid, and decay toward the initial weights as a separate arm. Every
prediction filters what it needs, so any run set with a wd sweep works.
"""
from __future__ import annotations

import numpy as np

from ..stats import (InsufficientDataError, Outcome, Prediction, bootstrap_ci, censored_loglog_slope, logrank,
                     loglog_slope)
from ._series import grok_times, run_series, runs
from .base import Family, register

ALPHA = 0.05  # level of every test (Holm-adjusted across the report)
EQUIV = 0.15  # W2: |slope of log t_fit on log wd| below this counts as "independent of wd"
BEND = 0.3  # W5: a change of the log-log slope larger than this between wd ranges is a material bend
RATE_BAND = (0.5, 2.0)  # W4: measured norm decay / (lr * wd) inside this band counts as "at the predicted rate"


def _base_lr(table):
    """Runs at the most common learning rate: W1/W2/W5 vary wd alone (lr rescales the whole trajectory)."""
    lr = table.groupby("run_id")["lr"].first().mode().iloc[0]
    return table[table["lr"] == lr], float(lr)


def _delays(table):
    """Fitted runs with wd > 0 at the most common lr: delay, and whether it was observed or censored."""
    sub, lr = _base_lr(table[table["weight_decay"] > 0])
    times = grok_times(sub)
    return times[~times["fit_censored"]], lr


def _censored_slope(times):
    """Log-normal AFT slope of the delay on wd; censored delays (never reached 0.99) count as 'later than'."""
    return censored_loglog_slope(times["weight_decay"], times["delay"].clip(lower=1), ~times["delay_censored"])


def _wd_ranges(levels):
    """W5's low and high halves of the sorted wd levels; they share the middle level."""
    half = len(levels) // 2
    return levels[:half + 1], levels[half:]


def _test_w1(table) -> Outcome:
    times, lr = _delays(table)
    if times["weight_decay"].nunique() < 3:
        raise InsufficientDataError(f"{times['weight_decay'].nunique()} weight-decay levels > 0; W1 needs 3")
    fit = _censored_slope(times)
    if fit.ci_low <= -1 <= fit.ci_high and fit.ci_high < 0:
        verdict = "supported"
    elif not fit.ci_low <= -1 <= fit.ci_high:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    notes = (f"lr {lr:g}; censored log-normal regression of the delay on wd over {fit.n} runs, {fit.n_censored} "
             f"censored (test accuracy never reached 0.99); p(slope=-1) = {fit.p_value(-1.0):.3g}, "
             f"p(slope=0) = {fit.p_value(0.0):.3g}" + ("" if fit.converged else "; the MLE did not fully converge"))
    return Outcome(verdict, "log-log slope of t_grok - t_fit on wd", fit.slope, fit.slope, "slope (theory: -1)",
                   fit.ci_low, fit.ci_high, 1 - fit.alpha, fit.p_value(0.0),
                   "supported" if fit.slope < 0 else None, fit.n, notes)


def _test_w2(table) -> Outcome:
    sub, lr = _base_lr(table[table["weight_decay"] > 0])
    times = grok_times(sub)
    times = times[~times["fit_censored"]]
    if times["weight_decay"].nunique() < 3:
        raise InsufficientDataError("W2 needs fitted runs at >= 3 weight-decay levels")
    # TOST on the slope at level 0.05 <=> its 90 % CI inside (-EQUIV, EQUIV).
    fit = loglog_slope(times["weight_decay"], times["t_fit"].clip(lower=1), alpha=2 * ALPHA, null_values=(0.0,))
    if -EQUIV < fit.ci_low and fit.ci_high < EQUIV:
        verdict = "supported"
    elif fit.ci_low > EQUIV or fit.ci_high < -EQUIV:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    notes = f"lr {lr:g}; equivalence margin +-{EQUIV} on the log-log slope (90 % CI = TOST at 5 %)"
    return Outcome(verdict, "log-log slope of t_fit on wd", fit.slope, fit.slope, "slope (theory: 0)",
                   fit.ci_low, fit.ci_high, 1 - 2 * ALPHA, None, None, fit.n, notes)


def _test_w3(table) -> Outcome:
    times = grok_times(table)
    times = times[~times["fit_censored"]]
    has_zero = (times["weight_decay"] == 0).any()
    if not has_zero or not (times["weight_decay"] > 0).any():
        raise InsufficientDataError("W3 needs fitted runs with wd = 0 and with wd > 0")
    groups = (times["weight_decay"] > 0).astype(int).to_numpy()
    t = np.maximum(times["t_grok"].to_numpy(float), 1.0)
    events = ~times["grok_censored"].to_numpy(bool)
    test = logrank(t, events, groups)
    frac_zero = float(events[groups == 0].mean())
    frac_pos = float(events[groups == 1].mean())
    if frac_zero == 0 and frac_pos > 0.5 and test.p_value < ALPHA:
        verdict = "supported"
    elif frac_zero >= frac_pos or frac_zero > 0.5:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    notes = f"grokked within budget: wd = 0 {frac_zero:.0%}, wd > 0 {frac_pos:.0%}"
    return Outcome(verdict, "log-rank chi^2 (wd = 0 vs wd > 0)", test.statistic, frac_pos - frac_zero,
                   "fraction grokked: wd > 0 minus wd = 0", p_value=test.p_value,
                   p_supports="supported" if frac_pos > frac_zero else "contradicted", n_runs=len(times), notes=notes)


def _decay_rates(table):
    """Per run: measured d ln||theta|| / dt from t_fit to t_grok (or the end), over the predicted -lr * wd."""
    times = grok_times(table)
    out = []
    for run_id, g in runs(table):
        row = times[times["run_id"] == run_id].iloc[0]
        lr, wd = float(g["lr"].iloc[0]), float(g["weight_decay"].iloc[0])
        # the rate law is for decay toward zero; decay toward the init pulls toward theta_0 instead
        if wd <= 0 or row["fit_censored"] or g["fixed_norm"].notna().any() or g["decay_target"].iloc[0] != "zero":
            continue
        steps, norm = run_series(g, "weight_norm")
        end = row["t_grok"]
        # from the norm's peak after fitting (it keeps rising briefly as logits grow) to generalisation
        window = (steps >= row["t_fit"]) & (steps <= end)
        if window.sum() < 4:
            continue
        s, w = steps[window], np.log(norm[window])
        peak = int(np.argmax(w))
        if len(s) - peak < 4:
            continue
        slope = np.polyfit(s[peak:], w[peak:], 1)[0]
        out.append(float(-slope / (lr * wd)))
    return np.array(out)


def _test_w4(table) -> Outcome:
    ratios = _decay_rates(table)
    if len(ratios) < 3:
        raise InsufficientDataError(f"{len(ratios)} runs with a norm trajectory after t_fit; W4 needs 3")
    ci = bootstrap_ci(ratios, np.median, seed=0)
    lo, hi = RATE_BAND
    if lo <= ci.ci_low and ci.ci_high <= hi:
        verdict = "supported"
    elif ci.ci_high < lo or ci.ci_low > hi:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return Outcome(verdict, "median measured / predicted norm decay rate", ci.estimate, ci.estimate,
                   "(-d ln||theta||/dt) / (lr * wd)", ci.ci_low, ci.ci_high, ci.confidence, None, None,
                   len(ratios), f"band {lo}-{hi}; per-run ratios from the norm's peak after t_fit to t_grok")


def _test_w5(table) -> Outcome:
    times, lr = _delays(table)
    levels = sorted(times["weight_decay"].unique())
    if len(levels) < 4:
        raise InsufficientDataError(f"{len(levels)} weight-decay levels > 0; a per-range fit needs 4")
    low, high = _wd_ranges(levels)
    fits = [_censored_slope(times[times["weight_decay"].isin(part)]) for part in (low, high)]
    diff = fits[1].slope - fits[0].slope
    se = float(np.hypot(fits[0].slope_se, fits[1].slope_se))
    from scipy.stats import norm
    z = norm.ppf(1 - ALPHA / 2)
    lo, hi = diff - z * se, diff + z * se
    if -BEND < lo and hi < BEND:
        verdict = "supported"  # one law across the range: any bend is smaller than BEND
    elif lo > BEND or hi < -BEND:
        verdict = "contradicted"  # the law bends materially
    else:
        verdict = "inconclusive"
    notes = (f"lr {lr:g}; low range wd {low[0]:g}-{low[-1]:g}: slope {fits[0].slope:.2f} "
             f"[{fits[0].ci_low:.2f}, {fits[0].ci_high:.2f}], {fits[0].n_censored} censored; high range wd "
             f"{high[0]:g}-{high[-1]:g}: slope {fits[1].slope:.2f} [{fits[1].ci_low:.2f}, "
             f"{fits[1].ci_high:.2f}], {fits[1].n_censored} censored")
    return Outcome(verdict, "slope(high wd) - slope(low wd)", diff, diff, "change of the log-log slope",
                   lo, hi, 1 - ALPHA, None, None, len(times), notes)


# ---------------------------------------------------------------- report figures
def figure_curves_per_wd(table):
    """Train/test accuracy against step, one colour per weight decay."""
    from ._plotting import accuracy_grid
    sub, _ = _base_lr(table[table["fixed_norm"].isna()])
    if sub["weight_decay"].nunique() < 2:
        return None
    return accuracy_grid(sub, "weight_decay", "wd={:g}")


def figure_times_vs_wd(table):
    """t_grok and t_fit against wd (log-log) with the fitted slope; open triangles are censored."""
    from ._plotting import new_figure
    sub, lr = _base_lr(table[(table["fixed_norm"].isna()) & (table["weight_decay"] > 0)])
    if sub.empty or sub["weight_decay"].nunique() < 2:
        return None
    times = grok_times(sub)
    fig, axes = new_figure(2, 1, width=4.8)
    ax = axes[0][0]
    ok = ~times["grok_censored"]
    ax.scatter(times.loc[ok, "weight_decay"], times.loc[ok, "delay"].clip(lower=1), color="C0", label="delay")
    ax.scatter(times.loc[~ok, "weight_decay"], times.loc[~ok, "delay"].clip(lower=1), facecolors="none",
               edgecolors="C0", marker="^", label="censored (lower bound)")
    fitted = times[~times["fit_censored"]]
    levels = sorted(fitted["weight_decay"].unique())
    ranges = [("all", levels)] + (list(zip(("low", "high"), _wd_ranges(levels))) if len(levels) >= 4 else [])
    for colour, (name, lv) in zip(("C1", "C3", "C4"), ranges):
        try:  # the censored regression of W1 (whole range) and W5 (per range)
            fit = _censored_slope(fitted[fitted["weight_decay"].isin(lv)])
        except InsufficientDataError:
            continue
        xs = np.geomspace(min(lv), max(lv), 50)
        ax.plot(xs, 10 ** (fit.intercept + fit.slope * np.log10(xs)), color=colour, ls="-" if name == "all" else "--",
                label=f"{name}: slope {fit.slope:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}]")
    ax.set_title(f"t_grok - t_fit vs wd (lr {lr:g})")
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
    """Weight norm against step, one colour per weight decay."""
    from ._plotting import curves_by, new_figure
    sub, _ = _base_lr(table[table["fixed_norm"].isna()])
    if sub["weight_decay"].nunique() < 2:
        return None
    fig, axes = new_figure(1, 1, width=6.0)
    curves_by(axes[0][0], sub, "weight_norm", "weight_decay", label_fmt="wd={:g}")
    axes[0][0].set_yscale("log")
    axes[0][0].set_title("weight norm per weight decay")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


WEIGHT_DECAY = register(Family(
    name="weight_decay",
    title="Weight decay as a slow regulariser",
    explanation=(
        "Once the training set is fitted the loss gradient nearly vanishes and decoupled weight decay shrinks "
        "every weight by (1 - lr*wd) per step. This slow shrinkage carries the network to a low-norm solution "
        "that generalises: the delay scales like 1/(lr*wd), fitting does not depend on wd, and without decay "
        "there is no grokking within a practical budget."),
    references=("Power et al. 2022, arXiv 2201.02177",
                "Liu, Michaud, Tegmark 2022 (App. C: t ~ 1/wd), arXiv 2210.01117"),
    study="weight_decay",
    predictions=(
        Prediction(
            id="W1", family="weight_decay",
            statement="The delay t_grok - t_fit scales like 1/wd at fixed lr (log-log slope -1, not 0).",
            metrics_needed=("train_acc", "test_acc"), config_needed=("weight_decay",), config_present=("lr",),
            rule=("Log-normal accelerated-failure-time regression of log(t_grok - t_fit) on log wd over fitted "
                  "runs with wd > 0 at the most common lr; a run that never reaches test accuracy 0.99 is "
                  "right-censored at its budget. Supported if the 95 % Wald CI of the slope contains -1 and lies "
                  "below 0; contradicted if it excludes -1; otherwise inconclusive."),
            test=_test_w1),
        Prediction(
            id="W2", family="weight_decay",
            statement="The time to fit the training set, t_fit, does not depend on wd.",
            metrics_needed=("train_acc",), config_needed=("weight_decay",), config_present=("lr",),
            rule=(f"Equivalence (TOST at 5 %) of the log-log slope of t_fit on wd (wd > 0, most common lr) with "
                  f"0 within +-{EQUIV}: supported if its 90 % CI lies inside (-{EQUIV}, {EQUIV}); contradicted if "
                  f"it lies entirely outside; otherwise inconclusive."),
            test=_test_w2),
        Prediction(
            id="W3", family="weight_decay",
            statement="With wd = 0 the runs do not grok within the budget, while runs with wd > 0 do.",
            metrics_needed=("train_acc", "test_acc"), config_needed=("weight_decay",),
            rule=("Log-rank test of time to test accuracy 0.99 (censored at the budget), wd = 0 vs wd > 0, over "
                  "fitted runs. Supported if no wd = 0 run groks, more than half of the wd > 0 runs do and "
                  "p < 0.05 (Holm); contradicted if wd = 0 runs grok as often as wd > 0 runs or more than half "
                  "of them grok; otherwise inconclusive."),
            test=_test_w3),
        Prediction(
            id="W4", family="weight_decay",
            statement="After t_fit the weight norm falls at about the decay rate: d ln||theta||/dt ~ -lr*wd.",
            metrics_needed=("train_acc", "test_acc", "weight_norm"),
            config_present=("lr", "weight_decay", "fixed_norm", "decay_target"),
            rule=(f"Per run with wd > 0 decaying toward zero: slope of ln||theta|| from its peak after t_fit to "
                  f"t_grok, divided by "
                  f"-lr*wd. Supported if the 95 % bootstrap CI of the median ratio lies inside {RATE_BAND}; "
                  f"contradicted if it lies entirely outside; otherwise inconclusive."),
            test=_test_w4),
        Prediction(
            id="W5", family="weight_decay",
            statement=("One power law in wd holds across the swept range (pilot runs suggest it bends at large "
                       "wd): fitted per range, the low-wd and high-wd log-log slopes of the delay agree."),
            metrics_needed=("train_acc", "test_acc"), config_needed=("weight_decay",), config_present=("lr",),
            rule=(f"Split the wd levels (> 0, most common lr) into a low and a high half sharing the middle "
                  f"level; fit each with the censored regression of W1. With the 95 % CI of slope(high) - slope(low): supported if it lies "
                  f"inside (-{BEND}, {BEND}); contradicted if it lies entirely outside (a material bend); "
                  f"otherwise inconclusive. The per-range slopes are in the notes."),
            test=_test_w5),
    ),
    figures=(figure_curves_per_wd, figure_times_vs_wd, figure_norm_per_wd),
))
