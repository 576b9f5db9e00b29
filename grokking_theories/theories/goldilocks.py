"""Family `goldilocks`: Omnigrok's weight-norm Goldilocks zone and the LU mechanism.

Liu, Michaud & Tegmark (2022) argue that generalising solutions live in a
narrow band of weight norms. Training loss is low for any norm above a
critical one (an "L" against the norm), test loss is lowest at that norm (a
"U"). A large initialisation starts the network outside the band: it fits the
training set at a large norm, and weight decay then takes time ~ ln(w0/w_c) /
(lr * wd) to walk it into the band, which is the grokking delay. A small
initialisation, or training held at a norm inside the band, leaves no delay.

Runs used: the unconstrained init-scale sweep (``fixed_norm`` empty; alpha
varies; weight decay > 0 for G1 and G3) and the fixed-norm arm (``fixed_norm``
set, no weight decay) for G2 and G4. Any run set with those columns works.
"""
from __future__ import annotations

import numpy as np

from ..stats import (InsufficientDataError, Outcome, Prediction, bootstrap_ci,
                     peak_prominence_test)
from ._series import grok_times, run_series, runs
from .base import Family, register

ALPHA = 0.05  # level of every test of this family (Holm-adjusted across the report)
NO_DELAY = 1.0  # "no delay": median (t_grok - t_fit) / t_fit below this (generalisation within ~2 t_fit)
NARROW_CV = 0.15  # G3: a "narrow band" = coefficient of variation of the norm at t_grok below 15 %
BAND_ACC = 0.9  # G2/G4: a fixed norm is inside the band when its runs end with test accuracy >= 0.9


def _unconstrained(table, decayed: bool = True):
    """Free-norm runs (fixed_norm empty), with weight decay > 0 if ``decayed``."""
    sub = table[table["fixed_norm"].isna()]
    return sub[sub["weight_decay"] > 0] if decayed else sub


def _fixed(table):
    return table[table["fixed_norm"].notna()]


def _final(table, metric: str):
    """Value of ``metric`` at each run's last logged step, indexed by run_id."""
    rows = table[table["metric"] == metric].sort_values("step")
    return rows.groupby("run_id")["value"].last()


# ---------------------------------------------------------------- G1: delay grows with alpha
def _test_g1(table) -> Outcome:
    from scipy.stats import spearmanr

    sub = _unconstrained(table)
    times = grok_times(sub)
    times = times[~times["fit_censored"]]
    if times["alpha"].nunique() < 3 or len(times) < 6:
        raise InsufficientDataError(f"{len(times)} fitted runs at {times['alpha'].nunique()} alphas; G1 needs "
                                    ">= 6 runs at >= 3 alphas")
    # Rank correlation of the delay with alpha. A censored delay (test accuracy never reached 0.99)
    # is longer than any observed one, so it ranks last; ranks stay valid where a Cox fit would
    # diverge (perfectly ordered seeds) and need no proportional-hazards assumption.
    delay = np.where(times["grok_censored"], np.inf, times["delay"].to_numpy(float))
    log_alpha = np.log(times["alpha"].to_numpy(float))
    rho, p = spearmanr(log_alpha, delay)
    # bootstrap over runs: resample run indices, recompute rho (constant resamples give NaN and are dropped)
    ci = bootstrap_ci(np.arange(len(delay), dtype=float),
                      lambda idx: spearmanr(log_alpha[idx.astype(int)], delay[idx.astype(int)])[0], seed=0)
    smallest = times[times["alpha"] == times["alpha"].min()]
    rel = np.where(smallest["grok_censored"], np.inf, smallest["delay"] / smallest["t_fit"].clip(lower=1))
    rel_small = float(np.median(rel))
    if rho > 0 and p < ALPHA and rel_small < NO_DELAY:
        verdict = "supported"
    elif rho < 0 and p < ALPHA:
        verdict = "contradicted"  # larger init generalises *sooner* after fitting
    else:
        verdict = "inconclusive"
    notes = (f"median (t_grok - t_fit) / t_fit at the smallest alpha ({times['alpha'].min():g}): {rel_small:.3g} "
             f"(no delay means < {NO_DELAY}); {int(times['grok_censored'].sum())} of {len(times)} delays censored")
    return Outcome(verdict, "Spearman rho(ln alpha, delay)", float(rho), float(rho), "rank correlation",
                   ci.ci_low, ci.ci_high, ci.confidence, float(p), "supported" if rho > 0 else "contradicted",
                   len(times), notes)


