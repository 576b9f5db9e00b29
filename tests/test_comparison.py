"""The composite study (``include``) and the cross-theory comparison, on planted tables with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from grokking_theories.config import make_run_config
from grokking_theories.errors import ConfigError
from grokking_theories.stats import Design, Prediction, adjust_verdicts, directional_outcome
from grokking_theories.studies import load_study
from grokking_theories.theories import Family, evaluate_families
from grokking_theories.theories.comparison import Claim, Conflict, evaluate_comparison
from grokking_theories.theories.planted import run_frame, concat


# --- the composite study -------------------------------------------------------------------------

def test_study_all_is_the_deduplicated_union_of_its_members():
    composite = load_study("all", "quick")
    assert list(composite.members) == ["weight_decay", "circuits", "omnigrok", "double_descent", "sharpness",
                                       "interventions"]
    union = {c.run_id for m in composite.members.values() for c in m.configs}
    ids = [c.run_id for c in composite.configs]
    assert len(ids) == len(set(ids)) == len(union)
    assert set(ids) == union
    assert {a.name.split("/")[0] for a in composite.arms} == set(composite.members)
    assert composite.run_sets() == {name: [c.run_id for c in m.configs] for name, m in composite.members.items()}
    # each family sits at the study that declares its runs, in include order
    assert composite.families == ["weight_decay", "circuits", "goldilocks", "double_descent", "sharpness",
                                  "interventions"]


def _write(tmp_path, text: str):
    path = tmp_path / "composite.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ('include = ["sharpness"]\nfamilies = ["sharpness"]\n', "unknown key 'families'"),
    ('include = ["sharpnes"]\n', "did you mean 'sharpness'"),
    ('include = ["sharpness", "sharpness"]\n', "names a study twice"),
    ('include = []\n', "non-empty list of study names"),
    ('include = "sharpness"\n', "non-empty list of study names"),
])
def test_a_bad_include_names_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_study(_write(tmp_path, text))


def test_a_study_cannot_include_itself(tmp_path):
    path = _write(tmp_path, "")
    (tmp_path / "composite.toml").write_text(f'include = ["{path}"]\n')
    with pytest.raises(ConfigError, match="includes itself"):
        load_study(path)


def test_a_composite_has_the_scale_of_its_members(tmp_path):
    paper = load_study(_write(tmp_path, 'include = ["sharpness", "circuits"]\n'), "paper")
    assert {c.run_id for c in paper.configs} == ({c.run_id for c in load_study("sharpness", "paper").configs}
                                                 | {c.run_id for c in load_study("circuits", "paper").configs})


# --- evaluation on planted tables ----------------------------------------------------------------

def _mean_test(expected: str):
    """Per-run mean of metric 'x' against 0: a t-test whose answer the planted table fixes."""
    def test(sub):
        values = sub[sub["metric"] == "x"].groupby("run_id")["value"].mean().to_numpy()
        se = values.std(ddof=1) / np.sqrt(len(values))
        return directional_outcome(estimate=float(values.mean()), se=float(se), df=len(values) - 1,
                                   expected=expected, test="one-sample t", statistic_name="t",
                                   effect_name="mean x", n_runs=len(values))
    return test


def _prediction(pid: str, family: str, *, expected: str = "positive", metric: str = "x") -> Prediction:
    return Prediction(id=pid, family=family, statement=f"{pid}: x is {expected}. More words.",
                      test=_mean_test(expected), design=Design(runs="weight_decay > 0"), metrics_needed=(metric,))


def _runs(study_lr: float, means, seed0: int = 0, metric: str = "x"):
    """One run per mean; the lr tells the studies apart (no two studies share a run id)."""
    frames = []
    for i, mean in enumerate(means):
        cfg = make_run_config({"lr": study_lr, "seed": seed0 + i})
        values = mean + 0.05 * np.sin(np.arange(5) + i)
        frames.append(run_frame(cfg, np.arange(1, 6), {metric: values}))
    return frames


@pytest.fixture()
def planted():
    """Study 'sa' (x > 0 in all runs), study 'sb' (x < 0), study 'sc' (no metric x, only y)."""
    a = Family(name="fa", title="A", explanation="", study="sa",
               predictions=(_prediction("A1", "fa"), _prediction("A2", "fa", expected="negative")))
    b = Family(name="fb", title="B", explanation="", study="sb", predictions=(_prediction("B1", "fb"),))
    sa, sb, sc = _runs(1e-2, [1.0, 1.2, 0.9, 1.1]), _runs(2e-2, [-1.0, -1.1, -0.8, -1.2]), _runs(3e-2, [1, 2, 3], metric="y")
    table = concat(sa + sb + sc)
    ids = lambda frames: sorted({f["run_id"].iloc[0] for f in frames})  # noqa: E731
    return [a, b], table, {"sa": ids(sa), "sb": ids(sb), "sc": ids(sc)}


def test_each_prediction_is_decided_on_its_own_studys_runs(planted):
    families, table, run_sets = planted
    c = evaluate_comparison(table, families, run_sets)
    head = {v.prediction_id: v for v in c.headline}
    # pooled over sa and sb, x's mean is ~0 (inconclusive); on its own study's runs A1 holds and B1 fails
    assert head["A1"].verdict == "supported" and head["A1"].n_runs == 4
    assert head["A2"].verdict == "contradicted"
    assert head["B1"].verdict == "contradicted" and head["B1"].n_runs == 4
    assert all(v.role == "headline" for v in c.headline)
    # the cross cells: A1 on sb's runs is contradicted, B1 on sa's is supported, all secondary
    assert c.cells[("A1", "sb")].verdict == "contradicted" and c.cells[("A1", "sb")].role == "secondary"
    assert c.cells[("B1", "sa")].verdict == "supported"
    assert c.cells[("A1", "sa")] is next(v for v in c.headline if v.prediction_id == "A1")
    # sc lacks metric x: not applicable, with the reason, and not in the verdict list
    assert ("A1", "sc") not in c.cells and "missing metric(s) ['x']" in c.not_applicable[("A1", "sc")]
    assert all(v.run_set != "sc" for v in c.verdicts)


def test_headline_equals_the_family_studys_own_report(planted):
    families, table, run_sets = planted
    c = evaluate_comparison(table, families, run_sets)
    own = table[table["run_id"].isin(run_sets["sa"])]
    alone = [v for v in evaluate_families(own, [families[0]], {}, study="sa") if v.role == "headline"]
    mine = [v for v in c.headline if v.family == "fa"]
    assert [(v.prediction_id, v.verdict, v.p_value, v.p_adjusted) for v in mine] == \
        [(v.prediction_id, v.verdict, v.p_value, v.p_adjusted) for v in alone]


def test_holm_families_are_per_explanation_for_the_headline_and_one_for_the_cells(planted):
    families, table, run_sets = planted
    c = evaluate_comparison(table, families, run_sets)
    raw = {v.prediction_id: v for v in c.headline}
    fa = adjust_verdicts([dataclass_raw(raw["A1"]), dataclass_raw(raw["A2"])])
    assert [v.p_adjusted for v in fa] == [raw["A1"].p_adjusted, raw["A2"].p_adjusted]
    assert raw["B1"].p_adjusted == pytest.approx(raw["B1"].p_value)  # alone in its family
    cells = [v for v in c.verdicts if v.role == "secondary"]
    adjusted = adjust_verdicts([dataclass_raw(v) for v in cells])
    assert [v.p_adjusted for v in adjusted] == [v.p_adjusted for v in cells]


def dataclass_raw(v):
    import dataclasses
    return dataclasses.replace(v, p_adjusted=None)


def test_evidence_sentences_are_generated_from_the_verdicts(planted):
    families, table, run_sets = planted
    c = evaluate_comparison(table, families, run_sets)
    pro, con = c.evidence(families[0])
    a1 = c.cells[("A1", "sa")]
    assert pro.startswith("A1 supported on its primary design") and f"{a1.effect_size:.3g}" in pro
    assert f"{a1.ci_low:.3g} to {a1.ci_high:.3g}" in pro
    assert con.startswith("A2 contradicted on its primary design")
    pro_b, con_b = c.evidence(families[1])
    assert pro_b.startswith("B1 supported on the sa runs (secondary)")  # no headline support: the best cell
    assert con_b.startswith("B1 contradicted on its primary design")


def test_conflicts_say_which_way_the_data_went(planted):
    families, table, run_sets = planted
    c = evaluate_comparison(table, families, run_sets)
    # A1 holds on its own runs (headline, favours fa) and fails on sb's (secondary, favours fb): the finding
    # rests on the headline, the secondary cell is reported as not pointing the same way
    conflict = Conflict(question="Is x positive?", why="planted",
                        claims=(Claim(prediction="A1", expected_by="fa", denied_by="fb"),))
    (found,) = c.conflict_findings([conflict])
    assert found["tally"] == {"fa": 1}
    assert found["sentence"] == ("The data side with A: A1 supported on the sa runs. On other studies' runs "
                                 "(secondary): 1 decided cell(s), 0 pointing the same way.")
    # two headline verdicts pointing opposite ways: a split
    both = Conflict(question="?", why="planted", claims=(Claim(prediction="A1", expected_by="fa", denied_by="fb"),
                                                          Claim(prediction="B1", expected_by="fa", denied_by="fb")))
    (found,) = c.conflict_findings([both])
    assert found["tally"] == {"fa": 1, "fb": 1} and found["sentence"].startswith("Split: A1 supported on the sa "
                                                                                 "runs; B1 contradicted on the sb runs.")
    # fb's own study absent: B1 is only a secondary cell, which agrees with A1's headline
    only_sa = evaluate_comparison(table, families, {"sa": run_sets["sa"]})
    (found,) = only_sa.conflict_findings([both])
    assert found["sentence"].endswith("1 decided cell(s), 1 pointing the same way.")
    unknown = Conflict(question="?", why="", claims=(Claim(prediction="A1", expected_by="fa", denied_by="zz"),))
    assert c.conflict_findings([unknown]) == []  # an explanation that is not here: nothing to say
    assert "not decided here" in only_sa.summary()


def test_summary_lists_every_explanation_and_the_cross_table(planted):
    families, table, run_sets = planted
    text = evaluate_comparison(table, families, run_sets).summary()
    assert "fa (A), decided on the sa runs" in text and "fb (B), decided on the sb runs" in text
    assert "contradicted*" in text and "supported*" in text


# --- end to end: a composite study's report, results object and rerun ---------------------------

def test_a_composite_study_reports_the_comparison_and_the_gallery(tmp_path, tiny_composite):
    import json
    import re

    import grokking_theories as gt

    out = tmp_path / "out"
    results = gt.run_study(str(tiny_composite), out=out, workers=1)
    html = (out / "report.html").read_text()
    report = json.loads((out / "report.json").read_text())
    # the first section answers the question: the at-a-glance table, each explanation with its evidence
    assert html.index('id="comparison"') < html.index('id="headline"')
    assert 'id="at-a-glance"' in html and "Planted A" in html and "Planted B" in html
    assert "Strongest for:</b> A1 supported on its primary design" in html
    assert [e["decided_on"] for e in report["comparison"]["explanations"]] == ["sharpness", "tinyb"]
    # the matrix and the gallery are embedded images; the gallery names its run set and the verdicts beside it
    for key in ("comparison-matrix", "gallery-power_fig1"):
        figure = re.search(rf'<figure id="{key}".*?</figure>', html, re.S).group(0)
        assert 'src="data:image/png;base64,' in figure
    assert "drawn from the sharpness study&#39;s runs at the quick scale (8 runs)" in html
    assert report["gallery"] == ["power_fig1"]
    # each prediction decided on its own study's 4 runs with decay (pooled, its filter would pass 8)
    head = {v.prediction_id: v for v in results.comparison.headline}
    assert head["A1"].n_runs == 4 and head["B1"].n_runs == 4
    assert results.comparison.cells[("A1", "tinyb")].role == "secondary"
    assert "cross-table" in results.summary()
    assert "for:" in results.summary() and "<i>for</i>" in results._repr_html_()
    # a second run trains nothing; load() reopens it with the same verdicts
    again = gt.run_study(str(tiny_composite), out=out, workers=1)
    assert json.loads((out / "study.json").read_text())["trained"] == 0
    loaded = gt.load(out)
    assert [(v.prediction_id, v.run_set, v.verdict) for v in loaded.comparison.verdicts] == \
        [(v.prediction_id, v.run_set, v.verdict) for v in again.comparison.verdicts]


def test_studies_run_with_the_default_output_share_one_store(tmp_path, tiny_composite, monkeypatch):
    """A user who ran one family's study retrains none of its runs in the composite (and the reverse)."""
    import json

    import grokking_theories as gt

    monkeypatch.chdir(tmp_path)
    gt.run_study(str(tmp_path / "sharpness.toml"), workers=1)
    gt.run_study(str(tiny_composite), workers=1)
    record = json.loads((tmp_path / "runs" / "mix-quick" / "study.json").read_text())
    assert (record["reused"], record["trained"]) == (8, 8)
    assert record["store"] == str((tmp_path / "runs" / "store").resolve())
    gt.run_study(str(tmp_path / "tinyb.toml"), workers=1)
    assert json.loads((tmp_path / "runs" / "tinyb-quick" / "study.json").read_text())["trained"] == 0


