"""Family `double_descent`: grokking is double descent resolved over training time.

The explanation (Nakkiran et al. 2019; Davies et al. 2023; Huang et al. 2024):
a network learns a fast, memorising pattern and a slow, generalising one.
While the first fits the training set the test loss rises; when the second
takes over it falls again, so the test loss over time descends twice, and
the picture depends on model size against data size: a model whose
memorisation capacity just matches the training set is worst at a fixed
budget (model-wise double descent), and label noise makes the peak larger.

Every statistic is read from each run by one fixed rule:

* **the test-loss peak** (:func:`test_loss_peak`): t_peak is the step of the
  largest test loss after step 0; its *rise* is log10 of that loss over the
  lowest test loss up to t_peak, its *fall* log10 of it over the lowest test
  loss after t_peak; the peak's *prominence* is the smaller of the two
  (decades). A falling curve has prominence 0; a curve that rises and never
  falls has fall 0.
* **t_interp**: where train accuracy reaches FIT_ACC, the geometric mean of the
  last logged step below it and the first at or above it (t_fit, the first
  logged step, is late by up to one logging interval: a bias D2 would read).
* **the memorisation capacity** of a width (:func:`capacity_table`): the
  number of training examples a run with *random* labels (``label_noise`` 1)
  fits at its last step (final train accuracy x training-set size), with the
  sweep's optimiser and budget; the median over seeds. The **interpolation
  threshold** w* is the width at which that capacity equals the sweep's
  training-set size, interpolated log-log between the two sweep widths that
  bracket it (:func:`interpolation_width`).

Predictions (SCIENCE.md 5.4; the issue's D1-D6), each decided once on its
primary design, with every line a module constant fixed before any data:

* **D1** the test loss is non-monotone: its peak's prominence exceeds PEAK_LINE;
* **D2** the peak sits near the interpolation time: log10(t_peak / t_interp) within
  +-PEAK_TIME_DECADES;
  **D2b** the time of the peak moves with width (falls as the width grows);
* **D3** at a fixed budget the test loss against width peaks at the
  interpolation threshold w* (above both ends of the sweep);
* **D4** the critical train fraction for generalisation falls as width grows
  (Huang et al.);
* **D5** label noise raises the peak;
* **D6** accuracy shows little or no double descent where the loss shows it
  (model-wise, at w*).

Primary designs: clean labels (the grokking setting) at one task, optimiser
and weight decay. D1, D2, D5 use the house width HOUSE_WIDTH (by stated
preference, not run counts); D2b, D3 and D6 the width sweep at the most common train
fraction (with the capacity runs for w*); D4 the train fraction x width grid.
The noisy width sweep is a secondary cell. The model width is the MLP's
``width`` or the transformer's ``d_model``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..levels import ALPHA, FIT_ACC, pct
from ..stats import Calibration, Design, InsufficientDataError, Outcome, Prediction, directional_outcome
from ._series import first_step, one_sample_decision, series_by_run
from .base import Family, register

# ----------------------------------------------------------------------------
# constants of the rules (fixed before any data is seen)
# ----------------------------------------------------------------------------

#: D1: a test-loss peak counts when it stands 25 % above the loss on both sides (log10 1.25 = 0.097 decades),
#: a bump a reader of the curve would call a peak; smooth full-batch curves give 0 on a monotone run.
PEAK_LINE = math.log10(1.25)
#: D2: "near the interpolation time" = within one decade of t_interp ("same order", SCIENCE.md 5.4 and 12;
#: Nanda et al.'s test loss peaks ~5x after train loss < 1e-2, which passes; a peak at the onset of grokking,
#: 10-30x after t_interp in our pilots, does not).
PEAK_TIME_DECADES = 1.0
#: D6: "little or no double descent" in accuracy = a model-wise dip smaller than 5 accuracy points.
ACC_DIP_LINE = 0.05
#: Accuracies are compared on the logit scale (D4), clipped here (an accuracy of exactly 1 has no logit).
_LOGIT_CLIP = 1e-3
#: Least number of usable runs for a one-sample t-test; excluded runs may be at most this fraction of the
#: eligible ones (a selected minority decides nothing).
MIN_RUNS = 4
MAX_EXCLUDED_FRAC = 0.25
#: Least runs per width in a two-sample comparison of widths (D3, D6) and per noise level (D5).
MIN_PER_CELL = 2
#: Least distinct widths for a width sweep (D2b, D3, D6, D4).
MIN_WIDTHS = 3

#: Config columns every design holds at one level: one task, optimiser and decay; the same model family.
_HELD = ("arch", "op", "p", "lr", "weight_decay", "decay_target")
_FREE = "fixed_norm.isna()"
#: The house width, by stated preference (not by run counts, so seeds added at other widths for D3 never move
#: D1, D2, D5 there): the MLP width of every other study and Nanda et al.'s d_model. A sweep without it is read
#: at its most replicated width.
HOUSE_WIDTH = 128
_PREFER = {"width": (HOUSE_WIDTH,), "d_model": (HOUSE_WIDTH,)}
#: D1, D2: clean labels at one train fraction and the house width.
DESIGN_CELL = Design(runs=f"label_noise == 0 and {_FREE}", hold=(*_HELD, "train_frac", "width", "d_model"),
                     prefer=_PREFER, min_seeds=MIN_RUNS)
#: D2b: the clean width sweep at one train fraction.
DESIGN_WIDTHS = Design(runs=f"label_noise == 0 and {_FREE}", hold=(*_HELD, "train_frac"))
#: D3, D6: the width sweep at its lowest label noise (clean where present) plus the capacity runs (random
#: labels, label_noise 1) of the same model and optimiser.
DESIGN_MODELWISE = Design(runs=_FREE, hold=_HELD)
#: D4: the clean train fraction x width grid.
DESIGN_FRACTIONS = Design(runs=f"label_noise == 0 and {_FREE}", hold=_HELD, levels={"train_frac": 3})
#: D5: clean and noisy runs (0 < label_noise < 1) of one width and train fraction.
DESIGN_NOISE = Design(runs=f"label_noise < 1 and {_FREE}", hold=(*_HELD, "train_frac", "width", "d_model"),
                      prefer=_PREFER, levels={"label_noise": 2}, min_seeds=3)


# ----------------------------------------------------------------------------
# per-run statistics
# ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Peak:
    """The test-loss peak of one run (steps; decades of log10 test loss; NaN where undefined)."""

    t_interp: float  # where train accuracy reaches FIT_ACC (:func:`interpolation_time`; NaN: never)
    t_peak: float  # logged step of the largest test loss after step 0 (to within half a logging interval)
    t_peak_resolution: float  # half the logged interval around t_peak, in decades (how far off t_peak can be)
    rise: float  # log10(peak / lowest test loss up to t_peak)
    fall: float  # log10(peak / lowest test loss after t_peak)
    prominence: float  # min(rise, fall)
    t_last: float  # the run's last logged step


def interpolation_time(train_acc) -> float:
    """t_interp: where train accuracy reaches FIT_ACC, resolved to the logged grid without bias.

    The first logged step at or above FIT_ACC (t_fit) is late by up to one logging interval; its geometric
    mean with the last logged step below is late on average by nothing (the crossing is equally likely
    anywhere in the interval, in log-time). NaN when never reached; the first step when already there.
    """
    fit = first_step(train_acc, FIT_ACC)
    if fit is None:
        return float("nan")
    steps = train_acc[0]
    before = steps[(steps < fit) & (steps > 0)]
    return float(math.sqrt(before[-1] * fit)) if before.size else float(fit)


def test_loss_peak(series: dict) -> Peak:
    """The peak of a run's ``test_loss`` (and its t_interp from ``train_acc``), by the rule in the module docs."""
    nan = float("nan")
    t_interp = interpolation_time(series["train_acc"]) if "train_acc" in series else nan
    loss = series.get("test_loss")
    if loss is None or len(loss[0]) < 3:
        return Peak(t_interp=t_interp, t_peak=nan, t_peak_resolution=nan, rise=nan, fall=nan, prominence=nan,
                    t_last=nan)
    steps, values = loss[0], np.log10(np.maximum(loss[1], 1e-300))
    after0 = np.flatnonzero(steps > 0)
    i = int(after0[np.argmax(values[after0])])
    rise = float(values[i] - values[:i + 1].min())
    fall = float(values[i] - values[i:].min())
    return Peak(t_interp=t_interp, t_peak=float(steps[i]), t_peak_resolution=step_resolution(steps, i), rise=rise,
                fall=fall, prominence=min(rise, fall), t_last=float(steps[-1]))


