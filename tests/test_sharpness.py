"""The `sharpness` family: S1 (accuracy vs Brier width), M2 (per-example flip times), M3 (does mu jump?).

Calibration checks run each shipped rule on planted tables of the shipped quick study (8 seeds) with
fixed seeds; known-answer tests pin the Brier score and the flip-time probe.
"""
import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import grokking_theories.theories.sharpness as sharp
from grokking_theories.config import make_run_config
from grokking_theories.levels import ALPHA
from grokking_theories.probes import classification_metrics
from grokking_theories.probes.flips import (DELTA_FRAC, OFFLINE_METRICS, checkpoint_margins, example_flips,
                                            flip_rows, flip_times, summarise_flips)
from grokking_theories.studies import load_study
from grokking_theories.tasks import make_task
from grokking_theories.theories.calibration import calibrate

PRED = {p.id: p for p in sharp.SHARPNESS.predictions}
CONFIGS = load_study("sharpness").configs  # the shipped quick study: 8 seeds of one configuration
DRAWS = 60
# At the boundary null a directional rule says 'supported' (or, at the effect, 'contradicted') with
# probability alpha / 2 = 2.5 %. The bounds below hold that rate to <= 3/60 = 5 %: a rule twice as
# liberal as the level it claims (10 %) stays within them with probability 0.12 only.
MAX_FALSE = 3
MIN_POWER = 0.8


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def test_family_has_s1_m2_m3_and_no_s2():
    """S2 (accuracy from a normal fitted to the margin quartiles) was a tautology and is gone."""
    assert list(PRED) == ["S1", "M2", "M3"]
    for pred in PRED.values():
        assert pred.calibration is not None and pred.paper and pred.design.runs
        assert "stop_after_grok.isna()" in pred.design.runs
    assert set(PRED["M2"].metrics_needed) - {"test_acc"} <= set(OFFLINE_METRICS)
    # M2's metrics come from the stored probe `flips`, which the family declares
    from grokking_theories.probes.stage import get_probe
    assert sharp.SHARPNESS.probes == ("flips",)
    flips = get_probe("flips")
    assert flips.metrics == OFFLINE_METRICS and flips.version >= 1 and flips.plant is not None
    assert all(flips.produces(m) for m in set(PRED["M2"].metrics_needed) - {"test_acc"})
    assert sharp.S1_COMPARATOR in PRED["S1"].metrics_needed and "test_loss" not in PRED["S1"].metrics_needed


def test_rule_texts_quote_the_constants():
    assert f"{sharp.M3_MARGIN}" in PRED["M3"].rule and f"{DELTA_FRAC}" in PRED["M2"].rule
    for pid in ("S1", "M3"):
        rule = PRED[pid].rule
        assert f"{sharp.PLATEAU_TAIL:.0%}" in rule and f"{sharp.MAX_EXCLUDED_FRAC:.0%}" in rule
        assert f"{sharp.MIN_TAIL_DECADES}" in rule and f"alpha = {ALPHA:g}" in rule


# ----------------------------------------------------------------------------
# calibration at the shipped seed count
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("pid", ["S1", "M2", "M3"])
def test_calibration_on_planted_tables_of_the_shipped_study(pid):
    res = calibrate(PRED[pid], CONFIGS, draws=DRAWS, seed=11, scale="quick")
    counts = res.counts
    assert res.seeds == 8 and res.runs == 8
    null, effect, opposite = (counts[s] for s in ("null", "effect", "opposite"))
    # planted null (at the decision line): 'supported' is false, and so is 'contradicted'
    assert null.get("supported", 0) <= MAX_FALSE, counts
    assert null.get("contradicted", 0) <= MAX_FALSE, counts
    # planted effect: power, and never the wrong way
    assert effect.get("supported", 0) >= MIN_POWER * DRAWS, counts
    assert effect.get("contradicted", 0) <= MAX_FALSE, counts
    # planted opposite: the rule can come out the other way
    assert opposite.get("supported", 0) <= MAX_FALSE, counts
    assert opposite.get("contradicted", 0) >= MIN_POWER * DRAWS, counts


