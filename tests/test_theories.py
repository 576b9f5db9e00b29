import dataclasses

import numpy as np
import pandas as pd
import pytest

from grokking_theories.studies import load_study
from grokking_theories.theories import (FAMILY_CHECKS, FamilyCheckError, all_families, check_family,
                                        evaluate_families, family_checks, get_family)
from grokking_theories.theories import conformance
from grokking_theories.theories.synthetic import synthetic_table

FAMILY_NAMES = [f.name for f in all_families()]
CHECK_NAMES = [c.__name__ for c in FAMILY_CHECKS]
FAMILY_CHECK_CASES = [(f, c) for f in FAMILY_NAMES for c in CHECK_NAMES]


@pytest.mark.parametrize("name, check", FAMILY_CHECK_CASES, ids=[f"{f}-{c}" for f, c in FAMILY_CHECK_CASES])
def test_every_registered_family_passes_every_check(name, check):
    """One test per (family, rule): a failure's test id names the broken rule, e.g. sharpness-check_metrics_known."""
    checks = dict(family_checks(get_family(name), scales=("quick", "paper")))
    checks[check]()


def test_check_ids_name_family_and_rule():
    assert "sharpness-check_metrics_known" in [f"{f}-{c}" for f, c in FAMILY_CHECK_CASES]
    assert CHECK_NAMES[:2] == ["check_is_family", "check_documented"]  # cheap structural checks first
    assert {"check_prediction_ids", "check_sweep_loads", "check_runs_on_synthetic",
            "check_empty_table_inconclusive", "check_probes_registered"} <= set(CHECK_NAMES)
    assert all(callable(getattr(conformance, n)) for n in CHECK_NAMES)  # module-level functions


def test_check_family_runs_every_named_check_in_order(monkeypatch):
    called = []

    def spy(name):
        def check(family, scales=("quick",)):
            called.append(name)
        check.__name__ = name
        return check
    monkeypatch.setattr(conformance, "FAMILY_CHECKS", tuple(spy(c.__name__) for c in FAMILY_CHECKS))
    check_family(get_family("sharpness"))
    assert called == CHECK_NAMES


def _deciding(pred):
    """``pred`` as a Prediction whose evaluate decides whatever the table, even an empty one."""
    from grokking_theories.stats import Prediction, Verdict

    class Decides(Prediction):
        def evaluate(self, table, run_set="primary design", *, role="headline"):
            return Verdict(prediction_id=self.id, family=self.family, statement=self.statement, run_set=run_set,
                           verdict="supported", p_value=0.01)
    return Decides(**{f.name: getattr(pred, f.name) for f in dataclasses.fields(pred)})


def _returns_text(pred):
    """``pred`` as a Prediction whose evaluate returns text instead of a Verdict."""
    from grokking_theories.stats import Prediction

    class Text(Prediction):
        def evaluate(self, table, run_set="primary design", *, role="headline"):
            return "supported"
    return Text(**{f.name: getattr(pred, f.name) for f in dataclasses.fields(pred)})


def _broken(how):
    """The sharpness family broken in exactly one way."""
    fam = get_family("sharpness")
    pred = fam.predictions[0]
    m2 = next(p for p in fam.predictions if p.id == "M2")
    other_id = get_family("goldilocks").predictions[0].id
    return {
        "bad_name": dataclasses.replace(fam, name="not an identifier"),
        "no_explanation": dataclasses.replace(fam, explanation=""),
        "no_rule": dataclasses.replace(fam, predictions=(dataclasses.replace(pred, rule=""),)),
        "repeated_id": dataclasses.replace(fam, predictions=(pred, pred)),
        "foreign_id": dataclasses.replace(fam, predictions=(dataclasses.replace(pred, id=other_id),)),
        "wrong_family": dataclasses.replace(fam, predictions=(dataclasses.replace(pred, family="other"),)),
        "unknown_probe": dataclasses.replace(fam, probes=("flipz",)),
        "repeated_probe": dataclasses.replace(fam, probes=("flips", "flips")),
        "unknown_metric": dataclasses.replace(
            fam, predictions=(dataclasses.replace(pred, metrics_needed=("test_accuracy",)),)),
        "undeclared_probe": dataclasses.replace(fam, probes=()),
        "no_sweep": dataclasses.replace(fam, study="no_such_study"),
        "bad_verdict_type": dataclasses.replace(fam, predictions=(_returns_text(pred),)),
        "decides_on_empty": dataclasses.replace(fam, predictions=(_deciding(pred),)),
        "unplantable_probe": dataclasses.replace(fam, probes=("flips_no_plant",), predictions=(m2,)),
    }[how]


