"""Family `interventions`: interventions on the loss and the optimiser that separate the explanations.

Two accounts of *why* generalisation waits make predictions about interventions, tested on the task, model
and seeds of the weight-decay ablation (so the runs they compare with are that study's own):

* **Softmax collapse** (Prieto et al. 2025). Without weight decay the network, once it fits the training
  set, keeps scaling up its logits (naive loss minimisation) until the float32 loss of most training
  examples rounds to exactly zero: those examples stop teaching it, and generalisation stalls. Weight
  decay's main role is to prevent that. So without weight decay StableMax (**I1**) and ⊥AdamW (**I2**)
  should generalise where plain softmax runs do not (against the weight-decay explanation's "no grokking
  without decay", W3), and plain softmax runs trained with a float32 loss should collapse and then stall
  (**I3**).
* **Slow gradients** (Lee et al. 2024, Grokfast). Generalisation is driven by the slow component of the
  gradient; amplifying it with an EMA (or moving-average) filter should shorten t_grok against a baseline
  *with the same weight decay* (**I4**, the fair comparison: the paper's baseline had no decay). I4's notes
  also say what the filter does to the test-loss peak (the double-descent hump), to softmax collapse and to
  the circuit measures, as estimates with intervals (not decided).

Every prediction is decided once, on its primary design: the runs of the intervention it is about (and no
other: :attr:`grokking_theories.stats.Design.about`) and plain runs *matched* to them on task, model, lr,
weight decay and budget. Thresholds live in :mod:`grokking_theories.levels`; each rule's text is built from
them, and each rule ships a calibration planter.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..config import PAIR_OPS
from ..levels import (ALPHA, COLLAPSED_SHARE, FIT_ACC, GENERALISED_GAIN, GROK_ACC, GROKFAST_SPEEDUP, STALL_GAIN,
                      pct)
from ..stats import (Calibration, Design, InsufficientDataError, Outcome, Prediction, censored_fit,
                     permutation_logrank)
from ..stats.prediction import directional_outcome
from . import planted
from ._series import series_by_run
from .base import Family, register
from .weight_decay import _admitted, _log_bounds, run_times

# ---------------------------------------------------------------------------- designs
#: Free runs at the default init, without label noise: what every arm here is drawn from.
FREE = "decay_target == 'zero' and fixed_norm.isna() and alpha == 1 and label_noise == 0"
#: A treated run is compared only with plain runs equal to it in all of these (the matched cell): the task and its
#: split, the model, and every optimiser and budget knob that changes the dynamics.
MATCH = ("op", "p", "train_frac", "split_seed", "arch", "width", "d_model", "d_mlp", "n_heads", "lr", "weight_decay",
         "beta1", "beta2", "eps", "warmup_steps", "decayed", "batch_size", "max_steps")
#: The interventions are about the pair tasks (modular arithmetic first): where a study also has digits runs,
#: the designs stay on the pair task whatever the run counts.
_PAIR_TASK = {"op": PAIR_OPS}
#: I1, I2, I4: least runs per arm (shipped: 8 seeds); a Welch t-test or a censored fit with fewer says little.
MIN_RUNS = 4
#: I3: least runs it decides on. Below 6 an exact two-sided binomial test cannot reach p < 0.05 even when every
#: run agrees; the study ships 12 (power 0.89 when 9 runs in 10 collapse and stall: 10 of 12 give p = 0.039).
COLLAPSE_MIN_RUNS = 6

DESIGN_I1 = Design(runs=f"{FREE} and weight_decay == 0", about=("loss_fn",), prefer=_PAIR_TASK,
                   levels={"loss_fn": 2}, min_seeds=MIN_RUNS)
DESIGN_I2 = Design(runs=f"{FREE} and weight_decay == 0", about=("orthograd",), prefer=_PAIR_TASK,
                   levels={"orthograd": 2}, min_seeds=MIN_RUNS)
#: I3: plain softmax runs without decay *trained with a float32 loss*, where a collapsed example's gradient is
#: really zero (the package's default float64 loss postpones collapse, as Prieto et al. show).
DESIGN_I3 = Design(runs=f"{FREE} and weight_decay == 0 and loss_dtype == 'float32'", about=("loss_dtype",),
                   hold=tuple(c for c in MATCH if c != "weight_decay"), prefer=_PAIR_TASK,
                   min_seeds=COLLAPSE_MIN_RUNS)
DESIGN_I4 = Design(runs=f"{FREE} and weight_decay > 0", about=("grokfast",), prefer=_PAIR_TASK,
                   levels={"grokfast": 2}, min_seeds=MIN_RUNS)


def matched_arms(sub: pd.DataFrame, column: str, plain) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(treated runs, matched plain runs, the cell): one row per run with its config columns.

    The cell is the :data:`MATCH` configuration (and, for Grokfast, the filter's settings) with the most
    treated runs (ties: the first in sorted order); the plain runs are those of that cell with ``column`` at
    ``plain``. A plain run never stands in for a treated run of another lr, weight decay or budget.
    """
    runs = sub.drop_duplicates("run_id")
    treated = runs[runs[column] != plain]
    if treated.empty:
        raise InsufficientDataError(f"primary design absent: no run with {column} != {plain!r}")
    keys = [c for c in MATCH if c in runs.columns]
    extra = [c for c in dict.fromkeys((column, "grokfast_alpha", "grokfast_lamb", "grokfast_window"))
             if c in runs.columns and c not in keys and (column == "grokfast" or c == column)]
    counts = treated.groupby(keys + extra, dropna=False).size()
    top = counts[counts == counts.max()].index[0]
    cell = dict(zip(keys + extra, top if isinstance(top, tuple) else (top,)))
    in_cell = np.logical_and.reduce([runs[k] == cell[k] for k in keys])
    treated = runs[in_cell & np.logical_and.reduce([runs[k] == cell[k] for k in extra])]
    control = runs[in_cell & (runs[column] == plain)]
    return treated, control, cell