# ---------------------------------------------------------------- G2: LU curves at fixed norm
def _lu_curves(table):
    """Final train and test loss of the fixed-norm runs: (norms, train (seeds x norms), test (seeds x norms))."""
    sub = _fixed(table)
    if sub.empty:
        raise InsufficientDataError("no fixed-norm runs")
    runs_cfg = sub.groupby("run_id")[["fixed_norm", "seed"]].first()
    runs_cfg["train"] = _final(sub, "train_loss")
    runs_cfg["test"] = _final(sub, "test_loss")
    train = runs_cfg.pivot_table(index="seed", columns="fixed_norm", values="train")
    test = runs_cfg.pivot_table(index="seed", columns="fixed_norm", values="test")
    return train.columns.to_numpy(float), train.to_numpy(float), test.to_numpy(float)


def _test_g2(table) -> Outcome:
    norms, train, test = _lu_curves(table)
    if len(norms) < 3:
        raise InsufficientDataError(f"{len(norms)} fixed norms; G2 needs >= 3")
    # U: an interior minimum of test loss, i.e. an interior peak of -log(test loss), beyond seed noise.
    u = peak_prominence_test(np.log(norms), -np.log(test), alpha=ALPHA, seed=0)
    mean_train = np.nanmean(train, axis=0)
    # L: train loss high at the smallest norm and ~0 (below 1 % of it) from the test-loss minimum upward.
    l_shape = bool(np.all(mean_train[u.peak_index:] < 0.01 * mean_train[0]))
    verdict = "supported" if (u.significant and l_shape) else \
        "contradicted" if (u.prominence < 0 and u.ci_high < 0) else "inconclusive"
    notes = (f"test-loss minimum at fixed norm {np.exp(u.x_peak):.3g} w0; train loss "
             f"{'is' if l_shape else 'is not'} L-shaped (mean final train loss by norm: "
             + ", ".join(f"{n:g}: {v:.2g}" for n, v in zip(norms, mean_train)) + ")")
    return Outcome(verdict, "prominence of the test-loss minimum (log-loss units)", u.prominence, u.prominence,
                   "depth of the U below both ends, in ln(test loss)", u.ci_low, u.ci_high, 0.95, u.p_value,
                   "supported" if u.prominence > 0 else "contradicted", int(np.isfinite(test).sum()), notes)


# ---------------------------------------------------------------- G3: norm at t_grok in a narrow band
def _norm_at(table, times, column: str):
    norms = []
    for run_id, g in runs(table):
        row = times.loc[times["run_id"] == run_id]
        if row.empty or bool(row[column.replace("t_", "") + "_censored"].iloc[0]):
            continue
        steps, w = run_series(g, "weight_norm")
        t = float(row[column].iloc[0])
        norms.append(float(np.interp(t, steps, w)))
    return np.array(norms)


def _cv(x):
    return float(np.std(x, ddof=1) / np.mean(x))