def test_s1_recovers_the_planted_width_ratio():
    rng = np.random.default_rng(5)
    v = PRED["S1"].evaluate(sharp.plant_s1(CONFIGS, "effect", rng))
    assert v.verdict == "supported", v.summary()
    assert v.ci_low < -np.log10(3) < v.ci_high, v.summary()  # the planted mean log ratio -0.48
    assert v.n_runs == 8 and "0 did not" in v.notes and "excluded before the test: 0 run(s)" in v.notes


# ----------------------------------------------------------------------------
# S1 / M3 exclusions: the late plateau and the cap
# ----------------------------------------------------------------------------


def _still_falling(table, run_ids, metric="test_brier"):
    """Make ``metric`` of the given runs keep falling through the end of the run (no late plateau)."""
    table = table.copy()
    rows = table["run_id"].isin(run_ids) & (table["metric"] == metric)
    steps = table.loc[rows, "step"].to_numpy(float)
    table.loc[rows, "value"] = 1.0 - 0.9 * np.log10(np.maximum(steps, 1)) / np.log10(steps.max())
    return table


def test_s1_excludes_a_run_without_a_late_plateau_and_counts_it():
    table = sharp.plant_s1(CONFIGS, "effect", np.random.default_rng(3))
    ids = sorted(table["run_id"].unique())
    v = PRED["S1"].evaluate(_still_falling(table, ids[:1]))
    assert v.n_runs == 7, v.notes
    assert "excluded before the test: 1 run(s) (no observed late plateau of test_brier: 1)" in v.notes, v.notes
    assert v.verdict == "supported"  # 1 of 8 excluded is within the cap


def test_more_exclusions_than_the_cap_make_the_verdict_inconclusive():
    table = sharp.plant_s1(CONFIGS, "effect", np.random.default_rng(3))
    ids = sorted(table["run_id"].unique())
    v = PRED["S1"].evaluate(_still_falling(table, ids[:3]))  # 3 of 8 > 25 %
    assert v.verdict == "inconclusive" and "exclusion cap" in v.notes and "would say 'supported'" in v.notes
    assert v.p_value is not None  # the test is still reported


def test_a_run_stopped_soon_after_grokking_has_no_observable_plateau():
    """The old S1 input (stop 200 steps after t_grok) cannot show a plateau: the rule says so."""
    table = sharp.plant_s1(CONFIGS, "effect", np.random.default_rng(4))
    grok = table[(table.metric == "test_acc") & (table.value >= 0.99)].groupby("run_id")["step"].min()
    cut = table["step"] <= table["run_id"].map(grok) + 200
    v = PRED["S1"].evaluate(table[cut])
    assert v.verdict == "inconclusive" and "no observed late plateau" in v.notes, v.notes


def test_runs_with_an_early_stop_rule_are_outside_the_design():
    configs = [dataclasses.replace(c, budget=dataclasses.replace(c.budget, stop_after_grok=200)) for c in CONFIGS]
    v = PRED["S1"].evaluate(sharp.plant_s1(configs, "effect", np.random.default_rng(0)))
    assert v.verdict == "inconclusive" and "primary design absent" in v.notes


def test_m3_contradicted_when_the_mean_margin_jumps_with_accuracy():
    v = PRED["M3"].evaluate(sharp.plant_m3(CONFIGS, "opposite", np.random.default_rng(8)))
    assert v.verdict == "contradicted" and v.p_supports == "contradicted", v.summary()
    assert v.effect_size < sharp.M3_MARGIN