def _need(treated, control, least: int, what: str) -> None:
    if len(treated) < least or len(control) < least:
        raise InsufficientDataError(f"primary design absent: {len(treated)} {what} run(s) and {len(control)} "
                                    f"matched plain run(s); the rule needs >= {least} of each")


def _cell_note(cell: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in cell.items()
                     if k in ("op", "p", "arch", "lr", "weight_decay", "max_steps", "grokfast_alpha", "grokfast_lamb",
                              "grokfast_window"))


def _final(series: dict, run_ids, metric: str) -> np.ndarray:
    """The last finite value of ``metric`` of each run (NaN where the run has none)."""
    out = []
    for rid in run_ids:
        steps, values = series.get(rid, {}).get(metric, (np.array([]), np.array([])))
        out.append(values[-1] if len(values) else np.nan)
    return np.asarray(out, float)


def welch(a, b) -> tuple[float, float, float]:
    """mean(a) - mean(b), its standard error and Welch-Satterthwaite df (NaNs dropped)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else float("nan")
    return float(a.mean() - b.mean()), se, df


def _interval(a, b) -> str:
    """'d [lo, hi]' of mean(a) - mean(b) with a Welch 1 - ALPHA interval, or 'not measured'."""
    from scipy import stats

    d, se, df = welch(a, b)
    if not np.isfinite(d):
        return "not measured"
    if not (se > 0 and np.isfinite(df)):
        return f"{d:.3g} (no spread)"
    q = stats.t(df).ppf(1 - ALPHA / 2)
    return f"{d:.3g} [{d - q * se:.3g}, {d + q * se:.3g}]"


# ---------------------------------------------------------------------------- I1, I2: generalising without decay
def _generalises(column: str, plain, name: str):
    def test(sub: pd.DataFrame) -> Outcome:
        treated, control, cell = matched_arms(sub, column, plain)
        _need(treated, control, MIN_RUNS, name)
        series = series_by_run(sub, ("test_acc",))
        a = _final(series, treated["run_id"], "test_acc")
        b = _final(series, control["run_id"], "test_acc")
        missing = int((~np.isfinite(a)).sum() + (~np.isfinite(b)).sum())
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        _need(a, b, MIN_RUNS, f"{name} (with a logged test accuracy)")
        d, se, df = welch(a, b)
        if not (np.isfinite(se) and se > 0):
            raise InsufficientDataError(f"final test accuracies do not vary ({name}: {a.tolist()}, plain: "
                                        f"{b.tolist()})")
        chance = f"; chance {1 / float(cell['p']):.3f}" if "p" in cell else ""
        notes = (f"{_cell_note(cell)}; final test accuracy: {name} mean {a.mean():.3f} (range {a.min():.3f}-"
                 f"{a.max():.3f}, {int(np.sum(a >= GROK_ACC))}/{len(a)} at >= {pct(GROK_ACC)}), plain softmax mean "
                 f"{b.mean():.3f} (range {b.min():.3f}-{b.max():.3f}){chance}"
                 + (f"; {missing} run(s) without a logged test accuracy left out" if missing else ""))
        return directional_outcome(
            estimate=d, se=se, df=df, expected="positive", null=GENERALISED_GAIN, alpha=ALPHA,
            test=f"Welch t-test of the gain against {GENERALISED_GAIN:g}",
            statistic_name=f"t of (gain - {GENERALISED_GAIN:g})",
            effect_name=f"final test accuracy: {name} minus plain softmax (wd = 0)",
            n_runs=len(a) + len(b), notes=notes)
    return test


def _generalise_rule(name: str, column: str) -> str:
    return (f"Free runs at alpha 1 without weight decay: the {name} runs ({column} not plain) against the "
            f"plain softmax runs of the same task, model, lr and budget (>= {MIN_RUNS} runs each). Gain = mean "
            f"final test accuracy of the {name} runs minus that of the plain runs; Welch's t-test of gain = "
            f"{GENERALISED_GAIN:g} (an absolute gain in accuracy: about half the way from chance to perfect when there "
            f"are many classes). Supported if the gain is shown above "
            f"{GENERALISED_GAIN:g} (two-sided p < {pct(ALPHA)}), contradicted if shown below it; otherwise "
            f"inconclusive.")


# ---------------------------------------------------------------------------- I3: collapse, then the stall
def _collapse_and_stall(series: dict, rid: str) -> tuple[bool | None, float, float | None]:
    """(collapsed, then stalled? -- None when it cannot be told, largest collapsed share, collapse step or None).

    Collapsed: some checkpoint has more than COLLAPSED_SHARE of the training examples at a float32 loss of
    exactly 0 (the share may fall again later: a collapsed example no longer pulls the logits up); its step is
    the first such checkpoint's. A stall can be seen only after it: a collapse in the second half of the run's
    logged steps leaves too little to watch, and the run cannot be told (None). Stalled: the final test
    accuracy exceeds the last logged one at or before the collapse by less than STALL_GAIN, and the run never
    reaches GROK_ACC.
    """
    s_steps, share = series[rid].get("collapse_train_frac", (np.array([]), np.array([])))
    a_steps, acc = series[rid].get("test_acc", (np.array([]), np.array([])))
    if not len(share) or not len(acc):
        return None, float("nan"), None
    over = np.nonzero(share > COLLAPSED_SHARE)[0]
    if not over.size:
        return False, float(share.max()), None
    t_c = float(s_steps[over[0]])
    if t_c > a_steps[-1] / 2:
        return None, float(share.max()), t_c
    before = acc[a_steps <= t_c]
    at = before[-1] if before.size else acc[0]
    return bool(acc[-1] - at < STALL_GAIN and acc.max() < GROK_ACC), float(share.max()), t_c


def _test_i3(sub: pd.DataFrame) -> Outcome:
    from scipy.stats import binomtest

    series = series_by_run(sub, ("collapse_train_frac", "test_acc"))
    judged = {rid: _collapse_and_stall(series, rid) for rid in series}
    rows = [r for r in judged.values() if r[0] is not None]
    no_rows = sum(1 for r in judged.values() if not np.isfinite(r[1]))
    late = len(judged) - len(rows) - no_rows
    n = len(rows)
    left_out = (f"{no_rows} run(s) without the collapse probe's rows or a test accuracy, {late} collapsed in the "
                f"second half of the run (no stall observable) left out of {len(judged)}")
    if n < COLLAPSE_MIN_RUNS:
        raise InsufficientDataError(f"{n} run(s) can be judged, I3 needs >= {COLLAPSE_MIN_RUNS}; {left_out}")
    k = sum(r[0] for r in rows)
    result = binomtest(k, n, 0.5)
    ci = result.proportion_ci(1 - ALPHA, method="exact")
    times = [r[2] for r in rows if r[2] is not None]
    notes = (f"{k}/{n} runs collapsed (share of training examples with float32 loss exactly 0 > "
             f"{pct(COLLAPSED_SHARE)} at a checkpoint in the first half of the run) and then stalled (final test "
             f"accuracy < {pct(STALL_GAIN)} above that at the collapse, never {pct(GROK_ACC)}); largest shares "
             f"{', '.join(f'{r[1]:.2f}' for r in rows)}"
             + (f"; share first > {pct(COLLAPSED_SHARE)} at step {min(times):g}-{max(times):g}" if times else "")
             + (f"; {left_out}" if no_rows or late else ""))
    direction = "supported" if k / n > 0.5 else "contradicted"
    p = float(result.pvalue)
    return Outcome(verdict=direction if p < ALPHA and k / n != 0.5 else "inconclusive",
                   test="exact binomial test (two-sided) of P(collapse, then stall) = 0.5",
                   statistic_name="runs that collapsed, then stalled", statistic=float(k),
                   effect_name="share of runs that collapsed, then stalled", effect_size=k / n,
                   ci_low=float(ci.low), ci_high=float(ci.high), confidence=1 - ALPHA, p_value=p,
                   p_supports=direction, n_runs=n, notes=notes)


# ---------------------------------------------------------------------------- I4: Grokfast against the same wd
_TEST_NOTE = "interval-censored on the logging grid, right-censored at the budget"


def _test_i4(sub: pd.DataFrame) -> Outcome:
    treated, control, cell = matched_arms(sub, "grokfast", "none")
    name = f"Grokfast-{str(cell['grokfast']).upper()}"
    both = pd.concat([treated, control])
    times = run_times(sub[sub["run_id"].isin(set(both["run_id"]))])
    no_times = int(times["t_grok"].isna().sum())  # runs without a logged test accuracy
    times = times[times["t_grok"].notna()]
    is_gf = (times["grokfast"] != "none").to_numpy()
    _need(times[is_gf], times[~is_gf], MIN_RUNS, f"{name} (with a logged test accuracy)")
    cens = times["grok_censored"].to_numpy(bool)
    g, g_prev = times["t_grok"].to_numpy(float), times["t_grok_prev"].fillna(times["t_grok"]).to_numpy(float)
    seen = {arm: f"{int((~cens[m]).sum())}/{int(m.sum())}" for arm, m in (("grokfast", is_gf), ("baseline", ~is_gf))}
    notes = (f"{_cell_note(cell)}; {name}; t_grok seen (test accuracy >= {pct(GROK_ACC)}): Grokfast "
             f"{seen['grokfast']}, baseline {seen['baseline']}"
             + (f"; {no_times} run(s) without a logged test accuracy left out" if no_times else ""))
    null = -math.log10(GROKFAST_SPEEDUP)
    if cens[is_gf].all() or cens[~is_gf].all():
        # one arm never grokked: no ratio can be estimated, but the arms can still be ordered. Log-rank test
        # (exact permutation p) of the Grokfast times against the baseline's shrunk by the margin.
        shrunk = np.where(is_gf, g, g / GROKFAST_SPEEDUP)
        test = permutation_logrank(shrunk, ~cens, is_gf)
        faster = test.p_greater < test.p_less
        p = min(1.0, 2 * min(test.p_greater, test.p_less))
        direction = "supported" if faster else "contradicted"
        return Outcome(
            verdict=direction if p < ALPHA else "inconclusive",
            test=f"permutation log-rank test (two-sided) of Grokfast's t_grok against the baseline's / "
                 f"{GROKFAST_SPEEDUP:g} (every run of one arm censored)",
            statistic_name="log-rank O - E of the Grokfast runs", statistic=test.o_minus_e,
            effect_name="log10 t_grok ratio, Grokfast / same-wd baseline (not estimable: one arm never grokked)",
            p_value=p, p_supports=direction, n_runs=len(times),
            notes=notes + f"; every {'Grokfast' if cens[is_gf].all() else 'baseline'} run censored at its budget")
    lower, upper = _log_bounds(np.where(cens, g, g_prev), np.where(cens, np.inf, g))
    fit = censored_fit(np.column_stack([np.ones(len(times)), is_gf.astype(float)]), lower, upper,
                       ["intercept", "grokfast"])
    b, se = fit.contrast({"grokfast": 1.0})
    series = series_by_run(sub, ("test_loss", "collapse_train_frac", "fourier_gini_embed",
                                 "neuron_single_freq_frac"))
    t_ids, c_ids = treated["run_id"], control["run_id"]

    def peak(ids):  # log10 of the highest finite test loss of each run: the double-descent hump
        return np.log10([np.max(v[1]) if (v := series[r].get("test_loss")) is not None and len(v[1]) else np.nan
                         for r in ids])

    effects = [f"log10 peak test loss {_interval(peak(t_ids), peak(c_ids))}"]
    for metric, label in (("collapse_train_frac", "final collapsed share of training examples"),
                          ("fourier_gini_embed", "final Fourier Gini of the embeddings"),
                          ("neuron_single_freq_frac", "final share of single-frequency neurons")):
        effects.append(f"{label} {_interval(_final(series, t_ids, metric), _final(series, c_ids, metric))}")
    notes += (f"; t_grok ratio Grokfast / baseline {10 ** b:.3g} (x{10 ** -b:.3g} faster); Grokfast minus "
              f"baseline, not decided ({pct(1 - ALPHA)} Welch intervals): " + "; ".join(effects))
    return directional_outcome(
        estimate=b, se=se, df=fit.df, expected="negative", null=null, alpha=ALPHA,
        test=f"censored log-normal regression of t_grok on the arm, t reference ({_TEST_NOTE})",
        statistic_name=f"t of (log10 ratio + log10 {GROKFAST_SPEEDUP:g})",
        effect_name="log10 t_grok ratio, Grokfast / same-wd baseline", n_runs=fit.n, notes=notes)


# ---------------------------------------------------------------------------- calibration planters
#: Seed noise of the planted worlds, from the pilots (2026-11-26, a+b mod 31 MLP, 4 seeds an arm): final test
#: accuracy of ⊥AdamW at wd 0 spread 0.68-0.73 (sd ~0.02; planted 0.05, wider); log10 t_grok at wd 0.1 spread
#: 3,200-6,650 (sd ~0.15 decades).
ACC_SD = 0.05
T_GROK_SD = 0.15
#: The planted baseline t_grok at the budget the quick study gives it (pilot median ~6,300 of 12,000 steps).
T_GROK_SHARE = 0.5
#: Lee et al.'s README: Grokfast-EMA reaches 95 % validation accuracy after 910 iterations against the
#: baseline's 39,890 (x43.8).
PAPER_SPEEDUP = 43.8


def _plant(configs, rng, world, design: Design) -> pd.DataFrame:
    """A planted tidy table: the runs of ``configs`` that ``design``'s run filter admits (the others cannot
    change the verdict; calibration draws thousands of tables), on the trainer's logging grid, their curves
    from ``world``."""
    configs = tuple(configs)
    runs = []
    for cfg in (c for c, kept in zip(configs, _admitted(configs, design.runs)) if kept):
        steps = planted.logged_steps(cfg)
        runs.append((cfg, {m: (steps, v) for m, v in world(cfg, steps, rng).items()}))
    return planted.table_of_runs(runs)


def _plateau(steps, start: float, end: float) -> np.ndarray:
    """A curve from ``start`` to ``end``, linear in step over the run."""
    return start + (end - start) * np.asarray(steps, float) / max(float(steps[-1]), 1.0)


def _gain_world(column: str, plain, gain: float):
    def world(cfg, steps, rng):
        chance = 1.0 / cfg.task.p
        treated = cfg.flat()[column] != plain
        final = chance + (gain if treated else 0.0) + rng.normal(0, ACC_SD if treated else ACC_SD / 5)
        test = _plateau(steps, chance, float(np.clip(final, 0.0, 1.0)))
        train = np.where(steps >= planted.quick_t_fit(1.0), 1.0, FIT_ACC - 0.2)
        return {"train_acc": train, "test_acc": test}
    return world


def _plant_generalises(column: str, plain, design: Design):
    def plant(configs, scenario, rng):
        gain = {"effect": GROK_ACC - 1.0 / configs[0].task.p, "null": GENERALISED_GAIN, "opposite": 0.0}[scenario]
        return _plant(configs, rng, _gain_world(column, plain, gain), design)
    return plant


#: I3's planted effect: the share of runs that collapse, then stall. Prieto et al. show it in every run without
#: decay; 0.9 allows one run in ten to escape (a conservative reading of "~100 %").
COLLAPSE_RATE = 0.9


def _plant_i3(configs, scenario, rng):
    q = {"effect": COLLAPSE_RATE, "null": 0.5, "opposite": 1 - COLLAPSE_RATE}[scenario]

    def world(cfg, steps, rng):
        chance = 1.0 / cfg.task.p
        if rng.random() < q:  # collapses after fitting, then the test accuracy stays where it was
            share = planted.logistic_logtime(steps, 1000.0, 0.3)
            test = chance + np.abs(rng.normal(0, 0.005, len(steps)))
        else:  # no collapse: the margins stay finite and the test accuracy keeps rising (as ⊥AdamW's did)
            share = np.zeros(len(steps))
            test = _plateau(steps, chance, 0.7 + rng.normal(0, ACC_SD))
        return {"test_acc": test, "collapse_train_frac": share}
    return _plant(configs, rng, world, DESIGN_I3)


def _plant_i4(configs, scenario, rng):
    ratio = {"effect": 1 / PAPER_SPEEDUP, "null": 1 / GROKFAST_SPEEDUP, "opposite": GROKFAST_SPEEDUP}[scenario]

    def world(cfg, steps, rng):
        t_fit = planted.quick_t_fit(cfg.model.alpha, cfg.optim.lr)  # only wd > 0 runs are planted (DESIGN_I4)
        base = T_GROK_SHARE * cfg.budget.max_steps * 10 ** rng.normal(0, T_GROK_SD)
        t_grok = base * (ratio if cfg.optim.grokfast != "none" else 1.0)
        return planted.accuracy_curves(steps, t_fit, max(t_grok, 2 * t_fit))
    return _plant(configs, rng, world, DESIGN_I4)


# ---------------------------------------------------------------------------- figures
def arm_labels(table: pd.DataFrame) -> pd.Series:
    """Each row's intervention arm in words: 'softmax', 'StableMax', '⊥AdamW', 'Grokfast-EMA', 'float32 softmax'."""
    labels = np.select(
        [table["loss_fn"] == "stablemax", table["orthograd"].fillna(False).astype(bool),
         table["grokfast"].fillna("none") != "none",
         table["loss_dtype"] == "float32"],
        ["StableMax", "⊥AdamW", "Grokfast-" + table["grokfast"].astype(str).str.upper(), "float32 softmax"],
        default="softmax")
    return pd.Series(labels, index=table.index) + " wd=" + table["weight_decay"].map("{:g}".format)


