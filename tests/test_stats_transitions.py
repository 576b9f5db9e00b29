"""Known-answer tests of grokking_theories.stats.transitions."""
import warnings

import numpy as np
import pandas as pd
import pytest

from grokking_theories.stats import (
    Crossing,
    first_crossing,
    fit_sigmoid_logtime,
    grokking_times,
    run_configs,
    transition_times,
)


def tidy(runs):
    """Tidy long table from [{'run_id':..., <config>..., 'curves': {metric: (steps, values)}}]."""
    rows = []
    for run in runs:
        config = {k: v for k, v in run.items() if k != "curves"}
        for metric, (steps, values) in run["curves"].items():
            for s, v in zip(steps, values):
                rows.append({**config, "step": int(s), "metric": metric, "value": float(v)})
    return pd.DataFrame(rows)


def step_curve(steps, at, low=0.0, high=1.0):
    """A metric that jumps from low to high exactly at step ``at``."""
    steps = np.asarray(steps)
    return np.where(steps >= at, high, low)


STEPS = np.arange(0, 1001, 10)


# ---------------------------------------------------------------- first_crossing


def test_first_crossing_finds_planted_step():
    c = first_crossing(STEPS, step_curve(STEPS, 370), 0.99)
    assert c == Crossing(370.0, False)
    assert c.event


def test_first_crossing_order_independent_and_threshold_inclusive():
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(STEPS))
    values = np.linspace(0, 1, len(STEPS))  # value at step 990 is exactly 0.99
    assert first_crossing(STEPS[perm], values[perm], 0.99).time == 990.0


def test_first_crossing_never_is_censored_at_last_step():
    c = first_crossing(STEPS, np.full(len(STEPS), 0.5), 0.99)
    assert c.censored and c.time == 1000.0 and not c.event


def test_first_crossing_below_for_losses():
    loss = np.where(STEPS >= 420, 0.001, 2.0)
    assert first_crossing(STEPS, loss, 0.01, direction="below") == Crossing(420.0, False)


def test_first_crossing_ignores_nan_and_censors_at_last_finite():
    values = step_curve(STEPS, 500)
    values[STEPS >= 300] = np.nan  # diverged at step 300
    c = first_crossing(STEPS, values, 0.99)
    assert c.censored and c.time == 290.0


def test_first_crossing_bad_input():
    with pytest.raises(ValueError, match="direction"):
        first_crossing(STEPS, STEPS, 1, direction="up")
    with pytest.raises(ValueError, match="same length"):
        first_crossing(STEPS, STEPS[:-1], 1)
    with pytest.raises(ValueError, match="no finite"):
        first_crossing([1, 2], [np.nan, np.nan], 1)


# ---------------------------------------------------------------- tables


def three_runs():
    early_stop = STEPS[STEPS <= 600]
    return [
        {"run_id": "a", "status": "done", "weight_decay": 1.0, "max_steps": 1000, "seed": 0,
         "curves": {"train_acc": (STEPS, step_curve(STEPS, 50)), "test_acc": (STEPS, step_curve(STEPS, 370))}},
        {"run_id": "b", "status": "done", "weight_decay": 0.0, "max_steps": 1000, "seed": 1,
         "curves": {"train_acc": (STEPS, step_curve(STEPS, 80)), "test_acc": (STEPS, np.full(len(STEPS), 0.3))}},
        {"run_id": "c", "status": "done", "weight_decay": 3.0, "max_steps": 1000, "seed": 2,
         "curves": {"train_acc": (early_stop, step_curve(early_stop, 30)),
                    "test_acc": (early_stop, np.where(early_stop >= 400, 1.0, 0.6))}},
    ]


def test_transition_times_planted_and_censored_at_budget():
    tt = transition_times(tidy(three_runs()), "test_acc", 0.99).set_index("run_id")
    assert tt.loc["a", "time"] == 370 and not tt.loc["a", "censored"] and tt.loc["a", "event"]
    # never crosses: censored at its budget (last logged step == max_steps)
    assert tt.loc["b", "time"] == 1000 == tt.loc["b", "max_steps"] and tt.loc["b", "censored"]
    assert not tt.loc["b", "event"]
    assert tt.loc["c", "time"] == 400 and tt.loc["c", "event"]
    # config columns are carried, measurement columns are not
    assert {"status", "weight_decay", "max_steps", "seed"} <= set(tt.columns)
    assert not {"step", "metric", "value"} & set(tt.columns)
    assert tt.loc["c", "weight_decay"] == 3.0


def test_transition_times_50pct_threshold():
    tt = transition_times(tidy(three_runs()), "test_acc", 0.5).set_index("run_id")
    assert tt.loc["c", "time"] == 0  # test_acc starts at 0.6
    assert tt.loc["b", "censored"]


def test_transition_times_warns_and_drops_run_without_metric():
    runs = three_runs()
    runs.append({"run_id": "d", "status": "failed", "weight_decay": 1.0, "max_steps": 1000, "seed": 3,
                 "curves": {"train_acc": (STEPS[:3], [0.0, 0.1, 0.2])}})
    with pytest.warns(UserWarning, match="1 run"):
        tt = transition_times(tidy(runs), "test_acc")
    assert "d" not in set(tt.run_id)
    with pytest.raises(ValueError, match="margin_mean"):
        transition_times(tidy(runs), "margin_mean")


