"""Family `circuits`: grokking is the end of a Fourier circuit's formation (Nanda et al. 2023).

For a+b mod p, Nanda et al. found that a trained network computes the answer
through a few key frequencies w_k = 2 pi k / p: embeddings of a and b as
cos/sin(w_k a), products giving cos(w_k (a + b)), and logits
sum_k alpha_k cos(w_k (a + b - c)). Training passes three phases:
**memorisation**, **circuit formation** (the circuit grows while test accuracy
stays at chance: hidden progress) and **cleanup** (weight decay removes the
memorising parts and test accuracy jumps). Their progress measures, which we
compute offline on every stored checkpoint (:mod:`grokking_theories.probes.circuits`,
probe ``fourier``), make the hidden progress visible.

Phases are read from each run by one fixed rule (:func:`run_phases`):
memorisation ends at t_fit (train accuracy >= FIT_ACC); cleanup is the span in
which the test loss, in log10, falls from PHASE_LO to PHASE_HI of its drop
(from its peak after t_fit to its last value); circuit formation lies
between. The test loss is the one curve no prediction below is about, so no
prediction is true of the phases by construction.

Predictions (SCIENCE.md 2c), each a one-sample or two-sample t-test of one
per-run statistic against a line fixed before any data:

* **C1** restricted loss (test) halves before the test loss does;
* **C2** excluded / train loss rises by more than an order of magnitude during
  circuit formation;
* **C3** the embedding's Fourier Gini rises during cleanup more than a rise
  spread evenly over log-time would; **C3b** at the end >= KEY_POWER of the
  non-DC embedding power lies in the key frequencies;
* **C4** the key-frequency cos(w_k (a + b - c)) logit coefficient grows more
  smoothly (a wider transition) than test accuracy;
* **C5** the squared weight norm falls faster per decade in cleanup than in
  circuit formation;
* **C6** without weight decay no sparse spectrum forms (Gini at the end lower
  than with decay by more than a margin);
* **C7** most MLP neurons are explained by one frequency at the end.

Primary design: the study's decaying (wd > 0, toward zero) free transformer
runs, Nanda et al.'s model, wherever the study has any (else its most
replicated architecture); C6 compares them with the transformer's wd = 0
runs. The MLP arm (Gromov's setting, whose known solution has a dense
embedding spectrum) is a secondary cell. Every threshold is a module constant (or in
:mod:`grokking_theories.levels`) and the rule texts are built from them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..levels import ALPHA, FIT_ACC, GROK_ACC, KEY_POWER, NEURON_EXPLAINED, pct
from ..stats import Calibration, Design, InsufficientDataError, Outcome, Prediction, directional_outcome
from ._series import first_step, one_sample_decision, series_by_run
from .base import Family, register

# ----------------------------------------------------------------------------
# constants of the rules (fixed before any data is seen)
# ----------------------------------------------------------------------------

#: Cleanup starts when the test loss (log10) has fallen PHASE_LO of its drop after t_fit, and ends at PHASE_HI.
PHASE_LO, PHASE_HI = 0.1, 0.9
#: A test loss that falls less than this many decades after its peak has no cleanup phase.
PHASE_MIN_DROP = 0.5
#: C1: a loss "falls" when it drops below this fraction of its level at the end of memorisation (SCIENCE 2c).
C1_FRACTION = 0.5
#: C2: "orders of magnitude" (Nanda): the excluded/train loss ratio must rise by more than this many decades.
C2_MIN_DECADES = 1.0
#: C3: a Gini that rises by less than this over the run has no rise to place; its share in cleanup counts as 0.
C3_MIN_RISE = 0.02
#: C4: "grows smoothly" = a 10->90 % transition at least 10**C4_MIN_LOG_RATIO (2x) wider than accuracy's.
C4_MIN_LOG_RATIO = math.log10(2.0)
#: C6: the smallest Gini difference (wd > 0 minus wd = 0, at the end) that we call "a sparse spectrum formed".
C6_MARGIN = 0.1
#: C7: "most neurons" -- the decision line for the fraction of single-frequency neurons (Nanda: 84.6 %).
C7_LINE = 0.5
#: Least number of usable runs for a t-test; runs excluded for lack of a defined statistic may be at most
#: this fraction of the eligible runs.
MIN_RUNS = 4
MAX_EXCLUDED_FRAC = 0.25
#: Fractions are compared on the logit scale, clipped here (a fraction of exactly 1 has no logit).
_LOGIT_CLIP = 1e-4

#: Primary design: the decaying free transformer runs (Nanda et al.'s model: its embedding is where the sparse
#: Fourier spectrum forms), one p, lr and wd. The transformer is held wherever the table has transformer runs,
#: whatever the run counts, so more MLP seeds can never move the headline onto the MLP; a study of MLPs only
#: (weight_decay, omnigrok) is read on its MLPs. The MLP's known solution (Gromov 2023) spreads
#: single-frequency neurons over *all* frequencies, so a sparse embedding spectrum is not expected there.
_PREFER = {"arch": ("transformer",)}
DESIGN = Design(
    runs="decay_target == 'zero' and fixed_norm.isna() and weight_decay > 0",
    hold=("arch", "p", "lr", "weight_decay"), prefer=_PREFER, min_seeds=MIN_RUNS)
#: C6: the free runs of the same architecture at wd = 0 and at the decaying level.
DESIGN_C6 = Design(
    runs="decay_target == 'zero' and fixed_norm.isna()",
    hold=("arch", "p", "lr"), prefer=_PREFER, levels={"weight_decay": 2}, min_seeds=3)

#: The probe metrics the predictions read (computed offline by the probe ``fourier``).
PROBE = "fourier"


# ----------------------------------------------------------------------------
# per-run curves: interpolation, crossings and phases
# ----------------------------------------------------------------------------


def _log_steps(steps) -> np.ndarray:
    return np.log10(np.maximum(np.asarray(steps, float), 1.0))


def value_at(series, t: float) -> float:
    """A (steps, values) series at step ``t``, interpolated linearly in log10(step) (clamped at the ends)."""
    steps, values = series
    if len(steps) == 0 or not np.isfinite(t):
        return float("nan")
    return float(np.interp(math.log10(max(t, 1.0)), _log_steps(steps), values))


def crossing(series, level: float, *, start: float, falling: bool = True) -> float:
    """First step >= ``start`` at which the series crosses ``level``, interpolated in log10(step); NaN: never."""
    steps, values = series
    keep = steps >= start
    s, v = steps[keep], values[keep]
    hit = np.nonzero(v <= level if falling else v >= level)[0]
    if hit.size == 0:
        return float("nan")
    j = int(hit[0])
    if j == 0 or v[j] == v[j - 1]:
        return float(s[j])
    x0, x1 = _log_steps(s[j - 1:j + 1])
    frac = (level - v[j - 1]) / (v[j] - v[j - 1])
    return float(10 ** (x0 + frac * (x1 - x0)))


@dataclass(frozen=True, kw_only=True)
class Phases:
    """Phase boundaries of one run (steps; NaN where the rule finds none)."""

    t_fit: float  # end of memorisation
    t_cleanup: float  # end of circuit formation, start of cleanup
    t_end: float  # end of cleanup
    t_grok: float  # test accuracy >= GROK_ACC
    t_last: float  # the run's last logged step


def run_phases(series: dict) -> Phases:
    """Phase boundaries from a run's logged ``train_acc``, ``test_acc`` and ``test_loss`` (see module docs)."""
    nan = float("nan")
    t_fit = first_step(series["train_acc"], FIT_ACC) if "train_acc" in series else None
    t_grok = first_step(series["test_acc"], GROK_ACC) if "test_acc" in series else None
    loss = series.get("test_loss")
    t_last = float(loss[0][-1]) if loss is not None and len(loss[0]) else nan
    t_fit = nan if t_fit is None else t_fit
    t_grok = nan if t_grok is None else t_grok
    if loss is None or not np.isfinite(t_fit):
        return Phases(t_fit=t_fit, t_cleanup=nan, t_end=nan, t_grok=t_grok, t_last=t_last)
    steps, values = loss[0], np.log10(np.maximum(loss[1], 1e-30))
    window = (steps >= t_fit) & (steps <= (t_grok if np.isfinite(t_grok) else np.inf))
    if not window.any():
        return Phases(t_fit=t_fit, t_cleanup=nan, t_end=nan, t_grok=t_grok, t_last=t_last)
    i_peak = int(np.flatnonzero(window)[np.argmax(values[window])])
    peak, end = values[i_peak], values[-1]
    drop = peak - end
    if drop < PHASE_MIN_DROP:
        return Phases(t_fit=t_fit, t_cleanup=nan, t_end=nan, t_grok=t_grok, t_last=t_last)
    log_series = (steps, values)
    t_cleanup = crossing(log_series, peak - PHASE_LO * drop, start=steps[i_peak])
    t_end = crossing(log_series, peak - PHASE_HI * drop, start=steps[i_peak])
    return Phases(t_fit=t_fit, t_cleanup=t_cleanup, t_end=t_end, t_grok=t_grok, t_last=t_last)