def step_resolution(steps, i: int) -> float:
    """How far (decades) a time read as logged step ``steps[i]`` (i >= 1) can be off: half the mean logged
    interval around it, 0.25 log10(next / previous) (the step itself stands in for a missing neighbour)."""
    lo = steps[i - 1] if steps[i - 1] > 0 else steps[i]
    hi = steps[i + 1] if i + 1 < len(steps) else steps[i]
    return 0.25 * math.log10(hi / lo)


def _configs(table):
    """One row of config columns per run, indexed by run_id, with the derived ``model_width`` and ``n_train``."""
    from ..config import TaskConfig
    from ..tasks import train_size

    cfg = table.drop(columns=[c for c in ("step", "metric", "value") if c in table.columns])
    cfg = _with_width(cfg.drop_duplicates("run_id").set_index("run_id"))
    sizes = {key: train_size(TaskConfig(op=key[0], p=int(key[1]), train_frac=float(key[2])))
             for key in set(zip(cfg["op"], cfg["p"], cfg["train_frac"]))}
    cfg["n_train"] = [sizes[key] for key in zip(cfg["op"], cfg["p"], cfg["train_frac"])]
    return cfg


def peak_table(table):
    """One row per run: its :class:`Peak`, final test loss and accuracy, and its config columns."""
    import pandas as pd

    data = series_by_run(table, {"train_acc", "test_acc", "test_loss"})
    rows = []
    for rid, s in data.items():
        peak = test_loss_peak(s)
        final = {m: (float(s[m][1][-1]) if m in s and len(s[m][1]) else float("nan"))
                 for m in ("train_acc", "test_acc", "test_loss")}
        rows.append({"run_id": rid, **peak.__dict__, **{f"final_{m}": v for m, v in final.items()}})
    cols = ["run_id", *Peak.__dataclass_fields__, "final_train_acc", "final_test_acc", "final_test_loss"]
    return pd.DataFrame(rows, columns=cols).merge(_configs(table).reset_index(), on="run_id", how="left")


def value_at_step(series, t: float) -> float:
    """A (steps, values) series at step ``t`` (linear interpolation; NaN beyond the last logged step)."""
    steps, values = series
    if len(steps) == 0 or t > steps[-1]:
        return float("nan")
    return float(np.interp(t, steps, values))


def budget_table(table):
    """Per run: log10 test loss and test accuracy at the common budget T (the last step every run reached).

    Model-wise double descent is read at one budget: runs that stopped early (``stop_after_grok``) set T.
    Returns (frame with run_id, model_width, log_test_loss, test_acc and config columns, T).
    """
    data = series_by_run(table, {"test_loss", "test_acc"})
    lasts = [s["test_loss"][0][-1] for s in data.values() if "test_loss" in s and len(s["test_loss"][0])]
    if not lasts:
        raise InsufficientDataError("no run has a logged test loss")
    budget = float(min(lasts))
    cfg = _configs(table)
    frame = cfg.reset_index()[["run_id", "model_width", "label_noise", "train_frac", "n_train", "p"]].copy()
    frame["log_test_loss"] = [math.log10(max(value_at_step(data[r]["test_loss"], budget), 1e-300))
                              if "test_loss" in data[r] else float("nan") for r in frame["run_id"]]
    frame["test_acc"] = [value_at_step(data[r]["test_acc"], budget) if "test_acc" in data[r] else float("nan")
                         for r in frame["run_id"]]
    return frame, budget


# ----------------------------------------------------------------------------
# memorisation capacity and the interpolation threshold
# ----------------------------------------------------------------------------


def capacity_table(table):
    """Per width of the random-label runs (``label_noise`` 1): capacity = median over seeds of final train
    accuracy x training-set size, and whether it is censored (every example fitted: the capacity is at least
    that). Columns: model_width, capacity, n_train, censored, n_runs."""
    import pandas as pd

    cfg = _configs(table)
    random = cfg[cfg["label_noise"] == 1.0]
    if random.empty:
        return pd.DataFrame(columns=["model_width", "capacity", "n_train", "censored", "n_runs"])
    data = series_by_run(table[table["run_id"].isin(random.index)], {"train_acc"})
    rows = []
    for rid, r in random.iterrows():
        acc = data.get(rid, {}).get("train_acc")
        if acc is None or not len(acc[1]):
            continue
        rows.append({"model_width": r["model_width"], "fitted": float(acc[1][-1]) * r["n_train"],
                     "n_train": r["n_train"], "censored": float(acc[1][-1]) >= FIT_ACC})
    per_run = pd.DataFrame(rows)
    if per_run.empty:
        return pd.DataFrame(columns=["model_width", "capacity", "n_train", "censored", "n_runs"])
    out = per_run.groupby("model_width").agg(capacity=("fitted", "median"), n_train=("n_train", "max"),
                                             censored=("censored", "all"), n_runs=("fitted", "size"))
    return out.reset_index()


def interpolation_width(capacity, n_target: float) -> tuple[float, str]:
    """The width w* whose memorisation capacity equals ``n_target`` (log-log interpolation between the sweep
    widths that bracket it), and a note. Raises InsufficientDataError when the capacities do not bracket it.
    """
    if capacity is None or len(capacity) < 2:
        raise InsufficientDataError("the memorisation capacity is measured at fewer than 2 widths "
                                    "(random-label runs, label_noise = 1)")
    cap = capacity.sort_values("model_width")
    w, c = cap["model_width"].to_numpy(float), cap["capacity"].to_numpy(float)
    shown = ", ".join(f"{wi:g}: {ci:.0f}{'+' if cs else ''}" for wi, ci, cs in zip(w, c, cap["censored"]))
    note = f"capacity by width (examples; + = all fitted) {shown}; target {n_target:.0f} training examples"
    above = np.flatnonzero(c >= n_target)
    if above.size == 0:
        raise InsufficientDataError(f"no measured width memorises {n_target:.0f} random labels: the "
                                    f"interpolation threshold lies above the sweep ({note})")
    j = int(above[0])
    if j == 0:
        raise InsufficientDataError(f"the narrowest width already memorises {n_target:.0f} random labels: the "
                                    f"interpolation threshold lies below the sweep ({note})")
    lw, lc = np.log10(w[j - 1:j + 1]), np.log10(np.maximum(c[j - 1:j + 1], 1.0))
    frac = (math.log10(n_target) - lc[0]) / (lc[1] - lc[0]) if lc[1] > lc[0] else 1.0
    w_star = float(10 ** (lw[0] + frac * (lw[1] - lw[0])))
    bound = (f" (an upper bound: width {w[j]:g} fitted every example, so its capacity is a lower bound)"
             if bool(cap["censored"].iloc[j]) else "")
    return w_star, f"{note}; w* = {w_star:.3g}{bound}"


