"""The interventions family (I1-I4): designs that keep intervention runs in their own arms, known answers on
planted and hand-built tables, and calibration at the shipped seeds of ``studies/interventions.toml``."""
import math

import numpy as np
import pytest

from grokking_theories.config import make_run_config
from grokking_theories.levels import COLLAPSED_SHARE, GENERALISED_GAIN, STALL_GAIN
from grokking_theories.stats import Design
from grokking_theories.studies import load_study
from grokking_theories.theories import interventions as I
from grokking_theories.theories import planted
from grokking_theories.theories import weight_decay as W
from grokking_theories.theories.calibration import calibrate

PRED = {p.id: p for p in I.INTERVENTIONS.predictions}
QUICK = load_study("interventions", "quick").configs
BASE = dict(op="add", p=31, train_frac=0.7, arch="mlp", width=128, lr=1e-2, max_steps=6000, stop_after_grok=200,
            log_points=60, log_every=50, checkpoints=64, weight_decay=0.0)
FALSE_BOUND = 0.08  # as tests/test_weight_decay.py: 100 draws keep a 5 % rule within it with probability ~0.94


def cfg(**overrides):
    return make_run_config({**BASE, **overrides})


def runs_table(rows):
    """Tidy table from rows of (config, {metric: values on the config's logged steps})."""
    return planted.table_of_runs([(c, {m: (planted.logged_steps(c), v) for m, v in metrics.items()})
                                  for c, metrics in rows])


def flat_acc(c, final):
    steps = planted.logged_steps(c)
    return {"train_acc": np.ones(len(steps)), "test_acc": np.linspace(1 / 31, final, len(steps))}


# ---------------------------------------------------------------------------- designs
def test_an_intervention_run_never_joins_another_explanations_arm():
    """⊥AdamW runs without decay generalise; pooled into W3's wd = 0 arm they would make it look as if plain runs
    did. W3's design admits only plain runs; I2's admits both arms, and I1's (about StableMax) neither ⊥ run."""
    rows = ([(cfg(seed=s), flat_acc(cfg(seed=s), 0.02)) for s in range(4)]
            + [(cfg(seed=s, orthograd=True), flat_acc(cfg(seed=s, orthograd=True), 0.7)) for s in range(4)]
            + [(cfg(seed=s, weight_decay=1.0), flat_acc(cfg(seed=s, weight_decay=1.0), 1.0)) for s in range(4)])
    table = runs_table(rows)
    w3, _ = W._W3_DESIGN.select(table)
    assert not w3["orthograd"].any() and w3["run_id"].nunique() == 8
    i2, problems = I.DESIGN_I2.select(table)
    assert not problems and set(i2["orthograd"]) == {True, False}
    i1, problems = I.DESIGN_I1.select(table)
    assert not i1["orthograd"].any() and problems  # no StableMax run: I1's design is absent, and says so
    assert "about orthograd" in I.DESIGN_I2.describe() and "about" not in W._W3_DESIGN.describe()


def test_every_design_holds_one_task():
    digits = dict(op="digits", p=10, train_frac=0.1113, arch="dense_mlp", width=16, lr=1e-3, max_steps=600)
    rows = [(cfg(seed=s), flat_acc(cfg(seed=s), 0.02)) for s in range(3)]
    rows += [(make_run_config({**digits, "seed": s}), flat_acc(make_run_config({**digits, "seed": s}), 0.9))
             for s in range(2)]
    sub, problems = Design(runs="weight_decay == 0").select(runs_table(rows))
    assert not problems and set(sub["op"]) == {"add"}  # the task with the most runs; never pooled
    with pytest.raises(ValueError, match="not interventions"):
        Design(about=("weight_decay",))


def test_a_plain_run_of_another_lr_never_stands_in_for_the_control():
    treated = [cfg(seed=s, lr=3e-3, orthograd=True) for s in range(6)]
    same_lr = [cfg(seed=s, lr=3e-3) for s in range(4)]
    other_lr = [cfg(seed=s) for s in range(8)]
    table = runs_table([(c, flat_acc(c, 0.5)) for c in treated + same_lr + other_lr])
    t, c, cell = I.matched_arms(table, "orthograd", False)
    assert len(t) == 6 and len(c) == 4 and set(c["lr"]) == {3e-3} and cell["lr"] == 3e-3


# ---------------------------------------------------------------------------- I1, I2: known answers
@pytest.mark.parametrize("pid, knob", [("I1", {"loss_fn": "stablemax"}), ("I2", {"orthograd": True})])
@pytest.mark.parametrize("final, verdict", [(0.97, "supported"), (0.30, "contradicted")])
def test_the_gain_decides_against_half_the_way_to_perfect(pid, knob, final, verdict):
    rng = np.random.default_rng(1)
    plain = [cfg(seed=s) for s in range(6)]
    treated = [cfg(seed=s, **knob) for s in range(6)]
    rows = [(c, flat_acc(c, 0.02 + rng.normal(0, 0.005))) for c in plain]
    rows += [(c, flat_acc(c, final + rng.normal(0, 0.02))) for c in treated]
    v = PRED[pid].evaluate(runs_table(rows))
    assert v.verdict == verdict, v.notes
    assert v.effect_size == pytest.approx(final - 0.02, abs=0.03)
    assert (v.ci_low > GENERALISED_GAIN) == (verdict == "supported")