def phase_table(table):
    """One row per run: run_id, every config column of the table, and its phase boundaries (steps)."""
    import pandas as pd

    data = series_by_run(table, {"train_acc", "test_acc", "test_loss"})
    rows = [{"run_id": rid, **run_phases(s).__dict__} for rid, s in data.items()]
    frame = pd.DataFrame(rows, columns=["run_id", "t_fit", "t_cleanup", "t_end", "t_grok", "t_last"])
    config = table.drop(columns=[c for c in ("step", "metric", "value") if c in table.columns]).drop_duplicates("run_id")
    return frame.merge(config, on="run_id", how="left")


def phase_summary(phases, confidence: float = 1 - ALPHA):
    """Geometric mean and t interval (over runs, in log10 steps) of each phase boundary.

    Returns a dict boundary -> (geometric mean, low, high, n runs); boundaries no run has are left out.
    """
    from scipy import stats

    out = {}
    for col in ("t_fit", "t_cleanup", "t_end", "t_grok"):
        x = np.log10(phases[col].to_numpy(float))
        x = x[np.isfinite(x)]
        if x.size == 0:
            continue
        m = float(x.mean())
        half = float(stats.t(x.size - 1).ppf(0.5 + confidence / 2) * x.std(ddof=1) / math.sqrt(x.size)) \
            if x.size > 1 else float("nan")
        out[col] = (10 ** m, 10 ** (m - half), 10 ** (m + half), int(x.size))
    return out