def test_failed_fits_are_counted_not_dropped():
    table = sharp.plant_m3(CONFIGS, "effect", np.random.default_rng(2))
    ids = sorted(table["run_id"].unique())
    # a mean margin that steps once, between two logged steps, at the end of the run: no transition inside
    rows = table["run_id"].isin(ids[:1]) & (table["metric"] == "test_margin_mean")
    table.loc[rows, "value"] = np.where(table.loc[rows, "step"] >= table.loc[rows, "step"].max(), 5.0, -4.0)
    v = PRED["M3"].evaluate(table)
    assert "excluded before the test: 1 run(s)" in v.notes and v.n_runs == 7, v.notes


# ----------------------------------------------------------------------------
# the Brier score
# ----------------------------------------------------------------------------


def test_brier_score_against_a_hand_computation():
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([0, 2, 1])
    m = classification_metrics(logits, labels, "test")
    expected = []
    for row, y in zip(logits[0].tolist(), labels.tolist()):
        e = np.exp(np.array(row, dtype=np.float64))
        p = e / e.sum()
        onehot = np.eye(3)[y]
        expected.append(np.sum((p - onehot) ** 2))
    assert m["test_brier"].dtype == torch.float64
    np.testing.assert_allclose(m["test_brier"].item(), np.mean(expected), rtol=1e-12)
    # uniform prediction over C classes: 1 - 1/C; a confident right answer: ~0; a confident wrong one: ~2
    assert np.isclose(expected[2], 1 - 1 / 3)
    sure = classification_metrics(torch.tensor([[[50.0, 0.0, 0.0], [0.0, 50.0, 0.0]]]), torch.tensor([0, 2]), "t")
    np.testing.assert_allclose(sure["t_brier"].item(), (0.0 + 2.0) / 2, atol=1e-12)


def test_trainer_logs_the_brier_score(tiny_cfg):
    from grokking_theories.training import train_run

    r = train_run(tiny_cfg(max_steps=20))
    names = {m for _, m, _ in r.metrics}
    assert {"train_brier", "test_brier"} <= names
    values = np.array([v for _, m, v in r.metrics if m == "test_brier"])
    assert np.all((values >= 0) & (values <= 2))


# ----------------------------------------------------------------------------
# flip times: known answers
# ----------------------------------------------------------------------------


def test_flip_times_on_a_hand_built_margin_sequence():
    steps = [0, 10, 20, 30, 40]
    margins = np.array([  # rows: checkpoints; columns: examples
        # ex0: for good from 20   ex1: right at 10-20, wrong at 30, right from 40   ex2: never   ex3: always
        [-2.0, -2.0, -1.0, 5.0],
        [-1.0, 1.0, -1.0, 5.0],
        [1.0, 2.0, -1.0, 5.0],
        [2.0, -1.0, -1.0, 5.0],
        [3.0, 2.0, -0.5, 5.0],
    ])
    f = flip_times(steps, margins, delta=1.0)
    np.testing.assert_array_equal(f.flip_step[:2], [20.0, 40.0])
    assert np.isnan(f.flip_step[2]) and f.censored.tolist() == [False, False, True, False]
    assert f.flip_step[3] == 0.0 and f.never_negative.tolist() == [False, False, False, True]
    # last zero crossings: ex0 between 10 (-1) and 20 (+1) -> 15; ex1 between 30 (-1) and 40 (+2) -> 30 + 10/3
    np.testing.assert_allclose(f.flip_time[:2], [15.0, 30 + 10 / 3])
    # ex0: last margin <= -1 before the flip is step 10 (exactly -1); first >= +1 from the flip on is step 20
    np.testing.assert_allclose([f.cross_lo[0], f.cross_hi[0], f.cross_width[0]], [10.0, 20.0, 10.0])
    # ex1: last <= -1 before its flip is step 30; +1 is reached between 30 (-1) and 40 (+2) at 30 + 20/3
    np.testing.assert_allclose([f.cross_lo[1], f.cross_hi[1]], [30.0, 30 + 20 / 3])
    assert np.isnan(f.cross_width[2]) and np.isnan(f.cross_width[3]) and np.isnan(f.flip_time[3])
    np.testing.assert_allclose(f.accuracy, [0.25, 0.5, 0.75, 0.5, 0.75])
    assert f.t_half == 10.0
    # the default delta: DELTA_FRAC x the IQR of the margins at t_half (checkpoint 1: sorted -1, -1, 1, 5;
    # linear-interpolation quartiles -1 and 2 -> IQR 3)
    assert flip_times(steps, margins).delta == pytest.approx(DELTA_FRAC * 3.0)
    s = summarise_flips(f, t_grok=40.0)
    assert s["flip_censored_frac"] == 0.25 and s["flip_width_frac"] == 1.0
    iqr = np.subtract(*np.percentile([15.0, 30 + 10 / 3], [75, 25]))
    assert s["flip_iqr_rel"] == pytest.approx(iqr / 40) and s["flip_cross_width_rel"] == pytest.approx(
        np.median([10.0, 20 / 3]) / iqr)