# ---------------------------------------------------------------------------- I3: collapse, then the stall
def _collapse_run(c, share_peak, test_final):
    steps = planted.logged_steps(c)
    share = share_peak * planted.logistic_logtime(steps, 1000.0, 0.2)
    test = np.interp(steps, [0, 1000, steps[-1]], [1 / 31, 1 / 31, test_final])  # flat until the collapse
    return c, {"test_acc": test, "collapse_train_frac": share}


@pytest.mark.parametrize("peak, test_final, verdict", [
    (0.95, 0.04, "supported"),      # collapses, stays at chance: Prieto et al.'s picture
    (0.95, 0.90, "contradicted"),   # collapses, and goes on generalising (the float64 wd 0.03 pilots did)
    (0.10, 0.04, "contradicted"),   # stalls without collapsing: the stall is not the collapse's
])
def test_i3_needs_both_the_collapse_and_the_stall(peak, test_final, verdict):
    rows = [_collapse_run(cfg(seed=s, loss_dtype="float32"), peak, test_final) for s in range(8)]
    v = PRED["I3"].evaluate(runs_table(rows))
    assert v.verdict == verdict, v.notes
    assert v.effect_size == (1.0 if verdict == "supported" else 0.0)


def test_i3_stall_threshold_is_the_level_in_levels():
    c = cfg(loss_dtype="float32")
    for gain, stalled in ((STALL_GAIN * 0.8, True), (STALL_GAIN * 1.2, False)):
        _, metrics = _collapse_run(c, 0.9, 1 / 31 + gain)
        series = {c.run_id: {m: (planted.logged_steps(c), v) for m, v in metrics.items()}}
        ok, peak, t_c = I._collapse_and_stall(series, c.run_id)
        assert ok is stalled and peak > COLLAPSED_SHARE and 900 < t_c < 1300


# ---------------------------------------------------------------------------- I4: Grokfast against the same wd
@pytest.mark.parametrize("ratio, verdict", [(1 / 20, "supported"), (1.0, "contradicted")])
def test_i4_reads_the_t_grok_ratio_against_the_matched_baseline(ratio, verdict):
    rng = np.random.default_rng(3)
    rows = []
    for s in range(8):
        for gf in ("none", "ema"):
            c = cfg(seed=s, weight_decay=0.1, max_steps=12000, grokfast=gf)
            t_grok = 5000 * 10 ** rng.normal(0, 0.1) * (ratio if gf == "ema" else 1.0)
            steps = planted.logged_steps(c)
            rows.append((c, planted.accuracy_curves(steps, 60, max(t_grok, 150))))
    # a faster plain arm at another wd must not be the baseline
    rows += [(c, planted.accuracy_curves(planted.logged_steps(c), 60, 500))
             for c in (cfg(seed=s, weight_decay=1.0, max_steps=12000) for s in range(8))]
    v = PRED["I4"].evaluate(runs_table(rows))
    assert v.verdict == verdict, v.notes
    assert v.effect_size == pytest.approx(math.log10(ratio), abs=0.15)
    assert "weight_decay 0.1" in v.notes and "peak test loss" in v.notes


# ---------------------------------------------------------------------------- calibration at the shipped seeds
@pytest.mark.parametrize("pid", sorted(PRED))
def test_calibration_at_the_shipped_seeds(pid):
    r = calibrate(PRED[pid], QUICK, draws=100, seed=2026, scale="quick")
    assert r.false_supported <= FALSE_BOUND and r.false_contradicted <= FALSE_BOUND, r.counts
    assert r.power >= 0.8 and r.power_to_contradict >= 0.8, r.counts


# ---------------------------------------------------------------------------- the study
def test_the_study_shares_its_plain_runs_with_the_weight_decay_ablation():
    """The wd = 0 plain runs are W3's and the Grokfast baseline is the wd-0.1 level of W1's sweep: in ``study all``
    they are trained once, and I1-I4 compare with exactly the runs the weight-decay verdicts read."""
    wd = {c.run_id for c in load_study("weight_decay", "quick").configs}
    shared = [c for c in QUICK if c.run_id in wd]
    assert {(c.optim.weight_decay, c.budget.max_steps) for c in shared} == {(0.0, 6000), (0.1, 12000)}
    assert len(shared) == 16
    assert {c.task.op for c in QUICK} == {"add"}
    assert "interventions" in load_study("all", "quick").families