def test_run_configs_drops_columns_varying_within_a_run():
    table = tidy(three_runs())
    table["noise"] = np.arange(len(table))  # varies within runs: not config
    cfg = run_configs(table)
    assert list(cfg.run_id) == ["a", "b", "c"]
    assert "noise" not in cfg.columns and "weight_decay" in cfg.columns


def test_grokking_times_standard_definitions():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious warnings on a clean table
        g = grokking_times(tidy(three_runs())).set_index("run_id")
    assert g.loc["a", ["t_fit", "t_grok"]].tolist() == [50, 370]
    assert g.loc["a", "delay"] == 320 and not g.loc["a", "delay_censored"]
    assert g.loc["b", "grok_censored"] and g.loc["b", "delay_censored"] and not g.loc["b", "fit_censored"]
    assert g.loc["b", "t_grok50"] == 1000 and g.loc["b", "grok50_censored"]
    assert g.loc["c", "t_grok50"] == 0 and g.loc["c", "t_grok"] == 400 and g.loc["c", "delay"] == 370


# ---------------------------------------------------------------- sigmoid fits


def sigmoid(t, lower, upper, m, s):
    return lower + (upper - lower) / (1 + np.exp(-(np.log10(t) - m) / s))


LOGSTEPS = np.unique(np.round(np.logspace(0, 5, 150)))


def test_sigmoid_exact_recovery():
    m, s = 3.2, 0.15  # midpoint 10**3.2 = 1585 steps
    f = fit_sigmoid_logtime(LOGSTEPS, sigmoid(LOGSTEPS, 0.02, 0.98, m, s))
    assert f.success and f.increasing
    assert f.midpoint == pytest.approx(10**m, rel=1e-4)
    assert f.width_10_90 == pytest.approx(2 * np.log(9) * s, rel=1e-4)
    assert (f.lower, f.upper) == pytest.approx((0.02, 0.98), abs=1e-5)
    assert f.r2 == pytest.approx(1.0)
    # the width means what it says: the curve goes from 10 % to 90 % over width_10_90 decades
    lo = 10 ** (f.midpoint_log10 - f.width_10_90 / 2)
    hi = 10 ** (f.midpoint_log10 + f.width_10_90 / 2)
    frac = (f.predict([lo, hi]) - f.lower) / (f.upper - f.lower)
    assert frac == pytest.approx([0.1, 0.9], abs=1e-6)


def test_sigmoid_noisy_recovery_and_standard_errors():
    rng = np.random.default_rng(1)
    m, s = 2.7, 0.3
    y = sigmoid(LOGSTEPS, 0.01, 1.0, m, s) + rng.normal(0, 0.03, LOGSTEPS.size)
    f = fit_sigmoid_logtime(LOGSTEPS, y)
    assert f.success
    assert abs(f.midpoint_log10 - m) < 4 * f.midpoint_log10_se < 0.05
    assert abs(f.width_10_90 - 2 * np.log(9) * s) < 4 * f.width_10_90_se
    # delta method: se(10**m) = ln10 * 10**m * se(m)
    assert f.midpoint_se == pytest.approx(np.log(10) * f.midpoint * f.midpoint_log10_se)


def test_sigmoid_decreasing_loss_curve():
    rng = np.random.default_rng(2)
    m, s = 2.5, 0.2
    y = sigmoid(LOGSTEPS, 4.0, 0.05, m, s) + rng.normal(0, 0.02, LOGSTEPS.size)
    f = fit_sigmoid_logtime(LOGSTEPS, y)
    assert f.success and not f.increasing
    assert f.width_10_90 > 0
    assert f.midpoint == pytest.approx(10**m, rel=0.03)
    assert f.width_10_90 == pytest.approx(2 * np.log(9) * s, rel=0.05)
    assert f.upper == pytest.approx(4.0, abs=0.05) and f.lower == pytest.approx(0.05, abs=0.05)


def test_sigmoid_drops_step_zero_and_fails_cleanly():
    steps = np.concatenate([[0], LOGSTEPS])
    f = fit_sigmoid_logtime(steps, sigmoid(np.maximum(steps, 1), 0, 1, 3, 0.2))
    assert f.success and f.n == LOGSTEPS.size
    flat = fit_sigmoid_logtime(LOGSTEPS, np.full(LOGSTEPS.size, 0.4))
    assert not flat.success and "constant" in flat.message and np.isnan(flat.midpoint)
    few = fit_sigmoid_logtime([1, 10, 100], [0, 0.5, 1])
    assert not few.success and "5 points" in few.message


def test_sigmoid_midpoint_outside_range_not_success():
    # only the early rise of a transition centred far beyond the logged steps
    t = LOGSTEPS[LOGSTEPS <= 1e3]
    f = fit_sigmoid_logtime(t, sigmoid(t, 0, 1, 5.5, 0.6))
    assert not f.success


def test_grokking_times_without_train_acc_gives_nan_censored_fit():
    table = tidy(three_runs())
    g = grokking_times(table[table.metric != "train_acc"]).set_index("run_id")
    assert g["t_fit"].isna().all() and g["fit_censored"].all() and g["delay_censored"].all()
    assert g.loc["a", "t_grok"] == 370 and not g.loc["a", "grok_censored"]
    assert g["fit_censored"].dtype == bool