def _test_g3(table) -> Outcome:
    sub = _unconstrained(table)
    times = grok_times(sub)
    at_grok = _norm_at(sub, times, "t_grok")
    if len(at_grok) < 4:
        raise InsufficientDataError(f"{len(at_grok)} runs reached test accuracy 0.99; G3 needs 4")
    ci = bootstrap_ci(at_grok, _cv, seed=0)
    at_init = _final(sub[sub["step"] == 0], "weight_norm")
    verdict = "supported" if ci.ci_high < NARROW_CV else "contradicted" if ci.ci_low > NARROW_CV else "inconclusive"
    notes = (f"norm at t_grok: mean {at_grok.mean():.3g}, range {at_grok.min():.3g}-{at_grok.max():.3g}; "
             f"initial norms span {at_init.min():.3g}-{at_init.max():.3g}")
    return Outcome(verdict, "CV of the weight norm at t_grok", ci.estimate, ci.estimate,
                   "coefficient of variation across runs", ci.ci_low, ci.ci_high, ci.confidence, None, None,
                   len(at_grok), notes)


# ---------------------------------------------------------------- G4: fixed norm in the band removes the delay
def band(table) -> tuple[float, float] | None:
    """The Goldilocks band: the range of fixed norms whose runs end with mean test accuracy >= BAND_ACC."""
    sub = _fixed(table)
    if sub.empty:
        return None
    acc = sub.groupby("run_id")["fixed_norm"].first().to_frame()
    acc["acc"] = _final(sub, "test_acc")
    mean = acc.groupby("fixed_norm")["acc"].mean()
    inside = mean[mean >= BAND_ACC].index
    return (float(inside.min()), float(inside.max())) if len(inside) else None


def _test_g4(table) -> Outcome:
    from scipy.stats import mannwhitneyu

    fixed, free = _fixed(table), _unconstrained(table)
    if fixed.empty or free.empty:
        raise InsufficientDataError("G4 needs fixed-norm runs and unconstrained runs with weight decay")
    zone = band(table)
    norms = sorted(fixed["fixed_norm"].unique())
    if zone is None:
        return Outcome("contradicted", "fixed norms that generalise", 0.0, 0.0, "number of norms in the band",
                       notes=f"no fixed norm among {norms} reached mean test accuracy {BAND_ACC}",
                       n_runs=int(fixed["run_id"].nunique()))
    t_in = grok_times(fixed[fixed["fixed_norm"].between(*zone)])
    t_free = grok_times(free)
    rel_in = np.where(t_in["grok_censored"], np.inf, t_in["delay"] / t_in["t_fit"].clip(lower=1))
    rel_free = np.where(t_free["grok_censored"], np.inf, t_free["delay"] / t_free["t_fit"].clip(lower=1))
    rel_in, rel_free = rel_in[~t_in["fit_censored"]], rel_free[~t_free["fit_censored"]]
    if len(rel_in) < 2 or len(rel_free) < 2:
        raise InsufficientDataError("G4 needs >= 2 fitted runs inside the band and >= 2 unconstrained ones")
    test = mannwhitneyu(rel_in, rel_free, alternative="two-sided")
    outside_fails = norms[0] < zone[0] or norms[-1] > zone[1]
    med_in, med_free = float(np.median(rel_in)), float(np.median(rel_free))
    finite = np.isfinite([med_in, med_free]).all()
    effect = med_in / med_free if finite and med_free > 0 else float("nan")
    if test.pvalue < ALPHA and med_in < med_free and outside_fails:
        verdict = "supported"
    elif test.pvalue < ALPHA and med_in > med_free:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    notes = (f"band {zone[0]:g}-{zone[1]:g} x w0 (norms swept: {', '.join(f'{n:g}' for n in norms)}); median "
             f"relative delay inside the band {med_in:.3g} vs unconstrained {med_free:.3g}")
    return Outcome(verdict, "Mann-Whitney U of relative delay, in band vs unconstrained", float(test.statistic),
                   effect, "median relative delay in band / unconstrained", notes=notes, p_value=float(test.pvalue),
                   p_supports="supported" if med_in < med_free else "contradicted",
                   n_runs=len(rel_in) + len(rel_free))