def test_flip_summary_of_a_common_drift_and_of_abrupt_individual_flips():
    """The reference value: a common smooth drift gives crossing width / IQR = 2 * DELTA_FRAC, whatever its speed."""
    rng = np.random.default_rng(0)
    steps = np.linspace(0, 6000, 129)
    lt = np.log10(np.maximum(steps, 1))
    for width in (0.1, 0.5):
        mu = -4 + 8 / (1 + np.exp(-(lt - np.log10(2000)) * 2 * np.log(9) / width))
        drift = summarise_flips(flip_times(steps, mu[:, None] + rng.normal(0, 1, 1500)[None, :]), t_grok=2000)
        assert drift["flip_cross_width_rel"] == pytest.approx(2 * DELTA_FRAC, rel=0.1), drift
        assert drift["flip_censored_frac"] == 0.0
    flip_at = rng.lognormal(np.log(2000), 0.15, 1500)
    abrupt = np.where(steps[:, None] >= flip_at[None, :], 3.0, -3.0)
    s = summarise_flips(flip_times(steps, abrupt), t_grok=2000)
    assert s["flip_cross_width_rel"] < 0.1 < s["flip_iqr_rel"]  # spread out, each one abrupt


def _pair_lookup_model(p, margins_per_ckpt):
    """An MLP (width p*p) whose hidden unit (i, j) fires only on the pair (a, b) = (i, j): W_out sets every logit.

    ``margins_per_ckpt[k][(a, b)]`` is that pair's correct-class logit at checkpoint k (others 0), i.e. its margin.
    """
    w = p * p
    cfg = make_run_config(dict(op="add", p=p, train_frac=0.6, arch="mlp", width=w, max_steps=100))
    n = len(margins_per_ckpt)
    ea, eb = torch.zeros(n, p, w), torch.zeros(n, p, w)
    for i in range(p):
        for j in range(p):
            ea[:, i, i * p + j] = 1.0
            eb[:, j, i * p + j] = 1.0
    W = torch.zeros(n, w, p)
    for k, table in enumerate(margins_per_ckpt):
        for (a, b), m in table.items():
            W[k, a * p + b, (a + b) % p] = m
    params = {"embed_a": ea, "embed_b": eb, "b_in": -torch.ones(n, w), "W_out": W, "b_out": torch.zeros(n, p)}
    return cfg, params