# ----------------------------------------------------------------------------
# two-sample helpers
# ----------------------------------------------------------------------------


def _welch(a, b) -> tuple[float, float, float]:
    """Mean difference a - b, its Welch standard error and degrees of freedom."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)) if va + vb > 0 else float("nan")
    return float(a.mean() - b.mean()), se, df


def _one_sided(diff: float, se: float, df: float, *, greater: bool, null: float = 0.0) -> float:
    """One-sided t p-value of ``diff > null`` (greater) or ``diff < null``."""
    from scipy import stats

    if not se > 0:
        return float("nan")
    t = (diff - null) / se
    return float(stats.t(df).sf(t) if greater else stats.t(df).cdf(t))


def _modal(values):
    """The most common value (ties: the smallest)."""
    import pandas as pd

    counts = pd.Series(values).value_counts()
    return min(counts[counts == counts.max()].index)


# ----------------------------------------------------------------------------
# D1: the test loss over time is non-monotone
# ----------------------------------------------------------------------------


def _test_d1(table) -> Outcome:
    peaks = peak_table(table)
    values = peaks["prominence"].to_numpy(float)
    used = values[np.isfinite(values)]
    notes = (f"{len(peaks)} run(s), {len(used)} with a test loss; median rise {np.nanmedian(peaks['rise']):.3f}, "
             f"median fall {np.nanmedian(peaks['fall']):.3f} decades") if len(used) else "no test loss"
    if used.size >= MIN_RUNS and np.ptp(used) == 0 and used[0] < PEAK_LINE:
        return _all_below(used, len(peaks), notes)
    return one_sample_decision(
        used, len(peaks), len(peaks) - len(used), notes, null=PEAK_LINE, expected="positive",
        test=f"one-sample t-test of the mean prominence = {PEAK_LINE:.3f} decades",
        statistic_name="t", effect_name="mean peak prominence (decades of test loss)",
        describe=lambda m: f"mean prominence {m:.3f} decades ({10 ** m:.2f}x)", min_runs=MIN_RUNS,
        max_excluded_frac=MAX_EXCLUDED_FRAC)


def _all_below(used, n_eligible: int, notes: str) -> Outcome:
    """Every run's prominence is the same value below the line (smooth monotone curves give exactly 0): no
    spread for a t-test, so the exact sign test decides (no run of n above the line: p = 2 x 0.5^n)."""
    from scipy.stats import binomtest

    p = float(binomtest(0, int(used.size)).pvalue)
    capped = n_eligible - used.size > MAX_EXCLUDED_FRAC * n_eligible
    return Outcome(verdict="contradicted" if p < ALPHA and not capped else "inconclusive",
                   test=f"exact sign test of the prominence against {PEAK_LINE:.3f} decades (no spread)",
                   statistic_name="runs above the line", statistic=0.0,
                   effect_name="mean peak prominence (decades of test loss)", effect_size=float(used[0]),
                   ci_low=float(used[0]), ci_high=float(used[0]), p_value=p, p_supports="contradicted",
                   n_runs=int(used.size), notes=f"{notes}; every prominence {used[0]:.3f} decades")


D1_RULE = (
    f"Primary design: clean-label runs (label_noise 0) of one task, optimiser, weight decay and train fraction at "
    f"the house width {HOUSE_WIDTH} (MLP width or transformer d_model; else the most replicated width), "
    f">= {MIN_RUNS} runs. Statistic per run: the "
    f"prominence of the test-loss peak, min(rise, fall) in decades, where the peak is the largest test loss after "
    f"step 0, the rise is measured from the lowest loss before it and the fall to the lowest loss after it. "
    f"Two-sided one-sample t-test of the mean prominence against {PEAK_LINE:.3f} decades (a peak 25 % above both "
    f"sides) at alpha = {pct(ALPHA)}: supported if p < {pct(ALPHA)} and the mean exceeds it (the loss rises and "
    f"falls again); contradicted if p < {pct(ALPHA)} and the mean is below it (monotone within 25 %); otherwise "
    f"inconclusive. Where every run has the same prominence below the line (monotone curves: exactly 0) the "
    f"t-test has no spread and the exact sign test decides (contradicted if p = 2 x 0.5^n < {pct(ALPHA)}). Inconclusive if more than {MAX_EXCLUDED_FRAC:.0%} of the runs have no test loss.")


# ----------------------------------------------------------------------------
# D2: the peak sits near the interpolation time; D2b: its time moves with width
# ----------------------------------------------------------------------------


def _peaked(peaks):
    """Runs with a prominent peak (>= PEAK_LINE) that interpolated (t_interp defined)."""
    return peaks[(peaks["prominence"] >= PEAK_LINE) & np.isfinite(peaks["t_interp"]) & (peaks["t_interp"] > 0)]


def _test_d2(table) -> Outcome:
    import dataclasses

    from ..stats import equivalence_outcome

    peaks = peak_table(table)
    eligible = peaks[peaks["prominence"] >= PEAK_LINE]
    used = _peaked(peaks)
    if len(used) < MIN_RUNS:
        raise InsufficientDataError(f"{len(used)} run(s) with a prominent test-loss peak and a t_interp; the rule "
                                    f"needs {MIN_RUNS} (runs: {len(peaks)}, with a peak: {len(eligible)})")
    x = np.log10(used["t_peak"].to_numpy(float) / used["t_interp"].to_numpy(float))
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    if not se > 0:
        raise InsufficientDataError("log10(t_peak / t_interp) does not vary across runs")
    # t_peak is known to the logging grid only: the mean can be off by the runs' mean half-interval r, so
    # "inside the margin" must hold with the margin shrunk by r, and "outside" with it widened by r
    r = float(used["t_peak_resolution"].mean())
    common = dict(estimate=float(x.mean()), se=se, df=x.size - 1, target=0.0, alpha=ALPHA, statistic_name="t",
                  effect_name="mean log10(t_peak / t_interp) (decades)", n_runs=int(x.size),
                  notes=(f"{len(used)} of {len(peaks)} run(s) with a peak and a t_interp; geometric mean t_peak "
                         f"{10 ** np.log10(used['t_peak']).mean():.0f}, t_interp "
                         f"{10 ** np.log10(used['t_interp']).mean():.0f}; t_peak resolution +-{r:.3f} decades"))
    test = f"TOST of the mean log10(t_peak / t_interp) = 0 within +-{PEAK_TIME_DECADES:g} decade, less the resolution"
    inside = equivalence_outcome(margin=PEAK_TIME_DECADES - r, test=test, **common)
    outside = equivalence_outcome(margin=PEAK_TIME_DECADES + r, test=test, **common)
    out = inside if inside.verdict == "supported" else outside if outside.verdict == "contradicted" else \
        dataclasses.replace(inside, verdict="inconclusive")
    excluded = len(eligible) - len(used)
    if excluded > MAX_EXCLUDED_FRAC * max(len(eligible), 1):
        out = dataclasses.replace(out, verdict="inconclusive", notes=(
            f"{out.notes}; inconclusive by the exclusion cap: {excluded} of {len(eligible)} peaked runs never "
            f"fitted; the test alone would say '{out.verdict}'"))
    return out


D2_RULE = (
    f"Primary design: as D1. Runs used: those with a prominent peak (>= {PEAK_LINE:.3f} decades) that reach train "
    f"accuracy {pct(FIT_ACC)}, >= {MIN_RUNS}. Statistic per run: log10(t_peak / t_interp), t_interp the geometric "
    f"mean of the last logged step below {pct(FIT_ACC)} and the first at or above it. TOST of the "
    f"mean against 0 with margin {PEAK_TIME_DECADES:g} decade at alpha = {pct(ALPHA)} (90 % interval), the margin "
    f"shrunk (for 'supported') or widened (for 'contradicted') by r, the runs' mean half logging interval around "
    f"t_peak (t_peak is known to the grid only): supported if the interval lies inside "
    f"+-({PEAK_TIME_DECADES:g} - r) (the peak is at the interpolation time within a factor 10); contradicted if a "
    f"one-sided test puts the mean beyond +-({PEAK_TIME_DECADES:g} + r) (e.g. a peak at the onset of grokking); "
    f"otherwise inconclusive.")


def _width_of(peaks):
    return peaks["model_width"].to_numpy(float)


def _test_d2b(table) -> Outcome:
    from ..stats import slope_outcome

    peaks = peak_table(table)
    used = _peaked(peaks)
    widths = np.unique(_width_of(used))
    if widths.size < MIN_WIDTHS:
        raise InsufficientDataError(f"runs with a peak at {widths.size} width(s) {widths.tolist()}; the rule "
                                    f"needs {MIN_WIDTHS}")
    out = slope_outcome(_width_of(used), used["t_peak"].to_numpy(float), "negative",
                        statistic_name="log-log slope of t_peak on width")
    import dataclasses

    return dataclasses.replace(out, notes="; ".join(filter(None, [
        out.notes, f"{len(used)} run(s) with a peak at widths {[f'{w:g}' for w in widths]}"])))


D2B_RULE = (
    f"Primary design: the clean-label width sweep at one task, optimiser, weight decay and train fraction. Runs "
    f"used: those with a prominent peak and a t_interp, at >= {MIN_WIDTHS} widths. OLS of log10 t_peak on log10 "
    f"width (width = MLP width or transformer d_model), two-sided t-test of the slope at alpha = {pct(ALPHA)}: "
    f"supported if the slope is negative (wider models interpolate, and peak, earlier); contradicted if it is "
    f"positive; otherwise inconclusive.")


# ----------------------------------------------------------------------------
# D3: model-wise double descent at the interpolation threshold; D6: accuracy's dip there
# ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ModelWise:
    """The cells D3 and D6 compare: the sweep width nearest w* and the sweep's two ends, at budget T."""

    frame: object  # budget_table rows of the clean sweep (one train fraction)
    budget: float
    w_star: float
    w_c: float  # the sweep width nearest w* (log scale)
    w_lo: float
    w_hi: float
    note: str