@pytest.fixture
def probe_without_plant(monkeypatch):
    from grokking_theories.probes import stage
    from grokking_theories.probes.flips import FLIPS

    probe = dataclasses.replace(FLIPS, name="flips_no_plant", plant=None)
    stage.get_probe("flips")  # builtin probes registered before the registry is patched
    monkeypatch.setitem(stage.PROBES, probe.name, probe)
    return probe


@pytest.mark.parametrize("how, check, needle", [
    ("bad_name", "check_is_family", "is not an identifier"),
    ("no_explanation", "check_documented", "has no explanation"),
    ("no_rule", "check_documented", "has no decision rule"),
    ("repeated_id", "check_prediction_ids", "repeats prediction ids"),
    ("foreign_id", "check_prediction_ids", "are also in 'goldilocks'"),
    ("wrong_family", "check_prediction_ids", "says family 'other'"),
    ("unknown_probe", "check_probes_registered", "did you mean 'flips'"),
    ("repeated_probe", "check_probes_registered", "repeats probes"),
    ("unknown_metric", "check_metrics_known", "nor a declared probe writes: ['test_accuracy']"),
    ("undeclared_probe", "check_metrics_known", "of probe 'flips', which family 'sharpness' does not declare"),
    ("no_sweep", "check_sweep_loads", "sweep 'no_such_study' [quick] is invalid"),
    ("bad_verdict_type", "check_runs_on_synthetic", "returned str"),
    ("decides_on_empty", "check_empty_table_inconclusive", "decided on an empty table"),
    ("unplantable_probe", "check_runs_on_synthetic", "read probe 'flips_no_plant', which has no plant"),
])
def test_each_check_fails_on_a_family_broken_its_way(how, check, needle, probe_without_plant):
    """The named check is the first to fail, with a message naming the rule; every earlier check passes."""
    family = _broken(how)
    failed = None
    for name, run in family_checks(family):
        try:
            run()
        except FamilyCheckError as exc:
            failed = (name, str(exc))
            break
    assert failed is not None, f"no check failed on {how}"
    assert failed[0] == check, failed
    assert needle in failed[1], failed[1]
    with pytest.raises(FamilyCheckError, match=None) as err:  # and check_family fails the same way
        check_family(family)
    assert str(err.value) == failed[1]


def test_check_family_rejects_a_prediction_that_crashes():
    fam = get_family("sharpness")

    def crashes(table):
        raise RuntimeError("bug in the test")
    m3 = next(p for p in fam.predictions if p.id == "M3")  # reads only metrics the synthetic table has
    bad = dataclasses.replace(fam, predictions=(dataclasses.replace(m3, test=crashes),))
    with pytest.raises(RuntimeError, match="bug in the test"):
        check_family(bad)


def test_declared_probe_metrics_are_planted_so_their_predictions_run():
    """M2 reads the flips probe: on the synthetic table it is decided from planted flip rows, not 'missing'."""
    fam = get_family("sharpness")
    assert fam.probes == ("flips",)
    configs = fam.sweep("quick").configs
    plain = synthetic_table(configs, seed=0)
    planted = synthetic_table(configs, seed=0, probes=fam.probes)
    flips = planted[planted["metric"].str.startswith("flip_")]
    from grokking_theories.probes.flips import OFFLINE_METRICS
    assert set(flips["metric"]) == set(OFFLINE_METRICS)
    assert flips.groupby("run_id").size().eq(len(OFFLINE_METRICS)).all()  # one summary row per run and metric
    last = planted.groupby("run_id")["step"].max()
    assert (flips["step"].to_numpy() == last.loc[flips["run_id"]].to_numpy()).all()  # at the run's last step
    # planting draws from its own stream: the logged rows are the same with or without probes
    pd.testing.assert_frame_equal(planted[~planted["metric"].str.startswith("flip_")].reset_index(drop=True), plain)
    m2 = next(p for p in fam.predictions if p.id == "M2")
    assert "missing metric" in m2.evaluate(plain).notes
    verdict = m2.evaluate(planted)
    assert "missing metric" not in verdict.notes and verdict.n_runs == len(configs)
    # the synthetic margins drift together: the planted ratio sits at the drift value, so M2 is supported
    assert verdict.verdict == "supported" and verdict.effect_size == pytest.approx(np.log10(0.5), abs=0.05)


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