def test_the_docs_gallery_is_written_from_a_finished_composite(tmp_path, tiny_composite):
    import grokking_theories as gt
    from grokking_theories.report.gallery import write_docs_gallery

    out = tmp_path / "out"
    gt.run_study(str(tiny_composite), out=out, workers=1)
    docs = tmp_path / "docs"
    page = write_docs_gallery(out, docs)
    text = page.read_text()
    assert "![Grokking: train and test accuracy](_static/gallery/power_fig1.png)" in text
    assert "redrawn from the sharpness study's runs at the quick scale (8 runs)" in text
    assert (docs / "_static" / "gallery" / "power_fig1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="includes no other studies"):
        gt.run_study(str(tmp_path / "tinyb.toml"), out=tmp_path / "b", workers=1)
        write_docs_gallery(tmp_path / "b", docs)


def test_the_composite_gives_each_family_studys_own_headline(tmp_path, tiny_composite):
    """End to end: the headline of study 'all' (here the tiny composite) equals each family study's own."""
    import grokking_theories as gt

    composite = gt.run_study(str(tiny_composite), out=tmp_path / "mix", workers=1)
    key = ["prediction_id", "verdict", "effect_size", "ci_low", "ci_high", "p_value", "p_adjusted", "n_runs"]
    for study, family in (("sharpness", "fam_a"), ("tinyb", "fam_b")):
        alone = gt.run_study(str(tmp_path / f"{study}.toml"), out=tmp_path / study, store=tmp_path / "mix" / "store",
                             workers=1)
        mine = composite.headline[composite.headline["family"] == family][key].reset_index(drop=True)
        assert mine.equals(alone.headline[key].reset_index(drop=True))