def model_wise(table) -> ModelWise:
    """Split D3's design into the clean sweep and the capacity runs; find w*, its sweep width and the ends."""
    frame, budget = budget_table(table)
    levels = sorted(frame.loc[frame["label_noise"] < 1.0, "label_noise"].unique())
    if not levels:
        raise InsufficientDataError("no width-sweep runs (label_noise < 1) in the design")
    sweep = frame[frame["label_noise"] == levels[0]]  # clean labels where present (the headline)
    frac = _modal(sweep["train_frac"])
    sweep = sweep[sweep["train_frac"] == frac]
    counts = sweep.groupby("model_width")["run_id"].nunique()
    widths = np.sort(counts[counts >= MIN_PER_CELL].index.to_numpy(float))
    if widths.size < MIN_WIDTHS:
        raise InsufficientDataError(f"the clean sweep has {widths.size} width(s) with >= {MIN_PER_CELL} runs "
                                    f"({counts.to_dict()}); the rule needs {MIN_WIDTHS}")
    sweep = sweep[sweep["model_width"].isin(widths)]
    n_target = float(sweep["n_train"].iloc[0])
    # the capacity runs share the sweep's optimiser and budget; their own time budget is their own last step
    capacity = capacity_table(table)
    w_star, note = interpolation_width(capacity, n_target)
    w_c = float(widths[np.argmin(np.abs(np.log10(widths) - math.log10(w_star)))])
    if w_c in (widths[0], widths[-1]):
        raise InsufficientDataError(f"the sweep width nearest the threshold ({w_c:g}) is an end of the sweep "
                                    f"{widths.tolist()}: no shoulder on one side ({note})")
    return ModelWise(frame=sweep, budget=budget, w_star=w_star, w_c=w_c, w_lo=float(widths[0]),
                     w_hi=float(widths[-1]), note=f"train fraction {frac:g}, budget T = {budget:.0f} steps; {note}")


def _cells(mw: ModelWise, column: str):
    f = mw.frame
    return [f.loc[f["model_width"] == w, column].to_numpy(float) for w in (mw.w_c, mw.w_lo, mw.w_hi)]


def _test_d3(table) -> Outcome:
    mw = model_wise(table)
    centre, lo, hi = _cells(mw, "log_test_loss")
    (d_lo, se_lo, df_lo), (d_hi, se_hi, df_hi) = _welch(centre, lo), _welch(centre, hi)
    if not (se_lo > 0 and se_hi > 0):
        raise InsufficientDataError("the test losses of a compared width do not vary")
    up = max(_one_sided(d_lo, se_lo, df_lo, greater=True), _one_sided(d_hi, se_hi, df_hi, greater=True))
    down = min(_one_sided(d_lo, se_lo, df_lo, greater=False), _one_sided(d_hi, se_hi, df_hi, greater=False))
    height, (se, df) = (d_lo, (se_lo, df_lo)) if d_lo <= d_hi else (d_hi, (se_hi, df_hi))
    from scipy import stats

    q = stats.t(df).ppf(1 - ALPHA / 2)
    if up < ALPHA:
        verdict, p, supports = "supported", up, "supported"
    elif 2 * down < ALPHA:
        verdict, p, supports = "contradicted", min(1.0, 2 * down), "contradicted"
    else:
        verdict, p, supports = "inconclusive", up, "supported"
    means = {w: float(np.mean(v)) for w, v in zip((mw.w_c, mw.w_lo, mw.w_hi), (centre, lo, hi))}
    return Outcome(
        verdict=verdict, test="intersection-union of two one-sided Welch t-tests (w* above each end); "
                              "contradicted by either end above w* (Bonferroni, 2 tests)",
        statistic_name="peak height over the higher end (decades)", statistic=height,
        effect_name="log10 test loss at w* minus at the higher end of the sweep", effect_size=height,
        ci_low=height - q * se, ci_high=height + q * se, p_value=p, p_supports=supports,
        n_runs=int(centre.size + lo.size + hi.size),
        notes=(f"{mw.note}; label noise {mw.frame['label_noise'].iloc[0]:g}; sweep width at w*: {mw.w_c:g}; mean log10 test loss at widths "
               + ", ".join(f"{w:g}: {m:.2f}" for w, m in sorted(means.items()))))


D3_RULE = (
    f"Primary design: the width sweep at its lowest label noise (clean labels where present) at one task, "
    f"optimiser and weight decay (its most common train fraction), >= {MIN_WIDTHS} widths with >= {MIN_PER_CELL} runs, plus the random-label capacity runs "
    f"(label_noise 1) of the same model and optimiser. w* = the width whose measured memorisation capacity "
    f"(median final train accuracy x training-set size) equals the sweep's training-set size (log-log "
    f"interpolation); w_c = the sweep width nearest w*. Statistic: log10 test loss at the budget T (the last step "
    f"every run reached) at w_c against the narrowest and the widest width, at alpha = {pct(ALPHA)}. Supported if w_c's loss is higher "
    f"than both (two one-sided Welch t-tests, each p < {pct(ALPHA)}: intersection-union); contradicted if either "
    f"end is higher than w_c (one-sided, p < {pct(ALPHA)}/2 each); otherwise inconclusive. Inconclusive when the "
    f"capacities do not bracket the training-set size or w_c is an end of the sweep.")