def figure_interventions(table):
    """Test accuracy and collapsed share against step: the wd = 0 arms (I1-I3) and Grokfast against its baseline (I4)."""
    from ..plotting import curves_by, new_figure

    panels = []
    wd0 = table.query(DESIGN_I1.runs, engine="python") if not table.empty else table
    wd0 = wd0[wd0["op"] == wd0["op"].mode().iloc[0]] if not wd0.empty else wd0  # one task
    if wd0["run_id"].nunique() > 0 and arm_labels(wd0).nunique() > 1:  # every wd = 0 arm
        panels.append((wd0.assign(arm=arm_labels(wd0)), "wd = 0"))
    sub, problems = DESIGN_I4.select(table)
    if not problems:
        panels.append((sub.assign(arm=arm_labels(sub)), "Grokfast vs the same wd"))
    if not panels:
        return None
    fig, axes = new_figure(2, len(panels), width=4.8, height=3.2)
    for row, (sub, title) in zip(axes, panels):
        for ax, metric in zip(row, ("test_acc", "collapse_train_frac")):
            if curves_by(sub, metric=metric, hue="arm", ax=ax):
                ax.legend(fontsize=7, loc="best")
            ax.set_title(f"{metric}, {title}")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the family
def _generalise_prediction(pid: str, name: str, column: str, plain, design: Design, *, paper: str) -> Prediction:
    """I1 / I2: without weight decay, the ``name`` runs (``column`` not ``plain``) generalise; plain runs do not."""
    return Prediction(
        id=pid, family="interventions",
        statement=f"Without weight decay, {name} runs generalise where plain softmax runs do not.",
        design=design, paper=paper,
        metrics_needed=("test_acc",), config_present=(column, "weight_decay"),
        rule=_generalise_rule(name, column),
        test=_generalises(column, plain, name),
        calibration=Calibration(plant=_plant_generalises(column, plain, design), effect=(
            f"effect: {name} runs reach test accuracy {pct(GROK_ACC)} (Prieto et al.: full generalisation), plain "
            f"runs stay at chance; seed sd {ACC_SD:g}; null: gain exactly {GENERALISED_GAIN:g}; opposite: no gain "
            "(the weight-decay explanation)")))


