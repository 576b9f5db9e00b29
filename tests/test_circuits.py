"""The circuits family: phase rule, per-run statistics (known answers on planted runs), C6, calibration."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import grokking_theories.theories.circuits as C
from grokking_theories.config import make_run_config
from grokking_theories.levels import ALPHA, KEY_POWER
from grokking_theories.studies import load_study
from grokking_theories.theories._series import series_by_run
from grokking_theories.theories.calibration import calibrate
from grokking_theories.theories.planted import logistic_logtime, table_of_runs

PRED = {p.id: p for p in C.CIRCUITS.predictions}
CONFIGS = load_study("circuits").configs
DRAWS = 100
# A directional rule at the decision line decides either way with probability alpha / 2 = 2.5 % each. The
# bound of 7 of 100 is passed by such a rule with probability 0.996 per check (the 16 checks at the null
# fail by chance together with probability ~6 %; the others sit far from any line), and failed with
# probability 0.79 by a rule at twice the 5 % target (10 %). Power >= 80 %: C2, the least powered rule, has 87 % at 500 draws (P(< 80 of 100) ~ 0.01).
MAX_FALSE = 7
MIN_POWER = 0.8


def _cfg(**kw):
    base = dict(op="add", p=43, train_frac=0.5, arch="transformer", d_model=16, d_mlp=32, n_heads=2,
                lr=3e-3, weight_decay=1.0, max_steps=5000)
    return make_run_config({**base, **kw})


# ----------------------------------------------------------------------------
# the phase rule and the crossing helpers
# ----------------------------------------------------------------------------


def test_crossing_interpolates_in_log_step():
    steps = np.array([10.0, 100.0, 1000.0])
    values = np.array([1.0, 0.5, 0.0])
    # 0.25 lies halfway (in value) between steps 100 and 1000: halfway in log10(step) is 10**2.5
    assert C.crossing((steps, values), 0.25, start=0) == pytest.approx(10 ** 2.5)
    assert C.crossing((steps, values), 0.75, start=200) == 1000.0  # from 'start' on, the first point is below
    assert math.isnan(C.crossing((steps, values), -1.0, start=0))
    assert C.crossing((steps, values[::-1]), 0.75, start=0, falling=False) == pytest.approx(10 ** 2.5)


def test_phases_of_a_logistic_test_loss_are_its_10_and_90_percent_points():
    steps = np.unique(np.round(np.geomspace(1, 1e5, 2000)))
    mid, width = 3000.0, 0.6
    log_loss = math.log10(5.0) - 3.0 * logistic_logtime(steps, mid, width)
    series = {"train_acc": (steps, (steps >= 80).astype(float)),
              "test_acc": (steps, (steps >= 5000).astype(float)),
              "test_loss": (steps, 10 ** log_loss)}
    ph = C.run_phases(series)
    assert ph.t_fit == steps[steps >= 80][0] and ph.t_grok == steps[steps >= 5000][0] and ph.t_last == steps[-1]
    assert math.log10(ph.t_cleanup) == pytest.approx(math.log10(mid) - width / 2, abs=0.01)
    assert math.log10(ph.t_end) == pytest.approx(math.log10(mid) + width / 2, abs=0.01)


def test_no_cleanup_when_the_test_loss_barely_falls():
    steps = np.geomspace(1, 1e4, 200)
    series = {"train_acc": (steps, np.ones_like(steps)), "test_acc": (steps, np.zeros_like(steps)),
              "test_loss": (steps, 4.0 - 0.1 * logistic_logtime(steps, 1000, 0.5))}
    ph = C.run_phases(series)
    assert math.isnan(ph.t_cleanup) and math.isnan(ph.t_end) and math.isnan(ph.t_grok)


# ----------------------------------------------------------------------------
# per-run statistics recover what was planted (known answers)
# ----------------------------------------------------------------------------

PLANTED = {"C1": 0.3, "C2": 1.7, "C3": 0.25, "C3b": 2.0, "C4": 0.6, "C5": 0.8, "C6": 0.3, "C7": 1.0}
STATISTIC = {"C1": C.c1_lead, "C2": C.c2_rise, "C3": C.c3_excess_share, "C3b": C.c3b_key_power,
             "C4": C.c4_log_width_ratio, "C5": C.c5_steepening, "C7": C.c7_single_frequency}
TOLERANCE = {"C1": 0.03, "C2": 0.05, "C3": 0.03, "C3b": 0.05, "C4": 0.06, "C5": 0.08, "C7": 0.05}


@pytest.mark.parametrize("pid", sorted(STATISTIC))
def test_each_statistic_recovers_its_planted_value(pid):
    cfg = _cfg(max_steps=20000)
    table = table_of_runs([C._planted_run(cfg, np.random.default_rng(3), PLANTED)])
    series = series_by_run(table, set(table["metric"]))[cfg.run_id]
    value = STATISTIC[pid](series, C.run_phases(series))
    assert value == pytest.approx(PLANTED[pid], abs=TOLERANCE[pid])


def test_c6_compares_final_gini_of_decaying_and_wd0_runs():
    rng = np.random.default_rng(0)
    shifts = 0.3 + 0.02 * rng.normal(size=4)  # the wd = 0 runs' final Gini lies this much lower
    runs = [C._planted_run(_cfg(seed=s, weight_decay=wd), rng, {**PLANTED, "C6": shifts[s]})
            for s in range(4) for wd in (0.0, 1.0)]
    out = C._test_c6(table_of_runs(runs))
    assert out.effect_size == pytest.approx(shifts.mean(), abs=1e-3)  # read off the checkpoint grid
    runs = [C._planted_run(_cfg(seed=s, weight_decay=wd), rng, {**PLANTED, "C6": 0.3 + 0.02 * rng.normal()})
            for s in range(4) for wd in (0.0, 1.0)]
    verdict = PRED["C6"].evaluate(table_of_runs(runs))
    assert verdict.verdict == "supported" and verdict.n_runs == 8


def test_the_transformer_is_the_primary_design_whatever_the_run_counts():
    rng = np.random.default_rng(1)
    mlp = [make_run_config(dict(op="add", p=23, arch="mlp", width=16, seed=s, max_steps=5000)) for s in range(8)]
    tf = [_cfg(seed=s) for s in range(4)]
    table = table_of_runs([C._planted_run(c, rng, PLANTED) for c in mlp + tf])
    sub, problems = C.DESIGN.select(table)  # twice as many MLP runs: the transformer still decides
    assert not problems and set(sub["arch"]) == {"transformer"} and sub["run_id"].nunique() == 4
    only_mlp = table[table["arch"] == "mlp"]  # a study of MLPs only is read on its MLPs
    assert PRED["C1"].evaluate(only_mlp).n_runs == 8
    assert "transformer where present" in C.DESIGN.describe()


def test_rule_texts_quote_the_constants():
    assert f"{C.C1_FRACTION}" in PRED["C1"].rule
    assert f"{C.PHASE_LO:.0%}" in PRED["C3"].rule and f"{C.PHASE_HI:.0%}" in PRED["C5"].rule
    assert f"logit({KEY_POWER:g})" in PRED["C3b"].rule and f"{C.C6_MARGIN}" in PRED["C6"].rule
    assert f"{C.C2_MIN_DECADES:g} decade" in PRED["C2"].rule and f"logit({C.C7_LINE:g})" in PRED["C7"].rule
    for pred in PRED.values():
        assert f"alpha = {ALPHA:g}" in pred.rule and pred.calibration is not None and pred.paper


# ----------------------------------------------------------------------------
# calibration at the shipped quick design
# ----------------------------------------------------------------------------


def test_shipped_quick_design_has_the_seeds_the_rules_need():
    table = pd.DataFrame([{"run_id": c.run_id, **c.flat()} for c in CONFIGS])
    primary, problems = C.DESIGN.select(table)
    assert not problems and primary["run_id"].nunique() == 10 and set(primary["arch"]) == {"transformer"}
    both, problems = C.DESIGN_C6.select(table)
    assert not problems and both.groupby("weight_decay")["run_id"].nunique().to_dict() == {0.0: 4, 1.0: 10}


@pytest.mark.parametrize("pid", sorted(PRED))
def test_calibration_on_planted_tables_of_the_shipped_study(pid):
    res = calibrate(PRED[pid], CONFIGS, draws=DRAWS, seed=11 + sorted(PRED).index(pid), scale="quick")
    null, effect, opposite = (res.counts[s] for s in ("null", "effect", "opposite"))
    assert null.get("supported", 0) <= MAX_FALSE and null.get("contradicted", 0) <= MAX_FALSE, res.counts
    assert effect.get("supported", 0) >= MIN_POWER * DRAWS and effect.get("contradicted", 0) <= MAX_FALSE, res.counts
    assert opposite.get("supported", 0) <= MAX_FALSE, res.counts
    assert opposite.get("contradicted", 0) >= MIN_POWER * DRAWS, res.counts