def _test_d6(table) -> Outcome:
    mw = model_wise(table)
    loss_c, loss_lo, loss_hi = _cells(mw, "log_test_loss")
    if not (loss_c.mean() > loss_lo.mean() and loss_c.mean() > loss_hi.mean()):
        raise InsufficientDataError(f"the test loss shows no model-wise peak at w* (mean log10 loss at "
                                    f"{mw.w_c:g}: {loss_c.mean():.2f}, ends {loss_lo.mean():.2f} and "
                                    f"{loss_hi.mean():.2f}): D6 is about runs where it does ({mw.note})")
    centre, lo, hi = _cells(mw, "test_acc")
    chance = 1.0 / float(mw.frame["p"].iloc[0])
    room = min(lo.mean(), hi.mean()) - chance
    if room < ACC_DIP_LINE:
        raise InsufficientDataError(f"no room for an accuracy dip: an end of the sweep is within {ACC_DIP_LINE} of "
                                    f"chance ({chance:.3f}) (mean test accuracy {lo.mean():.3f} at width "
                                    f"{mw.w_lo:g}, {hi.mean():.3f} at {mw.w_hi:g}); the rule could not say "
                                    f"'contradicted' here ({mw.note})")
    (d_lo, se_lo, df_lo), (d_hi, se_hi, df_hi) = _welch(lo, centre), _welch(hi, centre)
    if not (se_lo > 0 and se_hi > 0):
        raise InsufficientDataError("the test accuracies of a compared width do not vary")
    # dip = min(acc(end) - acc(w_c)) over the two ends; "< line" needs one end (Bonferroni), "> line" both (IUT)
    below = min(_one_sided(d_lo, se_lo, df_lo, greater=False, null=ACC_DIP_LINE),
                _one_sided(d_hi, se_hi, df_hi, greater=False, null=ACC_DIP_LINE))
    above = max(_one_sided(d_lo, se_lo, df_lo, greater=True, null=ACC_DIP_LINE),
                _one_sided(d_hi, se_hi, df_hi, greater=True, null=ACC_DIP_LINE))
    dip, (se, df) = (d_lo, (se_lo, df_lo)) if d_lo <= d_hi else (d_hi, (se_hi, df_hi))
    from scipy import stats

    q = stats.t(df).ppf(1 - ALPHA / 2)
    if 2 * below < ALPHA:
        verdict, p, supports = "supported", min(1.0, 2 * below), "supported"
    elif above < ALPHA:
        verdict, p, supports = "contradicted", above, "contradicted"
    else:
        verdict, p, supports = "inconclusive", min(1.0, 2 * below), "supported"
    return Outcome(
        verdict=verdict, test=f"one-sided Welch t-tests of each end's accuracy lead over w* against {ACC_DIP_LINE} "
                              f"(Bonferroni for 'below', intersection-union for 'above')",
        statistic_name="accuracy dip at w* (smaller end lead)", statistic=dip,
        effect_name="test accuracy at the lower-accuracy end minus at w*", effect_size=dip,
        ci_low=dip - q * se, ci_high=dip + q * se, p_value=p, p_supports=supports,
        n_runs=int(centre.size + lo.size + hi.size),
        notes=f"{mw.note}; mean test accuracy at {mw.w_c:g}: {centre.mean():.3f}, ends {lo.mean():.3f} "
              f"({mw.w_lo:g}) and {hi.mean():.3f} ({mw.w_hi:g})")


D6_RULE = (
    f"Primary design: as D3, and only where the test loss peaks there (mean log10 loss at w_c above both ends; "
    f"else inconclusive) and both ends' test accuracy exceed chance by >= {ACC_DIP_LINE} (else a dip could not "
    f"be seen: inconclusive), at alpha = {pct(ALPHA)}. Statistic: the accuracy dip at w_c = the smaller of (accuracy at an end minus "
    f"accuracy at w_c) at the budget T. Supported if the dip is below {ACC_DIP_LINE} (one end's lead below it, "
    f"one-sided Welch p < {pct(ALPHA)}/2: little or no double descent in accuracy); contradicted if both leads "
    f"exceed {ACC_DIP_LINE} (each one-sided p < {pct(ALPHA)}); otherwise inconclusive.")


# ----------------------------------------------------------------------------
# D4: the critical train fraction falls as width grows
# ----------------------------------------------------------------------------