INTERVENTIONS = register(Family(
    name="interventions",
    title="Interventions: softmax collapse (StableMax, ⊥AdamW) and slow gradients (Grokfast)",
    explanation=(
        "Softmax collapse (Prieto et al. 2025): without weight decay the logits grow until the float32 loss of "
        "most training examples is exactly zero and they stop teaching the network, so generalisation stalls; "
        "weight decay's main job is to prevent that, and StableMax or the orthogonal gradient (⊥AdamW) let a "
        "network generalise without it. Slow gradients (Lee et al. 2024, Grokfast): generalisation is driven by "
        "the slow component of the gradient, and amplifying it shortens the delay."),
    references=("Prieto, Barsbey, Mediano, Birdal 2025, arXiv 2501.04697",
                "Lee, Kang, Kim, Lee 2024 (Grokfast), arXiv 2405.20233"),
    study="interventions",
    probes=("collapse", "fourier"),
    figures=(figure_interventions,),
    predictions=(
        _generalise_prediction(
            "I1", "StableMax", "loss_fn", "softmax", DESIGN_I1,
            paper=("Prieto et al. Fig. 1/4: StableMax MLPs grok a+b mod 113 with no regularisation (100 % test "
                   "accuracy after ~1e4-8e4 epochs, lr 0.01); softmax without wd stays at chance (SCIENCE.md "
                   "§10). Against W3 (weight decay is needed).")),
        _generalise_prediction(
            "I2", "⊥AdamW", "orthograd", False, DESIGN_I2,
            paper=("Prieto et al. Fig. 6: ⊥AdamW (lr 0.01, beta2 0.99, no wd) generalises within 300 epochs "
                   "without an overfitting phase, where AdamW without wd does not (SCIENCE.md §10).")),
        Prediction(
            id="I3", family="interventions",
            statement=("Plain softmax runs without weight decay, trained with a float32 loss, fall into softmax "
                       "collapse and then stall."),
            design=DESIGN_I3,
            paper=("Prieto et al. Fig. 2: without wd the share of training examples whose float32 loss is exactly "
                   "zero rises to ~100 % and the test accuracy stops improving; float64 postpones it (SCIENCE.md "
                   "§10 P2)."),
            metrics_needed=("test_acc", "collapse_train_frac"), config_present=("loss_dtype", "weight_decay"),
            rule=(f"Free runs at alpha 1 without weight decay, plain softmax with a float32 loss, one task, model, lr "
                  f"and budget, >= {COLLAPSE_MIN_RUNS} runs. A run collapsed and then stalled when at some "
                  f"checkpoint in the first half of its logged steps more than {pct(COLLAPSED_SHARE)} of its training examples have a float32 loss of "
                  f"exactly 0 (the collapse probe), its final test accuracy is less than {pct(STALL_GAIN)} above the "
                  f"last logged one at or before the first such checkpoint, and it never reaches {pct(GROK_ACC)} (a run that "
                  f"collapses later cannot show a stall and is left out, counted in the notes). Exact "
                  f"binomial test (two-sided) of P = 0.5: supported if most runs collapse and stall (p < {pct(ALPHA)}), contradicted if most "
                  "do not; otherwise inconclusive."),
            test=_test_i3,
            calibration=Calibration(plant=_plant_i3, effect=(
                f"effect: each run collapses near step 1,000 and stalls at chance with probability "
                f"{COLLAPSE_RATE:g} (Prieto et al.: ~100 %), else it does not collapse and its test accuracy keeps "
                f"rising; null: probability 0.5; opposite: {1 - COLLAPSE_RATE:.1g}"))),
        Prediction(
            id="I4", family="interventions",
            statement=(f"Grokfast shortens t_grok by more than x{GROKFAST_SPEEDUP:g} against a baseline with the "
                       "same weight decay."),
            design=DESIGN_I4,
            paper=("Lee et al. (README, x*y mod 97 transformer): 95 % validation accuracy after 910 iterations with "
                   "Grokfast-EMA (alpha 0.98, lamb 2, wd 0.005) against 39,890 for the baseline (x43.8; x50.5 for "
                   "MA) — a baseline without weight decay (SCIENCE.md §11)."),
            metrics_needed=("train_acc", "test_acc"), config_present=("grokfast", "weight_decay"),
            rule=(f"Free runs at alpha 1 with weight decay > 0: the Grokfast runs of the most common filter setting "
                  f"against the plain runs of the same task, model, lr, wd and budget (>= {MIN_RUNS} each). A "
                  f"log-normal regression of t_grok (test accuracy >= {pct(GROK_ACC)}; {_TEST_NOTE}) on the arm; "
                  f"its coefficient is log10 of the t_grok ratio. Supported if the ratio is shown below "
                  f"1/{GROKFAST_SPEEDUP:g} (two-sided p < {pct(ALPHA)} against log10 1/{GROKFAST_SPEEDUP:g}), "
                  f"contradicted if shown above it (a speed-up under x{GROKFAST_SPEEDUP:g}, or a slow-down); "
                  f"otherwise inconclusive. When every run of one arm is censored (no ratio can be fitted) the "
                  f"same decision is made by a two-sided permutation log-rank test of the Grokfast times against "
                  f"the baseline's divided by {GROKFAST_SPEEDUP:g}. The test-loss peak, the collapsed share and the circuit measures are "
                  "reported in the notes, not decided."),
            test=_test_i4,
            calibration=Calibration(plant=_plant_i4, effect=(
                f"effect: t_grok x{PAPER_SPEEDUP:g} shorter (Lee et al.'s Grokfast-EMA), baseline t_grok at "
                f"{T_GROK_SHARE:g} x the budget with seed sd {T_GROK_SD:g} decades; null: x{GROKFAST_SPEEDUP:g} "
                f"shorter exactly; opposite: x{GROKFAST_SPEEDUP:g} longer"))),
    ),
))