def test_flip_steps_through_the_model_on_a_planted_checkpoint_sequence():
    p = 5
    steps = [0, 100, 200, 300, 400, 500]
    task = make_task(make_run_config(dict(op="add", p=p, train_frac=0.6)).task)
    pairs = [tuple(map(int, x)) for x in task.test_x.tolist()]
    # example e flips for good at checkpoint 1 + (e % 4); every fourth example flips back and never recovers
    want = {}
    tables = []
    for k in range(len(steps)):
        table = {}
        for e, pair in enumerate(pairs):
            at = 1 + e % 4
            back = e % 4 == 3 and k == len(steps) - 1
            table[pair] = (1.0 + k if k >= at else -2.0) if not back else -1.0
            want[e] = np.nan if e % 4 == 3 else steps[at]
        tables.append(table)
    cfg, params = _pair_lookup_model(p, tables)
    checkpoint = {"steps": torch.tensor(steps), "params": params}
    s, margins = checkpoint_margins(cfg, checkpoint)
    np.testing.assert_array_equal(s, steps)
    np.testing.assert_allclose(margins[2], [tables[2][pair] for pair in pairs])
    f = example_flips(cfg, checkpoint)
    np.testing.assert_array_equal(f.flip_step, [want[e] for e in range(len(pairs))])
    assert f.censored.sum() == sum(1 for e in range(len(pairs)) if e % 4 == 3)


def test_flip_rows_from_a_store_concatenate_with_the_metrics_table(tiny_cfg, tmp_path):
    from grokking_theories.probes.stage import run_probes
    from grokking_theories.store import RunStore
    from grokking_theories.training import train_run

    cfg = tiny_cfg(max_steps=60, checkpoints=12)
    r = train_run(cfg)
    with RunStore(tmp_path / "store") as store:
        store.write_result(cfg, r.metrics, checkpoint=r.checkpoint, summary=r.summary)
        rows = flip_rows(store, [cfg.run_id])
        metrics = store.metrics_table([cfg.run_id])
        # the stored probe gives the same rows: run once, then read back with the logged ones
        counts = run_probes(store, [cfg.run_id], ["flips"], progress=False)
        assert (counts.computed, counts.reused) == (1, 0)
        assert run_probes(store, [cfg.run_id], ["flips"], progress=False).reused == 1
        stored = store.metrics_table([cfg.run_id])
        assert len(stored) == len(metrics) + len(OFFLINE_METRICS)
        probe_rows = stored[stored["metric"].isin(OFFLINE_METRICS)].reset_index(drop=True)
        pd.testing.assert_frame_equal(probe_rows, rows.sort_values(["metric"]).reset_index(drop=True))
    assert list(rows.columns) == list(metrics.columns)
    assert sorted(rows["metric"]) == sorted(OFFLINE_METRICS)
    assert (rows["step"] == int(r.checkpoint["steps"][-1])).all() and (rows["run_id"] == cfg.run_id).all()
    for col in metrics.columns:
        assert rows[col].dtype == metrics[col].dtype, col
    both = pd.concat([metrics, rows], ignore_index=True)
    verdict = PRED["M2"].evaluate(both)  # one tiny run: a legal (inconclusive) verdict, not an exception
    assert verdict.verdict == "inconclusive"


def test_the_fit_window_starts_where_a_metric_that_rises_after_t_fit_turns():
    """A Brier score that keeps rising after t_fit is fitted from near its peak, not forced into one logistic."""
    from grokking_theories.theories.planted import logistic_logtime
    from grokking_theories.training.schedule import log_linear_steps

    steps = log_linear_steps(6000, 60, 50).astype(float)
    progress = logistic_logtime(steps, 1800.0, 0.3)
    plain = 0.02 + 0.96 * (1 - progress)
    rising = 0.02 + (0.96 + sharp._memorisation_drift(steps, 100.0, 0.5)) * (1 - progress)
    status, width, _ = sharp._transition((steps, rising), -1, 100.0, 2000.0)
    assert status == "ok" and width == pytest.approx(0.3, rel=0.02)
    assert sharp._transition((steps, plain), -1, 100.0, 2000.0)[1] == pytest.approx(0.3, rel=0.01)
    naive = sharp._fit_logistic(steps[steps >= 100], rising[steps >= 100])  # from t_fit, the old way
    assert abs(naive.width - 0.3) > 3 * abs(width - 0.3)