def _logit(x):
    x = np.clip(np.asarray(x, float), _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    return np.log(x / (1 - x))


def _test_d4(table) -> Outcome:
    import statsmodels.api as sm

    frame, budget = budget_table(table)
    frame = frame[np.isfinite(frame["test_acc"])]
    widths = np.unique(frame["model_width"])
    if widths.size < 2:
        raise InsufficientDataError(f"the grid has {widths.size} width(s); the rule needs >= 2 widths and >= 3 "
                                    f"train fractions")
    X = sm.add_constant(np.column_stack([np.log10(frame["model_width"]), np.log10(frame["train_frac"])]))
    y = _logit(frame["test_acc"])
    fit = sm.OLS(y, X).fit()
    b_w, b_f = float(fit.params[1]), float(fit.params[2])
    shift = f"; d log10(critical fraction) / d log10(width) = {-b_w / b_f:.2f}" if b_f > 0 else ""
    return directional_outcome(
        estimate=b_w, se=float(fit.bse[1]), df=float(fit.df_resid), expected="positive", alpha=ALPHA,
        test="OLS t-test of the width coefficient in logit(test accuracy) ~ log10 width + log10 train fraction",
        statistic_name="t", effect_name="change of logit test accuracy per decade of width at a fixed fraction",
        n_runs=int(len(frame)),
        notes=(f"{len(frame)} run(s), widths {[f'{w:g}' for w in widths]}, fractions "
               f"{sorted(frame['train_frac'].unique().tolist())}, budget T = {budget:.0f} steps; fraction "
               f"coefficient {b_f:.2f}{shift}"))


D4_RULE = (
    f"Primary design: the clean-label train fraction x width grid at one task, optimiser and weight decay "
    f"(>= 3 train fractions, >= 2 widths). Statistic: each run's test accuracy at the budget T, on the logit "
    f"scale (clipped to [{_LOGIT_CLIP}, {1 - _LOGIT_CLIP}]). OLS of logit accuracy on log10 width and log10 train "
    f"fraction; two-sided t-test of the width coefficient at alpha = {pct(ALPHA)}: supported if it is positive "
    f"(at a fixed fraction wider models generalise more, so the fraction needed to generalise falls with width); "
    f"contradicted if negative; otherwise inconclusive.")


# ----------------------------------------------------------------------------
# D5: label noise raises the peak
# ----------------------------------------------------------------------------


def _test_d5(table) -> Outcome:
    peaks = peak_table(table)
    levels = sorted(peaks["label_noise"].unique().tolist())
    if len(levels) < 2 or levels[0] != 0.0:
        raise InsufficientDataError(f"label-noise levels {levels}: the rule needs clean runs and a noisy level")
    noisy_level = levels[-1]
    clean = peaks.loc[peaks["label_noise"] == 0.0, "rise"].dropna().to_numpy(float)
    noisy = peaks.loc[peaks["label_noise"] == noisy_level, "rise"].dropna().to_numpy(float)
    if clean.size < MIN_PER_CELL or noisy.size < MIN_PER_CELL:
        raise InsufficientDataError(f"{clean.size} clean and {noisy.size} noisy run(s) with a test loss; the rule "
                                    f"needs >= {MIN_PER_CELL} of each")
    diff, se, df = _welch(noisy, clean)
    if not se > 0:
        raise InsufficientDataError("the peak rises do not vary")
    return directional_outcome(
        estimate=diff, se=se, df=df, expected="positive", alpha=ALPHA,
        test="Welch two-sided t-test of the mean difference in peak rise (noisy minus clean) = 0",
        statistic_name="t", effect_name=f"peak rise, label noise {noisy_level:g} minus clean (decades)",
        n_runs=int(clean.size + noisy.size),
        notes=f"{noisy.size} noisy run(s) (mean rise {noisy.mean():.3f}), {clean.size} clean (mean {clean.mean():.3f})")


D5_RULE = (
    f"Primary design: clean runs and runs at one label-noise level (0 < label_noise < 1) of one task, optimiser, "
    f"weight decay and train fraction at the house width {HOUSE_WIDTH} (else the most replicated width), >= 3 runs "
    f"each. Statistic "
    f"per run: the rise of the test-loss peak (log10 of the peak over the lowest loss before it). Welch "
    f"two-sided t-test of the mean difference (noisy minus clean) at alpha = {pct(ALPHA)}: supported if positive "
    f"(noise raises the peak); contradicted if negative; otherwise inconclusive.")


# ----------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------


def _with_width(table):
    """The table with a ``model_width`` column (MLP width or transformer d_model)."""
    return table.assign(model_width=np.where(table["arch"] == "transformer", table["d_model"], table["width"])
                        .astype(float))


def _width_axis(ax, widths) -> None:
    """A log width axis ticked at the sweep's widths (no minor-tick labels crowding it)."""
    widths = sorted(set(float(w) for w in widths))
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(widths, [f"{w:g}" for w in widths])
    ax.set_xlabel("width")


def _sweeps(table):
    """(clean, noisy) rows of the width sweeps at the most common train fraction of D3's design (either may be
    empty), each with ``model_width``."""
    rows = table.query(f"label_noise < 1 and {_FREE}", engine="python") if not table.empty else table
    if rows.empty:
        return rows, rows
    for col in _HELD:
        counts = rows.groupby(col)["run_id"].nunique()
        rows = rows[rows[col] == counts[counts == counts.max()].index.min()]
    rows = _with_width(rows)
    frac = _modal(rows.drop_duplicates("run_id")["train_frac"])
    rows = rows[rows["train_frac"] == frac]
    clean = rows[rows["label_noise"] == 0.0]
    noisy_levels = sorted(rows.loc[rows["label_noise"] > 0, "label_noise"].unique())
    noisy = rows[rows["label_noise"] == noisy_levels[-1]] if noisy_levels else rows.iloc[:0]
    return clean, noisy


def _width_panels(table, names):
    """[(name, rows)] of the clean and the noisy width sweep, each kept only if it has >= 2 widths."""
    return [(name, rows) for name, rows in zip(names, _sweeps(table))
            if not rows.empty and rows["model_width"].nunique() >= 2]


def figure_loss_heatmap(table):
    """Test loss (log10, mean over seeds) over width x log step: the clean sweep, and the noisy one beside it."""
    from ..plotting import new_figure

    panels = _width_panels(table, ("clean labels", "label noise"))
    if not panels:
        return None
    fig, axes = new_figure(len(panels), 1, width=4.8, height=3.6)
    for ax, (name, rows) in zip(axes[0], panels):
        loss = rows[rows["metric"] == "test_loss"]
        wide = (loss.assign(lv=np.log10(np.maximum(loss["value"], 1e-12)))
                .pivot_table(index="model_width", columns="step", values="lv", aggfunc="mean").sort_index())
        wide = wide.T.sort_index().ffill().T
        mesh = ax.pcolormesh(np.maximum(wide.columns.to_numpy(float), 1), np.arange(len(wide.index)), wide.values,
                             shading="nearest", cmap="magma")
        ax.set_yticks(np.arange(len(wide.index)), [f"{w:g}" for w in wide.index])
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("width")
        noise = rows["label_noise"].iloc[0]
        ax.set_title(name if noise == 0 else f"{name} {noise:g}")
        fig.colorbar(mesh, ax=ax, label="log10 test loss")
    fig.tight_layout()
    return fig


def figure_curves_by_width(table):
    """Test loss against step, one colour per width (seeds faded, mean bold); clean and noisy sweeps."""
    from ..plotting import curves_by, new_figure

    panels = _width_panels(table, ("clean labels", "label noise"))
    if not panels:
        return None
    fig, axes = new_figure(len(panels), 1, width=4.8, height=3.6)
    for ax, (name, rows) in zip(axes[0], panels):
        curves_by(rows, metric="test_loss", hue="model_width", ax=ax, label_fmt="width {:g}")
        ax.set_yscale("log")
        ax.set_title(name)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def figure_peak_vs_width(table):
    """Peak time (with t_interp) and peak rise against width, per run (points) and mean per width (line)."""
    from ..plotting import new_figure

    panels = _width_panels(table, ("clean", "noisy"))
    if not panels:
        return None
    fig, axes = new_figure(2, 1, width=4.6, height=3.4)
    for (name, rows), colour in zip(panels, ("tab:blue", "tab:red")):
        peaks = peak_table(rows)
        peaks = peaks[peaks["prominence"] >= PEAK_LINE]
        if peaks.empty:
            continue
        for ax, col, marker in ((axes[0][0], "t_peak", "o"), (axes[0][0], "t_interp", "x"), (axes[0][1], "rise", "o")):
            ax.scatter(peaks["model_width"], peaks[col], color=colour, marker=marker, alpha=0.35, s=14)
            mean = peaks.groupby("model_width")[col].mean()
            ax.plot(mean.index, mean.values, color=colour, lw=2 if marker == "o" else 1,
                    ls="-" if marker == "o" else ":", label=f"{name}: {col}")
    axes[0][0].set_yscale("log")
    axes[0][0].set_ylabel("step")
    axes[0][0].set_title("time of the test-loss peak (and t_interp)")
    axes[0][1].set_ylabel("rise of the peak (decades)")
    axes[0][1].set_title("peak height")
    widths = np.concatenate([rows["model_width"].unique() for _, rows in panels])
    for ax in axes[0]:
        _width_axis(ax, widths)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def figure_model_wise(table):
    """Model-wise double descent: test loss and test accuracy against width at three budgets (T/10, T/3, T),
    clean (solid) and noisy (dashed); the measured capacity against width with the training-set size and w*."""
    from ..plotting import new_figure, palette

    clean, noisy = _sweeps(table)
    if max(clean["model_width"].nunique() if not clean.empty else 0,
           noisy["model_width"].nunique() if not noisy.empty else 0) < MIN_WIDTHS:
        return None
    fig, axes = new_figure(3, 1, width=4.2, height=3.4)
    budget = float(min(g["step"].max() for _, g in (clean if not clean.empty else noisy).groupby("run_id")))
    budgets = (budget / 10, budget / 3, budget)
    for rows, ls in ((clean, "-"), (noisy, "--")):
        if rows.empty:
            continue
        data = series_by_run(rows, {"test_loss", "test_acc"})
        widths = rows.drop_duplicates("run_id").set_index("run_id")["model_width"]
        for t, colour in zip(budgets, palette(3)):
            for ax, metric in zip(axes[0][:2], ("test_loss", "test_acc")):
                vals = {rid: value_at_step(s[metric], t) for rid, s in data.items() if metric in s}
                frame = widths.loc[list(vals)].to_frame().assign(v=list(vals.values()))
                mean = frame.groupby("model_width")["v"].mean()
                ax.plot(mean.index, mean.values, ls=ls, marker="o", ms=3, color=colour,
                        label=f"step {t:.0f}" if ls == "-" else None)
    axes[0][0].set_yscale("log")
    axes[0][0].set_ylabel("test loss")
    axes[0][1].set_ylabel("test accuracy")
    cap = capacity_table(table)
    ax = axes[0][2]
    if not cap.empty:
        ax.plot(cap["model_width"], cap["capacity"], marker="o", color="black", label="capacity (random labels)")
        if not clean.empty:
            n_target = float(_configs(clean)["n_train"].iloc[0])
            ax.axhline(n_target, color="grey", ls=":", label=f"training set ({n_target:.0f})")
            try:
                w_star, _ = interpolation_width(cap, n_target)
                for a in axes[0]:
                    a.axvline(w_star, color="tab:red", lw=0.8, ls=":")
            except InsufficientDataError:
                pass
        ax.set_yscale("log")
        ax.set_ylabel("examples memorised")
        ax.legend(fontsize=6)
    widths = np.concatenate([rows["model_width"].unique() for rows in (clean, noisy) if not rows.empty])
    for a, title in zip(axes[0], ("test loss (solid clean, dashed noisy)", "test accuracy", "memorisation capacity")):
        _width_axis(a, widths)
        a.set_title(title, fontsize=9)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def figure_phase_diagram(table):
    """Test accuracy at the budget over train fraction x width (clean labels): Huang et al.'s grokking /
    memorisation / progression diagram, mean over seeds in each cell."""
    from ..plotting import new_figure

    sub, problems = DESIGN_FRACTIONS.select(table)
    if problems or sub.empty:
        return None
    frame, budget = budget_table(sub)
    grid = frame.pivot_table(index="train_frac", columns="model_width", values="test_acc", aggfunc="mean")
    if grid.shape[0] < 2 or grid.shape[1] < 2:
        return None
    fig, axes = new_figure(1, 1, width=5.0, height=3.8)
    ax = axes[0][0]
    mesh = ax.pcolormesh(np.arange(grid.shape[1]), np.arange(grid.shape[0]), grid.values, shading="nearest",
                         cmap="viridis", vmin=0, vmax=1)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid.values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(np.arange(grid.shape[1]), [f"{w:g}" for w in grid.columns])
    ax.set_yticks(np.arange(grid.shape[0]), [f"{f:g}" for f in grid.index])
    ax.set_xlabel("width")
    ax.set_ylabel("train fraction")
    ax.set_title(f"test accuracy at step {budget:.0f}")
    fig.colorbar(mesh, ax=ax)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# calibration: planted runs whose statistics we choose
# ----------------------------------------------------------------------------

#: Per prediction: the statistic's value at the decision line ("null"), the effect the paper reports or, where
#: no paper gives a number, the one our quick study measured (said so in the calibration text), and the
#: seed-to-seed SD of the per-run value (measured on the quick study: a+b mod 31, train fraction 0.7, 2026-11-26).
PLANT = {
    "D1": dict(null=PEAK_LINE, effect=0.35, sd=0.02, what="peak prominence (decades); Nanda et al.'s frac-0.5 "
               "test loss peaks 6 nats above ln 113 = 4.7, log10(10.7 / 4.7) = 0.35"),
    "D2": dict(null=PEAK_TIME_DECADES, effect=math.log10(2.0), sd=0.15, what="log10(t_peak / t_interp): the peak "
               "within 2x of the interpolation time (Nakkiran et al.'s 'near')"),
    "D2b": dict(null=0.0, effect=-0.33, sd=0.1, what="log-log slope of t_peak on width (per-run scatter SD in "
                "decades); no paper gives a number: our quick study's slope"),
    "D3": dict(null=0.0, effect=0.10, sd=0.035, what="log10 test loss at w* over the higher end (decades); no "
               "paper gives a loss number: our noisy sweep's model-wise peak, 5.8 nats at width 32 vs 4.6 at 8"),
    "D4": dict(null=0.0, effect=0.415, sd=0.4, what="critical-fraction shift, -d log r_c / d log width: Huang et "
               "al.'s D_crit 4,000 at width 32 and 3,000 at 64 (0.415); planted as the width coefficient 0.415 x "
               "the fraction coefficient; SD of logit accuracy"),
    "D5": dict(null=0.0, effect=0.045, sd=0.01, what="peak rise, noisy minus clean (decades); no paper gives a "
               "number: our house width's 0.381 vs 0.336 (SD of the noisy runs' rise 0.010, of the clean 0.013)"),
    "D6": dict(null=ACC_DIP_LINE, effect=0.0, sd=0.03, what="accuracy dip at w* (accuracy points); 'little or "
               "no' double descent in accuracy (Davies et al.: 'slight')"),
}
#: Planted shapes, measured on the quick study (p 31): capacity per unit of width (examples; 184, 344, 717 at
#: widths 8, 16, 32: ~22), t_fit of width 128 (steps; 59-67), the fraction coefficient of logit accuracy (per
#: decade; 19.7), the flat end level of log10 test loss.
_CAP_PER_WIDTH, _T_FIT_128, _B_FRAC, _END_LOG_LOSS = 22.0, 60.0, 20.0, -0.5


def _bump(w: float, w_star: float) -> float:
    """A model-wise bump in log width centred on w* (SD 0.15 decades): 1 at w*, ~0 a decade away."""
    return math.exp(-0.5 * (math.log10(w / w_star) / 0.15) ** 2)


def _planted_run(cfg, rng, value: dict, w_star: float, *, logit_sd: float):
    """One run's train/test accuracy and test loss with the per-run statistics in ``value``.

    A noisy run's peak rise is the clean effect plus ``value["D5"]`` (its own seed scatter, measured smaller
    than the clean runs'); ``logit_sd`` is the seed scatter of logit test accuracy at the budget.
    """
    from ..tasks import train_size
    from .planted import logged_steps, logistic_logtime

    w = float(cfg.model.d_model if cfg.model.arch == "transformer" else cfg.model.width)
    n_train = train_size(cfg.task)
    steps = logged_steps(cfg)
    T = float(cfg.budget.max_steps)
    log0 = math.log10(math.log(cfg.task.p))
    if cfg.task.label_noise == 1.0:  # a capacity run: fits _CAP_PER_WIDTH examples per unit of width
        final = min(1.0, _CAP_PER_WIDTH * w * math.exp(rng.normal(0, 0.03)) / n_train)
        train = final * logistic_logtime(steps, 100.0, 1.0)
        return cfg, {"train_acc": (steps, train), "test_acc": (steps, np.full_like(steps, 1 / cfg.task.p)),
                     "test_loss": (steps, np.full_like(steps, math.log(cfg.task.p)))}
    t_fit = _T_FIT_128 * (w / 128.0) ** value["D2b"] * 10 ** rng.normal(0, PLANT["D2b"]["sd"])
    t_peak = min(t_fit * 10 ** value["D2"], 0.9 * T)
    rise = PLANT["D1"]["effect"] + value["D5"] if cfg.task.label_noise > 0 else value["D1"]
    end = _END_LOG_LOSS + value["D3"] * _bump(w, w_star) + rng.normal(0, PLANT["D3"]["sd"])
    lt, lp = np.log10(np.maximum(steps, 1.0)), math.log10(t_peak)
    # smooth at the top (zero slope on both sides, as trained curves are): quadratic in log-time each side
    up = log0 + rise * (1 - np.clip(1 - lt / lp, 0, 1) ** 2)
    down = log0 + rise + (end - log0 - rise) * np.clip((lt - lp) / math.log10(T / t_peak), 0, 1) ** 2
    log_loss = np.where(steps <= t_peak, up, down)
    log_loss[steps == 0] = log0
    logit = (value["D4"] * _B_FRAC * math.log10(w / 64.0) + _B_FRAC * math.log10(cfg.task.train_frac / 0.5)
             + rng.normal(0, logit_sd))
    acc_end = 1 / (1 + math.exp(-logit)) - value["D6"] * _bump(w, w_star) + rng.normal(0, PLANT["D6"]["sd"])
    acc_end = float(np.clip(acc_end, 0.0, 1.0))
    test_acc = 1 / cfg.task.p + (acc_end - 1 / cfg.task.p) * logistic_logtime(steps, math.sqrt(t_fit * T), 0.5)
    test_acc[-1] = acc_end
    train = np.where(steps >= t_fit, 1.0, np.minimum(0.9 * logistic_logtime(steps, t_fit, 0.5), FIT_ACC - 1e-3))
    return cfg, {"train_acc": (steps, train), "test_acc": (steps, test_acc), "test_loss": (steps, 10 ** log_loss)}


def _plant(kind: str):
    def plant(configs, scenario: str, rng):
        from ..tasks import train_size
        from .planted import table_of_runs

        if scenario not in ("null", "effect", "opposite"):
            raise ValueError(f"scenario must be 'null', 'effect' or 'opposite', got {scenario!r}")
        sweep = [c for c in configs if c.task.label_noise == 0.0]
        frac = _modal([c.task.train_frac for c in sweep]) if sweep else None
        n_target = next((train_size(c.task) for c in sweep if c.task.train_frac == frac), 1000)
        w_star = n_target / _CAP_PER_WIDTH
        spec = PLANT[kind]
        centre = {"null": spec["null"], "effect": spec["effect"], "opposite": 2 * spec["null"] - spec["effect"]}
        runs = []
        for cfg in configs:
            value = {k: v["effect"] + (0.0 if k in ("D2b", "D4", "D3", "D6") else rng.normal(0, v["sd"]))
                     for k, v in PLANT.items()}
            value["D4"] = value["D4"] if kind != "D6" else 0.0  # D6 needs flat accuracy shoulders to have room
            value[kind] = centre[scenario] + (0.0 if kind in ("D2b", "D4", "D3", "D6") else
                                              rng.normal(0, spec["sd"]))
            # D6 reads accuracy differences of a few points: its own seed scatter, not D4's logit scatter
            runs.append(_planted_run(cfg, rng, value, w_star, logit_sd=0.0 if kind == "D6" else PLANT["D4"]["sd"]))
        return table_of_runs(runs)

    plant.__doc__ = f"{kind} planter: every double-descent curve, with {kind}'s statistic set by the scenario."
    return plant


def _calibration(kind: str) -> Calibration:
    spec = PLANT[kind]
    return Calibration(plant=_plant(kind), effect=(
        f"{spec['what']}: effect {spec['effect']:.3g}, null at the decision line {spec['null']:.3g}, opposite "
        f"{2 * spec['null'] - spec['effect']:.3g}; seed-to-seed SD {spec['sd']}. Other statistics planted at "
        f"their effects."))


# ----------------------------------------------------------------------------
# the family
# ----------------------------------------------------------------------------

_NAKKIRAN = "Nakkiran, Kaplun, Bansal, Yang, Barak, Sutskever 2019 (arXiv 1912.02292)"
_DAVIES = "Davies, Langosco, Krueger 2023 (arXiv 2303.06173)"
_HUANG = "Huang, Hu, Han, Liu, Sun 2024 (arXiv 2402.15175)"
_CURVES = ("train_acc", "test_acc", "test_loss")


def _prediction(pid: str, statement: str, rule: str, test, paper: str, design: Design) -> Prediction:
    return Prediction(id=pid, family="double_descent", statement=statement, rule=rule, test=test, design=design,
                      paper=paper, metrics_needed=_CURVES, config_present=("label_noise", "width", "d_model"),
                      calibration=_calibration(pid))


DOUBLE_DESCENT = register(Family(
    name="double_descent",
    title="Grokking is double descent resolved over training time",
    explanation=(
        "A network learns a fast memorising pattern and a slow generalising one. While memorisation fits the "
        "training set the test loss rises; when the generalising pattern takes over it falls again, so test "
        "loss over time descends twice. How it looks depends on model size against data size: the width whose "
        "memorisation capacity just matches the training set is worst at a fixed budget, wider models need "
        "less data to generalise, and label noise makes the peak larger."),
    references=(f"{_NAKKIRAN}, deep double descent (epoch-wise and model-wise)",
                f"{_DAVIES}, unifying grokking and double descent",
                f"{_HUANG}, memorisation capacity and critical data size"),
    study="double_descent",
    figures=(figure_loss_heatmap, figure_curves_by_width, figure_peak_vs_width, figure_model_wise,
             figure_phase_diagram),
    predictions=(
        _prediction("D1", "The test loss over time is non-monotone: it rises to a peak as the training set is "
                          "memorised and falls again.", D1_RULE, _test_d1,
                    f"{_NAKKIRAN}: epoch-wise double descent for large enough models; Nanda et al.'s frac-0.5 "
                    f"test loss peaks 6 nats above its start (SCIENCE.md 5.4).", DESIGN_CELL),
        _prediction("D2", "The test-loss peak sits near the interpolation time (train accuracy reaches 0.99).", D2_RULE, _test_d2,
                    f"{_NAKKIRAN}: the peak is near the time train error reaches ~0; Nanda et al.'s data: ~5x "
                    f"after train loss < 1e-2.", DESIGN_CELL),
        _prediction("D2b", "The time of the peak moves with width: wider models peak earlier.", D2B_RULE,
                    _test_d2b, f"{_NAKKIRAN}: the epoch-wise peak follows the interpolation time, which falls with "
                                f"model size.", DESIGN_WIDTHS),
        _prediction("D3", "At a fixed budget, test loss against width peaks at the width whose memorisation "
                          "capacity matches the training-set size.", D3_RULE, _test_d3,
                    f"{_NAKKIRAN}: model-wise peak at the interpolation threshold; {_HUANG}: D_train 2,600, "
                    f"d_h 24-40 near-zero validation accuracy.", DESIGN_MODELWISE),
        _prediction("D4", "The train fraction needed to generalise falls as width grows.", D4_RULE, _test_d4,
                    f"{_HUANG}: critical data size ~3,000 at d_h 64 and ~4,000 at 32.", DESIGN_FRACTIONS),
        _prediction("D5", "Label noise raises the test-loss peak.", D5_RULE, _test_d5,
                    f"{_NAKKIRAN}: label noise makes the peak larger (15-20 % noise in Fig. 1).", DESIGN_NOISE),
        _prediction("D6", "Accuracy shows little or no double descent where the loss shows it.", D6_RULE, _test_d6,
                    f"{_DAVIES}: a 'slight' double descent in accuracy; Power et al. report none.", DESIGN_MODELWISE),
    ),
))