def _logit(f) -> np.ndarray:
    f = np.clip(np.asarray(f, float), _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    return np.log(f / (1 - f))


def _per_run(table, metrics, statistic, what: str):
    """Apply ``statistic(series, phases) -> float or None`` to every grokking run of the table.

    Returns (values, n_grokking, n_excluded, notes). None or a non-finite value excludes the run (counted).
    """
    data = series_by_run(table, {"train_acc", "test_acc", "test_loss", *metrics})
    values, n_grok, not_grok, excluded = [], 0, 0, 0
    for series in data.values():
        if "test_acc" not in series or first_step(series["test_acc"], GROK_ACC) is None:
            not_grok += 1
            continue
        n_grok += 1
        ph = run_phases(series)
        value = None
        if all(m in series and len(series[m][0]) for m in metrics):
            value = statistic(series, ph)
        if value is None or not np.isfinite(value):
            excluded += 1
            continue
        values.append(float(value))
    notes = (f"{len(data)} run(s) in the design; {n_grok} reached test acc >= {pct(GROK_ACC)}, {not_grok} did "
             f"not; {excluded} grokking run(s) excluded ({what}); {len(values)} used")
    return np.asarray(values, float), n_grok, excluded, notes


def _decide(values, n_grok, n_excl, notes, **kwargs) -> Outcome:
    return one_sample_decision(values, n_grok, n_excl, notes, min_runs=MIN_RUNS,
                               max_excluded_frac=MAX_EXCLUDED_FRAC, **kwargs)


_T_TEST = "two-sided one-sample t-test of the mean per-run statistic = {null} (t interval)"


def _per_run_test(metrics: tuple, statistic, excluded_why: str, *, effect_name: str, describe,
                  null: float = 0.0, null_text: str = ""):
    """A prediction's test: ``statistic`` per grokking run, t-tested against ``null`` (expected above it)."""
    def test(table) -> Outcome:
        values, n, excl, notes = _per_run(table, metrics, statistic, excluded_why)
        return _decide(values, n, excl, notes, null=null, expected="positive",
                       test=_T_TEST.format(null=null_text or f"{null:g}"), statistic_name="t",
                       effect_name=effect_name, describe=describe)
    return test


def _rule(statistic: str, null_text: str, supported: str, contradicted: str, eligible: str = "") -> str:
    """A rule text in the house form: statistic, test, both decisions, exclusions."""
    return (f"Per run of the primary design that reaches test accuracy >= {pct(GROK_ACC)}{eligible}: "
            f"{statistic} Two-sided one-sample t-test of the mean against {null_text} at alpha = {pct(ALPHA)}, "
            f"t interval, >= {MIN_RUNS} runs: supported if p < {pct(ALPHA)} and {supported}; contradicted if "
            f"p < {pct(ALPHA)} and {contradicted}; otherwise inconclusive. Runs where the statistic is undefined "
            f"are excluded and counted; if they are more than {MAX_EXCLUDED_FRAC:.0%} of the grokking runs the "
            f"verdict is inconclusive whatever the test says.")


_PHASE_TEXT = (f"Phases: memorisation ends at t_fit (train accuracy >= {pct(FIT_ACC)}); cleanup is where "
               f"log10(test loss) falls from {PHASE_LO:.0%} to {PHASE_HI:.0%} of its drop from its peak after "
               f"t_fit to its last value (no cleanup when the drop is below {PHASE_MIN_DROP} decades); "
               f"circuit formation lies between. ")


# ----------------------------------------------------------------------------
# C1: the restricted loss falls before the test loss
# ----------------------------------------------------------------------------


def c1_lead(series, ph: Phases):
    """log10(t_T / t_R): how many decades before the test loss the restricted loss halves (NaN: undefined)."""
    if not np.isfinite(ph.t_fit):
        return None
    times = []
    for name in ("restricted_loss_test", "test_loss"):
        level = value_at(series[name], ph.t_fit)
        times.append(crossing(series[name], C1_FRACTION * level, start=ph.t_fit))
    t_r, t_t = times
    return math.log10(t_t / t_r) if np.isfinite(t_r) and np.isfinite(t_t) else None


_test_c1 = _per_run_test(
    ("restricted_loss_test",), c1_lead, "a loss never halved", effect_name="mean log10(t_test / t_restricted)",
    describe=lambda m: f"the restricted loss halves {10 ** m:.2f}x earlier than the test loss")


C1_RULE = _rule(
    f"t_R = first step after t_fit at which restricted_loss_test (the loss of the logits kept to the constant and "
    f"the key frequencies' cos/sin(w_k(a+b)) terms, on the test pairs) is below {C1_FRACTION} x its value at "
    f"t_fit; t_T = the same for the test loss (both interpolated in log-step); statistic d = log10(t_T / t_R).",
    "0", "mean d > 0 (the restricted loss falls first)", "mean d < 0 (the test loss falls first)")

# ----------------------------------------------------------------------------
# C2: the excluded / train loss ratio rises during circuit formation
# ----------------------------------------------------------------------------


def c2_rise(series, ph: Phases):
    """Decades the excluded/train loss ratio rises from t_fit to the start of cleanup (None: no cleanup)."""
    if not (np.isfinite(ph.t_fit) and np.isfinite(ph.t_cleanup)):
        return None
    ratio = [math.log10(max(value_at(series["excluded_loss_train"], t), 1e-30))
             - math.log10(max(value_at(series["train_loss"], t), 1e-30)) for t in (ph.t_fit, ph.t_cleanup)]
    return ratio[1] - ratio[0]


_test_c2 = _per_run_test(
    ("excluded_loss_train", "train_loss"), c2_rise, "no cleanup phase", null=C2_MIN_DECADES,
    effect_name="mean rise of log10(excluded loss / train loss), t_fit -> cleanup",
    describe=lambda m: f"the ratio rises {10 ** m:.3g}x during circuit formation")


C2_RULE = _rule(
    _PHASE_TEXT + "Statistic: the rise of log10(excluded_loss_train / train_loss) from t_fit to the start of "
    "cleanup (the excluded loss removes the key frequencies' cos/sin(w_k(a+b)) terms from the logits; train loss "
    "interpolated at the checkpoint steps).",
    f"{C2_MIN_DECADES:g} decade (Nanda: 'orders of magnitude')",
    f"the mean rise exceeds {C2_MIN_DECADES:g} decade", f"it is below {C2_MIN_DECADES:g} decade")

# ----------------------------------------------------------------------------
# C3: the Gini rises in cleanup; C3b: a few key frequencies hold the power
# ----------------------------------------------------------------------------


def c3_excess_share(series, ph: Phases):
    """Share of the Gini's rise (t_fit -> last step) inside cleanup, minus cleanup's share of that log-time."""
    if not all(np.isfinite(t) for t in (ph.t_fit, ph.t_cleanup, ph.t_end, ph.t_last)) or ph.t_last <= ph.t_fit:
        return None
    g = series["fourier_gini_embed"]
    rise = value_at(g, ph.t_last) - value_at(g, ph.t_fit)
    share = 0.0 if rise < C3_MIN_RISE else (value_at(g, ph.t_end) - value_at(g, ph.t_cleanup)) / rise
    span = math.log10(ph.t_last / ph.t_fit)
    return share - math.log10(ph.t_end / ph.t_cleanup) / span


_test_c3 = _per_run_test(
    ("fourier_gini_embed",), c3_excess_share, "no cleanup phase",
    effect_name="mean (Gini rise share in cleanup - cleanup's log-time share)",
    describe=lambda m: f"cleanup holds {m:+.2f} more of the Gini rise than its share of log-time")


C3_RULE = _rule(
    _PHASE_TEXT + "Statistic: the share of the embedding Fourier Gini's rise (from t_fit to the last checkpoint) "
    "that happens inside cleanup, minus cleanup's share of that span of log10(step) (what an even rise in "
    f"log-time would put there); a Gini that rises by less than {C3_MIN_RISE} has share 0.",
    "0", "the rise is concentrated in cleanup (mean > 0)", "it is concentrated outside cleanup (mean < 0)")


def _final_fraction(metric: str):
    """Per-run statistic: the logit of a fraction-valued metric at the run's last checkpoint."""
    def statistic(series, ph: Phases):
        return float(_logit(series[metric][1][-1]))
    return statistic


def _final_fraction_test(metric: str, line: float, effect_name: str, paper_value: str = ""):
    """A one-sample t-test of the mean logit of ``metric`` at the end against logit(``line``)."""
    return _per_run_test(
        (metric,), _final_fraction(metric), f"no {metric}", null=float(_logit(line)),
        null_text=f"logit({line:g})", effect_name=f"mean logit({effect_name})",
        describe=lambda m: f"{effect_name} at the mean logit: {1 / (1 + math.exp(-m)):.3f}{paper_value}")


c3b_key_power = _final_fraction("fourier_key_power")
_test_c3b = _final_fraction_test("fourier_key_power", KEY_POWER, "key-frequency share of non-DC embedding power")


C3B_RULE = _rule(
    "statistic: logit of the share of the non-DC embedding power (sum of squared frequency norms) in the key "
    "frequencies at the last checkpoint (key frequencies by the probe's fixed rule on the final checkpoint, "
    "probes/circuits.py).",
    f"logit({KEY_POWER:g})", f"the share lies above {KEY_POWER:g}", f"it lies below {KEY_POWER:g}")

# ----------------------------------------------------------------------------
# C4: the cos coefficients grow smoothly
# ----------------------------------------------------------------------------


def _width(series):
    """10->90 % width (decades) of a curve's move from its first value (step 0) to its last value."""
    start = float(series[0][0])
    v0, v1 = series[1][0], series[1][-1]
    if not (np.isfinite(v0) and np.isfinite(v1)) or v1 == v0:
        return None
    rising = v1 > v0
    t10 = crossing(series, v0 + 0.1 * (v1 - v0), start=start, falling=not rising)
    t90 = crossing(series, v0 + 0.9 * (v1 - v0), start=start, falling=not rising)
    if not (np.isfinite(t10) and np.isfinite(t90)) or t90 <= t10:
        return None
    return math.log10(t90 / t10)


def c4_log_width_ratio(series, ph: Phases):
    """log10(width(cos_coef_key) / width(test_acc)), both read on the checkpoint steps (the same grid)."""
    cos = series["cos_coef_key"]
    grid = cos[0]
    acc = (grid, np.interp(_log_steps(grid), _log_steps(series["test_acc"][0]), series["test_acc"][1]))
    w_cos, w_acc = _width(cos), _width(acc)
    return math.log10(w_cos / w_acc) if w_cos and w_acc else None


_test_c4 = _per_run_test(
    ("cos_coef_key",), c4_log_width_ratio, "no defined width", null=C4_MIN_LOG_RATIO,
    null_text=f"log10({10 ** C4_MIN_LOG_RATIO:g})",
    effect_name="mean log10(width(cos coefficient) / width(test accuracy))",
    describe=lambda m: f"the cos coefficient's transition is {10 ** m:.2f}x as wide as accuracy's")


C4_RULE = _rule(
    "statistic r = log10(w_cos / w_acc), where w is the 10->90 % width (decades of step) of a curve's move from "
    "its value at step 0 to its last value (so growth during memorisation counts: 'from early training'), for "
    "cos_coef_key (the mean over key frequencies of the logits' "
    "coefficient on cos(w_k(a+b-c))) and for test accuracy, both on the checkpoint steps (accuracy interpolated "
    "there, so the two widths have the same resolution).",
    f"log10({10 ** C4_MIN_LOG_RATIO:g}) (twice as wide)", f"the coefficient's transition is more than "
    f"{10 ** C4_MIN_LOG_RATIO:g}x as wide as accuracy's", f"it is less than {10 ** C4_MIN_LOG_RATIO:g}x as wide")

# ----------------------------------------------------------------------------
# C5: the norm falls smoothly in formation, steeply in cleanup
# ----------------------------------------------------------------------------


def c5_steepening(series, ph: Phases):
    """Fall rate of log10 ||theta||^2 per decade in cleanup minus that in circuit formation (positive: steeper)."""
    if not all(np.isfinite(t) for t in (ph.t_fit, ph.t_cleanup, ph.t_end)) or not ph.t_fit < ph.t_cleanup < ph.t_end:
        return None
    w = series["sq_weight_sum"]

    def fall_rate(a, b):
        return -(math.log10(value_at(w, b)) - math.log10(value_at(w, a))) / math.log10(b / a)

    return fall_rate(ph.t_cleanup, ph.t_end) - fall_rate(ph.t_fit, ph.t_cleanup)


def _test_c5(table) -> Outcome:
    values, n, excl, notes = _per_run(table, ("sq_weight_sum",), c5_steepening, "no formation or cleanup span")
    data = series_by_run(table, {"train_acc", "test_acc", "test_loss"})
    inside = [ph.t_cleanup <= ph.t_grok <= ph.t_end for ph in map(run_phases, data.values())
              if np.isfinite(ph.t_grok) and np.isfinite(ph.t_cleanup)]
    notes += f"; t_grok inside cleanup in {sum(inside)} of {len(inside)} grokking run(s) with a cleanup phase"
    return _decide(values, n, excl, notes, null=0.0, expected="positive", test=_T_TEST.format(null=0),
                   statistic_name="t", effect_name="mean fall rate of log10 ||theta||^2 per decade, cleanup - formation",
                   describe=lambda m: f"cleanup falls {m:+.2f} decades of ||theta||^2 per decade faster")


C5_RULE = _rule(
    _PHASE_TEXT + "Statistic: the fall of log10(sum of squared weights) per decade of step in cleanup minus that "
    "in circuit formation (end points interpolated on the checkpoint steps).",
    "0", "the norm falls faster in cleanup (mean > 0)", "it falls faster in circuit formation (mean < 0)")

# ----------------------------------------------------------------------------
# C6: no weight decay, no circuit
# ----------------------------------------------------------------------------


def _test_c6(table) -> Outcome:
    data = series_by_run(table, {"fourier_gini_embed"})
    wd = table.drop_duplicates("run_id").set_index("run_id")["weight_decay"]
    final = {rid: s["fourier_gini_embed"][1][-1] for rid, s in data.items()
             if "fourier_gini_embed" in s and len(s["fourier_gini_embed"][1])}
    dec = np.array([g for rid, g in final.items() if wd[rid] > 0])
    free = np.array([g for rid, g in final.items() if wd[rid] == 0])
    if dec.size < 2 or free.size < 2:
        raise InsufficientDataError(f"{dec.size} decaying and {free.size} wd = 0 run(s) with a final Gini; "
                                    "the rule needs >= 2 of each")
    v1, v0 = dec.var(ddof=1) / dec.size, free.var(ddof=1) / free.size
    se = math.sqrt(v1 + v0)
    if not se > 0:
        raise InsufficientDataError("the final Ginis do not vary")
    df = (v1 + v0) ** 2 / (v1 ** 2 / (dec.size - 1) + v0 ** 2 / (free.size - 1)) if v1 + v0 > 0 else float("nan")
    diff = float(dec.mean() - free.mean())
    return directional_outcome(
        estimate=diff, se=se, df=df, expected="positive", null=C6_MARGIN, alpha=ALPHA,
        test=f"Welch two-sided t-test of the mean difference = {C6_MARGIN}", statistic_name="t",
        effect_name="final embedding Gini, wd > 0 minus wd = 0", n_runs=int(dec.size + free.size),
        notes=(f"{dec.size} decaying run(s) (mean Gini {dec.mean():.3f}), {free.size} wd = 0 run(s) (mean "
               f"{free.mean():.3f})"))


C6_RULE = (
    f"Primary design: the free transformer runs (else those of the most replicated architecture) at wd = 0 and "
    f"at the decaying level (>= 3 runs each). "
    f"Statistic: the embedding's Fourier Gini (non-DC frequency norms) at each run's last checkpoint. Welch "
    f"two-sided t-test of the mean difference (wd > 0 minus wd = 0) against the margin {C6_MARGIN} (the smallest "
    f"difference we call 'a sparse spectrum formed') at alpha = {pct(ALPHA)}: supported if p < {pct(ALPHA)} and "
    f"the difference exceeds {C6_MARGIN} (only weight decay gives the sparse spectrum); contradicted if "
    f"p < {pct(ALPHA)} and it is below {C6_MARGIN} (wd = 0 runs end about as sparse); otherwise inconclusive.")

# ----------------------------------------------------------------------------
# C7: most neurons are single-frequency at the end
# ----------------------------------------------------------------------------


c7_single_frequency = _final_fraction("neuron_single_freq_frac")
_test_c7 = _final_fraction_test("neuron_single_freq_frac", C7_LINE, "fraction of single-frequency neurons",
                                " (Nanda: 0.846)")


C7_RULE = _rule(
    f"statistic: logit of the fraction of hidden neurons (the MLP's hidden layer; the transformer's MLP) whose "
    f"centred activation over the (a, b) grid has more than {NEURON_EXPLAINED:.0%} of its variance explained by "
    f"one frequency, at the last checkpoint.",
    f"logit({C7_LINE:g})", f"most neurons are single-frequency (above {C7_LINE:g})",
    f"fewer than {C7_LINE:g} are")

# ----------------------------------------------------------------------------
# calibration planters: the quick design's configs -> planted tidy tables
# ----------------------------------------------------------------------------

#: Planted per-run statistics: the null line, the effect (the paper's where it gives one) and the seed-to-seed
#: SD, measured on the quick study's 10 transformer seeds (2026-11-25; rounded up; C4's and C5's kept larger).
#: "opposite" plants null - (effect - null).
PLANT = {
    "C1": dict(null=0.0, effect=0.15, sd=0.12),  # Nanda Fig. 7: restricted loss drops ~1.4x earlier
    "C2": dict(null=C2_MIN_DECADES, effect=3.0, sd=1.8),  # "orders of magnitude": 3 decades
    "C3": dict(null=0.0, effect=0.3, sd=0.11),  # most of the Gini rise in a cleanup of ~1/3 of log-time
    "C3b": dict(null=float(_logit(KEY_POWER)), effect=float(_logit(0.97)), sd=1.0),  # 5 key freqs hold ~97 %
    "C4": dict(null=C4_MIN_LOG_RATIO, effect=C4_MIN_LOG_RATIO + 0.3, sd=0.12),  # 4x wider than accuracy
    "C5": dict(null=0.0, effect=1.0, sd=0.4),  # Nanda Fig. 7: the steep fall in cleanup
    "C6": dict(null=C6_MARGIN, effect=0.3, sd=0.07),  # Gini ~0.3 higher with decay
    "C7": dict(null=float(_logit(C7_LINE)), effect=float(_logit(0.846)), sd=0.8),  # Nanda: 433/512 neurons
}


def _checkpoint_grid(t_last: float) -> np.ndarray:
    """64 checkpoint steps like the trainer's (log-spaced early, linear late), ending at ``t_last``."""
    grid = np.r_[0.0, np.geomspace(1, t_last, 32), np.linspace(0, t_last, 33)[1:]]
    return np.unique(np.round(grid))


def _planted_run(cfg, rng, value: dict):
    """One run's curves with the chosen per-run statistics ``value`` (prediction id -> planted value)."""
    from .planted import accuracy_curves, logged_steps, logistic_logtime

    decays = cfg.optim.weight_decay > 0
    t_grok = 2000.0 * math.exp(rng.normal(0, 0.1))
    t_fit = t_grok / 15 * math.exp(rng.normal(0, 0.1))
    t_last = min(float(cfg.budget.max_steps), 2.0 * t_grok) if decays else float(cfg.budget.max_steps)
    steps = logged_steps(cfg)
    steps = steps[steps <= t_last]
    grid = _checkpoint_grid(t_last)
    lg = _log_steps(grid)
    # test loss: log10 falls 3 decades along a logistic around t_grok; the phases are then read from the
    # planted curves by the rule itself, so each planted statistic is measured against the same boundaries
    w_loss, mid = 0.35, t_grok / 10 ** 0.12
    curves = accuracy_curves(steps, t_fit, t_grok if decays else math.inf, width=0.1)
    gen_s = logistic_logtime(steps, mid, w_loss) if decays else np.zeros_like(steps)
    log_test = math.log10(5.0) - 3.0 * gen_s

    def log_train_loss(at, t_fit=t_fit):  # falls 3 decades from t_fit / 10 to t_fit / 2, then 1 more with generalisation
        fit = np.clip((_log_steps(at) - math.log10(t_fit / 10)) / math.log10(5), 0, 1)
        return 0.6 - 3.0 * fit - (logistic_logtime(at, mid, w_loss) if decays else 0.0)

    log_train = log_train_loss(steps)
    ph = run_phases({"train_acc": (steps, curves["train_acc"]), "test_acc": (steps, curves["test_acc"]),
                     "test_loss": (steps, 10 ** log_test)})
    t_fit = ph.t_fit
    t_cleanup = ph.t_cleanup if decays else mid / 10 ** (w_loss / 2)
    t_end = ph.t_end if decays else mid * 10 ** (w_loss / 2)
    t_last = float(steps[-1])
    # restricted loss: the same fall, value["C1"] decades earlier
    gen_r = logistic_logtime(grid, mid / 10 ** value["C1"], w_loss) if decays else np.zeros_like(grid)
    log_restricted = math.log10(4.0) - 3.0 * gen_r
    # excluded/train ratio: rises value["C2"] decades linearly in log-time from t_fit to the start of cleanup
    train_at_grid = log_train_loss(grid)
    ramp = np.clip((lg - math.log10(t_fit)) / math.log10(t_cleanup / t_fit), 0, 1)
    log_excluded = train_at_grid + value["C2"] * ramp
    # Gini: rises 0.5 from t_fit to the end; the share value["C3"] + cleanup's log-time share inside cleanup
    a, b = math.log10(t_cleanup / t_fit), math.log10(t_end / t_cleanup)
    span = math.log10(t_last / t_fit)
    share = float(np.clip(value["C3"] + b / span, 0, 1))
    knots_x = np.log10([t_fit, t_cleanup, t_end, t_last])
    rise = 0.5 if decays else 0.5 - value["C6"]
    outside = (1 - share) * rise / (span - b)
    knots_y = 0.3 + np.cumsum([0.0, outside * a, share * rise, outside * (span - a - b)])
    gini = np.interp(lg, knots_x, knots_y)
    # cos coefficient: a logistic around t_grok 10**value["C4"] times as wide as accuracy's (on the grid)
    w_acc = 0.1
    cos = 0.05 + 3.0 * logistic_logtime(grid, mid, w_acc * 10 ** value["C4"]) if decays else np.full_like(grid, 0.05)
    # squared weights: fall rates (decades per decade) 0.5 in formation, 0.5 + value["C5"] in cleanup
    fall = np.interp(lg, knots_x[:3], [0.0, -0.5 * a, -0.5 * a - (0.5 + value["C5"]) * b])
    log_sq = 4.0 + np.where(lg < knots_x[0], 0.0, fall)
    key = 1 / (1 + math.exp(-value["C3b"]))
    neurons = 1 / (1 + math.exp(-value["C7"]))
    progress = np.interp(lg, [knots_x[0], knots_x[2]], [0.0, 1.0])
    on_steps = {**curves, "test_loss": 10 ** log_test, "train_loss": 10 ** log_train}
    on_grid = {"restricted_loss_test": 10 ** log_restricted, "excluded_loss_train": 10 ** log_excluded,
               "fourier_gini_embed": gini, "cos_coef_key": cos, "sq_weight_sum": 10 ** log_sq,
               "fourier_key_power": 0.3 + (key - 0.3) * progress,
               "neuron_single_freq_frac": 0.02 + (neurons - 0.02) * progress}
    return cfg, {**{n: (steps, v) for n, v in on_steps.items()}, **{n: (grid, v) for n, v in on_grid.items()}}


def _plant(kind: str):
    def plant(configs, scenario: str, rng):
        from .planted import table_of_runs

        if scenario not in ("null", "effect", "opposite"):
            raise ValueError(f"scenario must be 'null', 'effect' or 'opposite', got {scenario!r}")
        runs = []
        for cfg in configs:
            value = {k: v["effect"] + rng.normal(0, v["sd"]) for k, v in PLANT.items()}
            spec = PLANT[kind]
            centre = {"null": spec["null"], "effect": spec["effect"],
                      "opposite": 2 * spec["null"] - spec["effect"]}[scenario]
            value[kind] = centre + rng.normal(0, spec["sd"])
            if kind == "C6":  # a per-group shift: the wd = 0 runs' Gini ends centre lower
                value["C6"] = centre + rng.normal(0, spec["sd"])
            runs.append(_planted_run(cfg, rng, value))
        return table_of_runs(runs)

    plant.__doc__ = f"{kind} planter: every circuit curve, with {kind}'s per-run statistic set by the scenario."
    return plant


def _calibration(kind: str, what: str) -> Calibration:
    spec = PLANT[kind]
    return Calibration(plant=_plant(kind), effect=(
        f"{what}: effect {spec['effect']:.3g}, null at the decision line {spec['null']:.3g}, opposite "
        f"{2 * spec['null'] - spec['effect']:.3g}; seed-to-seed SD {spec['sd']} (measured on the quick study). "
        f"Other statistics "
        f"planted at their effects."))


# ----------------------------------------------------------------------------
# figures (the ones readers know from the paper)
# ----------------------------------------------------------------------------

#: Prefixes of the probe's per-frequency rows: embedding norm per frequency, logit cos coefficient per key
#: frequency, single-frequency neurons per frequency (cluster sizes at the last checkpoint).
_FNORM, _COS, _CLUSTER = "embed_fnorm_k", "cos_coef_k", "neuron_cluster_k"


def _primary(table):
    """The rows of the primary design (empty when the table has none)."""
    sub, problems = DESIGN.select(table)
    return sub.iloc[:0] if problems else sub


def _per_frequency(rows, prefix: str):
    """Frequency (int) -> that frequency's rows, for metrics named ``prefix`` + k."""
    sel = rows[rows["metric"].str.startswith(prefix)]
    return {int(m[len(prefix):]): g for m, g in sel.groupby("metric") if m[len(prefix):].isdigit()}


def _phase_bands(ax, table) -> None:
    """Circuit formation and cleanup as shaded bands (geometric means over runs), boundary CIs as hatched spans."""
    summary = phase_summary(phase_table(table))
    bounds = [summary.get(k) for k in ("t_fit", "t_cleanup", "t_end")]
    colours = ("tab:blue", "tab:orange")
    for (lo, hi), colour, name in zip(((0, 1), (1, 2)), colours, ("circuit formation", "cleanup")):
        if bounds[lo] and bounds[hi]:
            ax.axvspan(bounds[lo][0], bounds[hi][0], color=colour, alpha=0.12, label=name)
    for b in bounds:
        if b and np.isfinite(b[1]):
            ax.axvspan(b[1], b[2], facecolor="none", edgecolor="grey", hatch="///", lw=0, alpha=0.5)


def figure_progress_measures(table):
    """Progress measures against step (primary design): losses (train, test, restricted, excluded), the
    embedding's Fourier Gini and the sum of squared weights; runs faded, mean bold; phase bands with hatched
    95 % intervals of their boundaries across runs."""
    from ..plotting import new_figure, palette, seeds_and_mean

    rows = _primary(table)
    if rows.empty or not rows["metric"].eq("restricted_loss_test").any():
        return None
    fig, axes = new_figure(3, 1, width=4.6, height=3.4)
    losses = ("train_loss", "test_loss", "restricted_loss_test", "excluded_loss_train")
    for metric, colour in zip(losses, palette(len(losses))):
        seeds_and_mean(rows, metric=metric, ax=axes[0][0], color=colour, label=metric)
    axes[0][0].set_yscale("log")
    for ax, metric in zip(axes[0][1:], ("fourier_gini_embed", "sq_weight_sum")):
        seeds_and_mean(rows, metric=metric, ax=ax, color="black", label=metric)
    axes[0][2].set_yscale("log")
    for ax, title in zip(axes[0], ("losses", "Fourier Gini of the embedding", "sum of squared weights")):
        _phase_bands(ax, rows)
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
    axes[0][0].legend(fontsize=6)
    axes[0][1].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


def figure_spectrum_over_time(table):
    """Embedding Fourier spectrum over training: per-frequency norm (colour) against step, one run of the
    primary design (the lowest seed)."""
    from ..plotting import new_figure

    rows = _primary(table)
    if rows.empty:
        return None
    run = rows.sort_values(["seed", "run_id"])["run_id"].iloc[0]
    freqs = _per_frequency(rows[rows["run_id"] == run], _FNORM)
    if not freqs:
        return None
    ks = sorted(freqs)
    steps = np.sort(freqs[ks[0]]["step"].unique())
    grid = np.array([freqs[k].set_index("step")["value"].reindex(steps).to_numpy() for k in ks])
    fig, axes = new_figure(1, 1, width=6.4, height=3.8)
    ax = axes[0][0]
    mesh = ax.pcolormesh(np.maximum(steps, 1), ks, grid, shading="nearest", cmap="magma")
    fig.colorbar(mesh, ax=ax, label="embedding norm at frequency k")
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("frequency k")
    ax.set_title(f"embedding spectrum, run {run}")
    fig.tight_layout()
    return fig


def _bars_per_run(table, prefix: str, draw, ylabel: str):
    """One bar panel per run (up to 4 runs of the primary design, lowest seeds) from its per-frequency rows."""
    from ..plotting import new_figure

    rows = _primary(table)
    runs = list(rows.sort_values(["seed", "run_id"])["run_id"].unique())[:4] if not rows.empty else []
    if not runs or not rows["metric"].str.startswith(prefix).any():
        return None
    fig, axes = new_figure(len(runs), 1, width=3.4, height=3.0)
    for ax, run in zip(axes[0], runs):
        own = rows[rows["run_id"] == run]
        last = {k: g.loc[g["step"] == g["step"].max(), "value"].iloc[0] for k, g in _per_frequency(own, prefix).items()}
        draw(ax, own, last)
        ax.set_xlabel("frequency k")
    axes[0][0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def figure_final_spectrum(table):
    """Final embedding spectrum per run (up to 4 runs of the primary design), key frequencies in orange."""

    def draw(ax, own, norms):
        keys = set(_per_frequency(own, _COS))
        ks = sorted(norms)
        ax.bar(ks, [norms[k] for k in ks], color=["tab:orange" if k in keys else "tab:grey" for k in ks])
        ax.set_title(f"seed {int(own['seed'].iloc[0])}, step {int(own['step'].max())}; key {sorted(keys)}",
                     fontsize=8)

    return _bars_per_run(table, _FNORM, draw, "embedding norm")


def figure_neuron_clusters(table):
    """Single-frequency neurons per frequency at the last checkpoint (Nanda's neuron clusters), per run of the
    primary design (up to 4)."""

    def draw(ax, own, sizes):
        ks = sorted(k for k, v in sizes.items() if v > 0)
        ax.bar([str(k) for k in ks], [sizes[k] for k in ks], color="tab:purple")
        ax.set_title(f"seed {int(own['seed'].iloc[0])}", fontsize=8)

    return _bars_per_run(table, _CLUSTER, draw, f"neurons > {NEURON_EXPLAINED:.0%} explained")


# ----------------------------------------------------------------------------
# the family
# ----------------------------------------------------------------------------

_NANDA = "Nanda, Chan, Lieberum, Smith, Steinhardt 2023 (arXiv 2301.05217)"


def _prediction(pid: str, statement: str, rule: str, test, paper: str, metrics: tuple, what: str,
                design: Design = DESIGN) -> Prediction:
    return Prediction(id=pid, family="circuits", statement=statement, rule=rule, test=test, design=design,
                      paper=f"{_NANDA}: {paper}", metrics_needed=("train_acc", "test_acc", "test_loss", *metrics),
                      calibration=_calibration(pid, what))


CIRCUITS = register(Family(
    name="circuits",
    title="Grokking is the end of a Fourier circuit's formation",
    explanation=(
        "The network learns modular addition through a few Fourier frequencies. After memorising the "
        "training set it slowly builds this circuit while test accuracy stays at chance (hidden progress, "
        "visible in the restricted and excluded losses and the Fourier spectrum); weight decay then removes "
        "the memorising parts (cleanup) and test accuracy jumps."),
    references=(f"{_NANDA}, progress measures for grokking via mechanistic interpretability",
                "Gromov 2023, arXiv 2301.02679 (the MLP's analytic Fourier solution)"),
    study="circuits",
    probes=(PROBE,),
    figures=(figure_progress_measures, figure_spectrum_over_time, figure_final_spectrum, figure_neuron_clusters),
    predictions=(
        _prediction("C1", "The restricted loss falls before the test loss: the circuit is there before test "
                          "accuracy shows it.", C1_RULE, _test_c1,
                    "'restricted loss falls before test loss' (Fig. 7; lead of thousands of epochs at frac 0.3).",
                    ("restricted_loss_test",), "log10 lead of the restricted loss's halving (decades)"),
        _prediction("C2", "The excluded loss, relative to the train loss, rises by orders of magnitude during "
                          "circuit formation.", C2_RULE, _test_c2,
                    "'excluded loss rises during circuit formation while train and test loss stay flat'.",
                    ("excluded_loss_train", "train_loss"), "rise of log10(excluded/train loss) in decades"),
        _prediction("C3", "The embedding's Fourier Gini rises sharply in cleanup, around t_grok.", C3_RULE,
                    _test_c3, "'Gini coefficients of W_E and W_L rise sharply during cleanup' (Fig. 7).",
                    ("fourier_gini_embed",), "excess share of the Gini rise inside cleanup"),
        _prediction("C3b", f"At the end, >= {KEY_POWER:.0%} of the embedding's non-DC Fourier power lies in a few "
                           f"key frequencies.", C3B_RULE, _test_c3b,
                    "key frequencies {14, 35, 41, 42, 52} on the mainline seed, 3-4 on others; W_E has 6 "
                    "non-negligible frequencies.", ("fourier_key_power",),
                    "logit of the key frequencies' share of the non-DC power"),
        _prediction("C4", "The key frequencies' cos(w_k(a+b-c)) logit coefficients grow smoothly, long before "
                          "test accuracy jumps.", C4_RULE, _test_c4,
                    "cos coefficients grow smoothly from early training (Fig. 14 / 'cos coeffs').",
                    ("cos_coef_key",), "log10 width ratio, cos coefficient over accuracy"),
        _prediction("C5", "The weight norm falls smoothly during circuit formation and steeply in cleanup.",
                    C5_RULE, _test_c5, "'the total sum of squared weights falls smoothly during circuit "
                                        "formation and more sharply during cleanup' (Fig. 7).",
                    ("sq_weight_sum",), "steepening of the norm's fall (decades per decade)"),
        _prediction("C6", "Without weight decay no sparse Fourier spectrum forms.", C6_RULE, _test_c6,
                    "'lambda = 0: no grokking, no circuit formation' (appendix).", ("fourier_gini_embed",),
                    "final Gini difference, wd > 0 minus wd = 0", design=DESIGN_C6),
        _prediction("C7", "Most hidden neurons are explained by one frequency at the end.", C7_RULE, _test_c7,
                    "433 of 512 neurons (84.6 %) have > 85 % of their variance explained by one frequency.",
                    ("neuron_single_freq_frac",), "logit of the fraction of single-frequency neurons"),
    ),
))