def test_the_digits_study_is_the_omnigrok_mnist_setting_in_miniature():
    digits = load_study("digits", "quick")
    assert {(c.task.op, c.model.arch, c.task.p) for c in digits.configs} == {("digits", "dense_mlp", 10)}
    assert {round(c.task.train_frac * 1797) for c in digits.configs} == {200}
    assert sorted({c.optim.fixed_norm for c in digits.configs if c.optim.fixed_norm}) == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert set(digits.families) == {"goldilocks", "weight_decay"}
    assert not {c.run_id for c in digits.configs} & {c.run_id for c in load_study("all", "quick").configs}


def test_the_comparison_declares_the_weight_decay_conflict_on_existing_predictions():
    from grokking_theories.theories.comparison import CONFLICTS

    claims = {cl.prediction: cl for c in CONFLICTS for cl in c.claims}
    assert claims["I1"].denied_by == "weight_decay" and claims["I2"].expected_by == "interventions"


def test_the_figure_draws_the_arms():
    ones = np.ones(len(planted.logged_steps(cfg())))
    rows = [(cfg(seed=s), {**flat_acc(cfg(seed=s), 0.02), "collapse_train_frac": ones}) for s in range(4)]
    rows += [(cfg(seed=s, loss_fn="stablemax"), flat_acc(cfg(seed=s, loss_fn="stablemax"), 0.3)) for s in range(4)]
    table = runs_table(rows)
    assert sorted(I.arm_labels(table).unique()) == ["StableMax wd=0", "softmax wd=0"]
    fig = I.figure_interventions(table)
    assert fig is not None
    labels = {t.get_text() for ax in fig.axes for t in (ax.get_legend().get_texts() if ax.get_legend() else [])}
    assert {"StableMax wd=0", "softmax wd=0"} <= labels



def test_i3_leaves_out_a_run_that_collapses_too_late_to_show_a_stall():
    late = cfg(seed=99, loss_dtype="float32")
    steps = planted.logged_steps(late)
    rows = [_collapse_run(cfg(seed=s, loss_dtype="float32"), 0.95, 0.04) for s in range(8)]
    rows.append((late, {"test_acc": np.full(len(steps), 1 / 31),
                        "collapse_train_frac": (steps >= 0.9 * steps[-1]).astype(float)}))
    v = PRED["I3"].evaluate(runs_table(rows))
    assert v.verdict == "supported" and v.n_runs == 8, v.notes
    assert "1 collapsed in the second half" in v.notes


@pytest.mark.parametrize("slow_arm, verdict", [("ema", "contradicted"), ("none", "supported")])
def test_i4_decides_when_one_arm_never_groks(slow_arm, verdict):
    """A fully censored arm leaves no ratio to fit; the margin-shifted log-rank test still orders the arms."""
    rows = []
    for s in range(8):
        for gf in ("none", "ema"):
            c = cfg(seed=s, weight_decay=0.1, max_steps=12000, grokfast=gf)
            t_grok = np.inf if gf == slow_arm else 3000 + 100 * s
            rows.append((c, planted.accuracy_curves(planted.logged_steps(c), 60, t_grok)))
    v = PRED["I4"].evaluate(runs_table(rows))
    assert v.verdict == verdict, v.notes
    assert "log-rank" in v.test and "censored at its budget" in v.notes


def test_i4_notes_survive_a_run_without_a_finite_test_loss():
    rng = np.random.default_rng(5)
    rows = []
    for s in range(6):
        for gf in ("none", "ema"):
            c = cfg(seed=s, weight_decay=0.1, max_steps=12000, grokfast=gf)
            steps = planted.logged_steps(c)
            metrics = planted.accuracy_curves(steps, 60, 4000 * 10 ** rng.normal(0, 0.1))
            metrics["test_loss"] = np.full(len(steps), np.nan if (s, gf) == (0, "ema") else 3.0)
            rows.append((c, metrics))
    v = PRED["I4"].evaluate(runs_table(rows))
    assert v.verdict in ("supported", "contradicted", "inconclusive") and "peak test loss" in v.notes


def test_a_row_without_an_intervention_value_counts_as_plain():
    rows = [(cfg(seed=s), flat_acc(cfg(seed=s), 0.02)) for s in range(3)]
    table = runs_table(rows)
    table["orthograd"] = table["orthograd"].astype(object)
    table.loc[table["run_id"] == table["run_id"].iloc[0], "orthograd"] = None  # an older table's row
    sub, problems = W._W3_DESIGN.select(table)
    assert sub["run_id"].nunique() == 3


def test_the_interventions_stay_on_the_pair_task_whatever_the_run_counts():
    digits = dict(op="digits", p=10, train_frac=0.1113, arch="dense_mlp", width=16, lr=1e-3, max_steps=600,
                  weight_decay=0.0)
    rows = [(cfg(seed=s, **knob), flat_acc(cfg(seed=s, **knob), 0.5)) for s in range(4)
            for knob in ({}, {"orthograd": True})]
    rows += [(c, flat_acc(c, 0.9)) for c in (make_run_config({**digits, "seed": s, "orthograd": o})
                                             for s in range(6) for o in (False, True))]
    sub, problems = I.DESIGN_I2.select(runs_table(rows))
    assert not problems and set(sub["op"]) == {"add"}