# ---------------------------------------------------------------- report figures
def _w0(table) -> float:
    """Median alpha = 1 init norm, read off the fixed-norm runs (weight_norm / fixed_norm)."""
    fixed = _fixed(table)
    rows = fixed[fixed["metric"] == "weight_norm"]
    return float(np.median(rows["value"] / rows["fixed_norm"])) if not rows.empty else float("nan")


def _shade_band(ax, table, vertical: bool):
    zone = band(table)
    if zone is None:
        return
    lo, hi = zone
    if not vertical:
        w0 = _w0(table)
        lo, hi = lo * w0, hi * w0
    span = ax.axvspan if vertical else ax.axhspan
    span(lo, hi, color="gold", alpha=0.25, label="Goldilocks band")


def figure_accuracy_per_alpha(table):
    """Train and test accuracy against step, one colour per alpha, one row per weight decay."""
    from ._plotting import accuracy_grid
    free = _unconstrained(table, decayed=False)
    if free.empty or free["alpha"].nunique() < 2:
        return None
    return accuracy_grid(free, "alpha", "alpha={:g}", rows="weight_decay")


def figure_times_vs_alpha(table):
    """t_fit, t_grok and the delay against alpha (log-log); open markers are censored at the budget."""
    from ._plotting import new_figure, palette
    free = _unconstrained(table, decayed=False)
    if free.empty or free["alpha"].nunique() < 2:
        return None
    times = grok_times(free)
    fig, axes = new_figure(2, 1, width=4.8)
    wds = sorted(times["weight_decay"].unique())
    for colour, wd in zip(palette(len(wds) + 1), wds):
        sub = times[times["weight_decay"] == wd]
        for ax, col, cens in ((axes[0][0], "t_grok", "grok_censored"), (axes[0][1], "delay", "delay_censored")):
            ok = ~sub[cens]
            ax.scatter(sub.loc[ok, "alpha"], np.maximum(sub.loc[ok, col], 1), color=colour, label=f"wd {wd:g}")
            ax.scatter(sub.loc[~ok, "alpha"], np.maximum(sub.loc[~ok, col], 1), facecolors="none",
                       edgecolors=colour, marker="^", label=f"wd {wd:g}, censored")
        axes[0][0].scatter(sub["alpha"], sub["t_fit"], color=colour, marker="x", alpha=0.6, label=f"t_fit, wd {wd:g}")
    for ax, title in zip(axes[0], ("t_grok (x: t_fit)", "delay t_grok - t_fit")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("init scale alpha")
        ax.set_title(title)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_norm_trajectories(table):
    """Weight norm against step per alpha (runs with weight decay), the Goldilocks band shaded."""
    from ._plotting import curves_by, new_figure
    free = _unconstrained(table)
    if free.empty or free["alpha"].nunique() < 2:
        return None
    fig, axes = new_figure(1, 1, width=6.0)
    ax = axes[0][0]
    curves_by(ax, free, "weight_norm", "alpha", label_fmt="alpha={:g}")
    _shade_band(ax, table, vertical=False)
    ax.set_yscale("log")
    ax.set_title("weight norm entering the band (weight decay > 0)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_lu(table):
    """LU curves: final train (L) and test (U) loss against the fixed norm, band shaded."""
    from ._plotting import new_figure
    try:
        norms, train, test = _lu_curves(table)
    except InsufficientDataError:
        return None
    fig, axes = new_figure(2, 1, width=4.8)
    for ax, values, name in ((axes[0][0], train, "final train loss (L)"), (axes[0][1], test, "final test loss (U)")):
        for row in values:
            ax.scatter(norms, row, color="grey", alpha=0.5, s=12)
        ax.plot(norms, np.nanmean(values, axis=0), color="black", lw=2)
        _shade_band(ax, table, vertical=True)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("fixed weight norm / w0")
        ax.set_title(name)
    if band(table) is not None:
        axes[0][1].legend(fontsize=7)
    fig.tight_layout()
    return fig


GOLDILOCKS = register(Family(
    name="goldilocks",
    title="Omnigrok: a Goldilocks zone of weight norm (LU mechanism)",
    explanation=(
        "Generalising solutions sit in a narrow band of weight norms. Training loss is low at any norm above "
        "a critical one (L-shaped), test loss is lowest near it (U-shaped). A large initialisation fits the "
        "training set far outside the band, and weight decay needs ~ln(w0/w_c)/(lr*wd) steps to bring the "
        "norm into it: that walk is the grokking delay. Start inside the band, or hold the norm there, and the "
        "delay disappears."),
    references=("Liu, Michaud, Tegmark 2022, Omnigrok, arXiv 2210.01117",
                "Liu et al. 2022, Towards understanding grokking, arXiv 2205.10343"),
    study="omnigrok",
    predictions=(
        Prediction(
            id="G1", family="goldilocks",
            statement=("With weight decay, the delay t_grok - t_fit grows with the init scale alpha, and at the "
                       "smallest alpha there is (almost) no delay."),
            metrics_needed=("train_acc", "test_acc"), config_needed=("alpha",),
            config_present=("fixed_norm", "weight_decay"),
            rule=(f"Spearman rank correlation of the delay (a delay censored at the budget ranks longest) with "
                  f"ln alpha over unconstrained runs with weight decay > 0. Supported if rho > 0 with p < {ALPHA} "
                  f"(Holm) and the median delay / t_fit at the smallest alpha is below {NO_DELAY}; contradicted if "
                  f"rho < 0 with p < {ALPHA}; otherwise inconclusive."),
            test=_test_g1),
        Prediction(
            id="G2", family="goldilocks",
            statement=("At a fixed weight norm (no weight decay), final test loss is U-shaped in the norm and "
                       "final train loss is L-shaped."),
            metrics_needed=("train_loss", "test_loss"), config_needed=("fixed_norm",),
            rule=(f"U: the seed-mean of -ln(final test loss) over the swept norms has an interior peak whose "
                  f"prominence is significant (bootstrap CI > 0 and intersection-union p < {ALPHA}). L: mean final "
                  f"train loss at every norm from the test-loss minimum up is below 1 % of its value at the "
                  f"smallest norm. Supported if U and L; contradicted if the prominence CI lies below 0 "
                  f"(monotone test loss); otherwise inconclusive."),
            test=_test_g2),
        Prediction(
            id="G3", family="goldilocks",
            statement="The weight norm at t_grok lies in a narrow band across init scales and seeds.",
            metrics_needed=("test_acc", "weight_norm"), config_present=("fixed_norm", "weight_decay"),
            rule=(f"Coefficient of variation of the weight norm at t_grok over unconstrained runs with weight "
                  f"decay that reach test accuracy 0.99 (>= 4 runs). Supported if its 95 % bootstrap CI lies below "
                  f"{NARROW_CV}; contradicted if it lies above {NARROW_CV}; otherwise inconclusive."),
            test=_test_g3),
        Prediction(
            id="G4", family="goldilocks",
            statement=("Training at a fixed norm inside the Goldilocks band removes the delay, while fixed norms "
                       "outside the band fail to generalise."),
            metrics_needed=("train_acc", "test_acc"), config_needed=("fixed_norm",),
            config_present=("weight_decay",),
            rule=(f"Band = fixed norms whose runs end with mean test accuracy >= {BAND_ACC}. Supported if the "
                  f"relative delay (t_grok - t_fit) / t_fit of runs in the band is smaller than that of "
                  f"unconstrained runs with weight decay (two-sided Mann-Whitney p < {ALPHA}, Holm) and some swept "
                  f"norm lies outside the band; contradicted if no fixed norm is in the band, or the in-band delay "
                  f"is larger (p < {ALPHA}); otherwise inconclusive."),
            test=_test_g4),
    ),
    figures=(figure_accuracy_per_alpha, figure_times_vs_alpha, figure_norm_trajectories, figure_lu),
))
