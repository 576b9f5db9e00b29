import dataclasses

import numpy as np
import pandas as pd
import pytest

from grokking_theories.studies import load_study
from grokking_theories.theories import FamilyCheckError, all_families, check_family, evaluate_families, get_family
from grokking_theories.theories.synthetic import synthetic_table

FAMILY_NAMES = [f.name for f in all_families()]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_every_registered_family_passes_check_family(name):
    check_family(get_family(name), scales=("quick", "paper"))


def test_check_family_rejects_broken_families():
    fam = get_family("sharpness")
    pred = fam.predictions[0]
    broken = [
        (dataclasses.replace(fam, explanation=""), "has no explanation"),
        (dataclasses.replace(fam, predictions=(pred, pred)), "repeats prediction ids"),
        (dataclasses.replace(fam, predictions=(dataclasses.replace(pred, rule=""),)), "has no decision rule"),
        (dataclasses.replace(fam, predictions=(dataclasses.replace(pred, metrics_needed=("test_accuracy",)),)),
         "never logs: ['test_accuracy']"),
        (dataclasses.replace(fam, predictions=(dataclasses.replace(pred, family="other"),)), "says family 'other'"),
        (dataclasses.replace(fam, study="no_such_study"), "sweep 'no_such_study' [quick] is invalid"),
    ]
    for family, needle in broken:
        with pytest.raises(FamilyCheckError, match=None) as err:
            check_family(family)
        assert needle in str(err.value), str(err.value)


def test_check_family_rejects_a_prediction_that_crashes():
    fam = get_family("sharpness")

    def crashes(table):
        raise RuntimeError("bug in the test")
    bad = dataclasses.replace(fam, predictions=(dataclasses.replace(fam.predictions[0], test=crashes),))
    with pytest.raises(RuntimeError, match="bug in the test"):
        check_family(bad)


def test_unknown_family_suggests_a_name():
    from grokking_theories.errors import ConfigError
    with pytest.raises(ConfigError, match="did you mean 'sharpness'"):
        get_family("sharpnes")


@pytest.mark.parametrize("acc_width, smooth_width, expected", [
    (0.06, 0.3, "supported"),     # accuracy switches 5x faster than the smooth metrics: artifact-like
    (0.3, 0.06, "contradicted"),  # accuracy is the smooth one: abruptness lies in the metrics themselves
])
def test_s1_recovers_a_planted_width_ratio(acc_width, smooth_width, expected):
    configs = load_study("sharpness").configs  # 6 seeds
    table = synthetic_table(configs, seed=1, t_grok=lambda c: 600.0, acc_width=acc_width, smooth_width=smooth_width)
    verdict = get_family("sharpness").predictions[0].evaluate(table, "planted")
    assert verdict.verdict == expected, verdict.summary()
    ratio = acc_width / smooth_width
    assert verdict.ci_low <= ratio * 1.3 and verdict.ci_high >= ratio / 1.3  # effect size near the planted one


def test_s2_margin_model_reproduces_accuracy_when_margins_are_normal():
    configs = load_study("sharpness").configs
    table = synthetic_table(configs, seed=2, t_grok=lambda c: 600.0)
    # plant accuracy = P(margin > 0) exactly under the logged quartiles: R^2 must be ~1
    from scipy.stats import norm
    import numpy as np
    mu = table[table.metric == "test_margin_q50"].set_index(["run_id", "step"])["value"]
    iqr = (table[table.metric == "test_margin_q75"].set_index(["run_id", "step"])["value"]
           - table[table.metric == "test_margin_q25"].set_index(["run_id", "step"])["value"])
    acc = pd.Series(norm.cdf(mu / (iqr / (2 * norm.ppf(0.75)))), index=mu.index)
    rows = table.metric == "test_acc"
    idx = list(zip(table.loc[rows, "run_id"], table.loc[rows, "step"]))
    table.loc[rows, "value"] = acc.loc[idx].to_numpy()
    verdict = get_family("sharpness").predictions[1].evaluate(table, "planted")
    assert verdict.verdict == "supported" and verdict.effect_size > 0.999
    # and a table whose accuracy ignores the margins is not supported
    table.loc[rows, "value"] = np.where(table.loc[rows, "step"] > 2000, 1.0, 0.0)
    assert get_family("sharpness").predictions[1].evaluate(table, "planted").verdict != "supported"


def test_evaluate_families_covers_every_run_set_and_adjusts():
    configs = load_study("sharpness").configs
    table = synthetic_table(configs, seed=1, t_grok=lambda c: 600.0, acc_width=0.06, smooth_width=0.3)
    ids = [c.run_id for c in configs]
    verdicts = evaluate_families(table, [get_family("sharpness")], {"first3": ids[:3], "all": ids})
    assert [(v.run_set, v.prediction_id) for v in verdicts] == [("first3", "S1"), ("first3", "S2"),
                                                                 ("all", "S1"), ("all", "S2")]
    s1_all = verdicts[2]
    assert s1_all.p_adjusted is not None and s1_all.p_adjusted >= s1_all.p_value
    assert verdicts[0].verdict == "inconclusive"  # 3 runs cannot reach p < 0.05 with a signed-rank test
