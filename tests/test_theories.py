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
         "nor an offline probe produces: ['test_accuracy']"),
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
    m3 = next(p for p in fam.predictions if p.id == "M3")  # reads only metrics the synthetic table has
    bad = dataclasses.replace(fam, predictions=(dataclasses.replace(m3, test=crashes),))
    with pytest.raises(RuntimeError, match="bug in the test"):
        check_family(bad)


def test_unknown_family_suggests_a_name():
    from grokking_theories.errors import ConfigError
    with pytest.raises(ConfigError, match="did you mean 'sharpness'"):
        get_family("sharpnes")


@pytest.mark.parametrize("scenario, expected", [
    ("effect", "supported"),       # accuracy's transition 3x narrower than the Brier score's
    ("opposite", "contradicted"),  # accuracy 3x wider: the abruptness is not the argmax's
])
def test_s1_recovers_a_planted_width_ratio(scenario, expected):
    from grokking_theories.theories.sharpness import plant_s1

    configs = load_study("sharpness").configs  # 8 seeds, run to the budget
    table = plant_s1(configs, scenario, np.random.default_rng(1))
    verdict = get_family("sharpness").predictions[0].evaluate(table, "planted")
    assert verdict.verdict == expected, verdict.summary()
    planted = -np.log10(3) if scenario == "effect" else np.log10(3)
    assert verdict.ci_low - 0.15 <= planted <= verdict.ci_high + 0.15  # mean log10 ratio near the planted one


def test_evaluate_families_covers_every_run_set_and_adjusts():
    from grokking_theories.theories.sharpness import plant_s1

    configs = load_study("sharpness").configs
    table = plant_s1(configs, "effect", np.random.default_rng(1))
    ids = [c.run_id for c in configs]
    verdicts = evaluate_families(table, [get_family("sharpness")], {"first3": ids[:3], "all": ids})
    assert [(v.run_set, v.role, v.prediction_id) for v in verdicts] == (
        [("primary design", "headline", p) for p in ("S1", "M2", "M3")]
        + [(rs, "secondary", p) for rs in ("first3", "all") for p in ("S1", "M2", "M3")])
    s1_all = verdicts[6]
    assert s1_all.p_adjusted is not None and s1_all.p_adjusted >= s1_all.p_value
    assert verdicts[0].verdict == "supported"
    assert verdicts[3].verdict == "inconclusive" and "the rule needs 4" in verdicts[3].notes  # 3 runs
    assert verdicts[1].verdict == "inconclusive" and "missing metric" in verdicts[1].notes  # no flip rows


def test_a_family_is_decided_in_its_own_study_and_is_cross_study_elsewhere():
    from grokking_theories.theories.base import CROSS_STUDY, headline_families
    from grokking_theories.theories.sharpness import plant_s1

    gold, sharp = get_family("goldilocks"), get_family("sharpness")
    assert headline_families([gold, sharp], "omnigrok") == [gold]
    assert headline_families([gold, sharp], "sharpness") == [sharp]
    assert headline_families([gold, sharp], "my_edited_copy") == [gold, sharp]  # a user's study decides all

    configs = load_study("sharpness").configs
    table = plant_s1(configs, "effect", np.random.default_rng(1))
    ids = [c.run_id for c in configs]
    verdicts = evaluate_families(table, [gold, sharp], {"seeds": ids}, study="omnigrok")
    headline = [v for v in verdicts if v.role == "headline"]
    assert {v.prediction_id for v in headline} == {p.id for p in gold.predictions}
    cross = [v for v in verdicts if v.run_set == CROSS_STUDY]
    assert {v.prediction_id for v in cross} == {p.id for p in sharp.predictions}
    assert all(v.role == "secondary" for v in cross)
    # the cross-study S1 is decided on the same rows as the headline S1 would be, but never enters its family
    s1_cross = next(v for v in cross if v.prediction_id == "S1")
    assert s1_cross.verdict == "supported" and s1_cross.p_adjusted is not None
