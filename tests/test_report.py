"""Tests of grokking_theories.report: content, determinism, golden files, side effects.

No model is trained: the store is filled with synthetic tidy rows with planted
grokking curves (:func:`grokking_theories.theories.synthetic.synthetic_table`),
and the predictions are planted ones defined here (:data:`FAMILIES`), so the
tests freeze the report's *format* (headline table, secondary matrix,
censoring box, notes) and no shipped family's verdict.

Golden files (``tests/golden/report.json`` and ``tests/golden/report_text.html``,
the HTML with its base64 figures replaced by placeholders) pin the rendering.
After a deliberate change to the report, regenerate them with::

    GT_REGENERATE_GOLDEN=1 python -m pytest tests/test_report.py -k golden

and review the diff before committing it.
"""
from __future__ import annotations

import base64
import builtins
import hashlib
import io
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from grokking_theories.levels import GROK_ACC
from grokking_theories.report import ReportData, build_report, collect_report_data
from grokking_theories.stats import (Design, InsufficientDataError, Outcome, Prediction,
                                     directional_outcome, equivalence_outcome, grokking_times)
from grokking_theories.store import RunStore
from grokking_theories.theories import Family

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("GT_REGENERATE_GOLDEN") == "1"
REGENERATE_HINT = ("the report no longer matches the golden copy in tests/golden/. If the change is deliberate, "
                   "regenerate with `GT_REGENERATE_GOLDEN=1 python -m pytest tests/test_report.py -k golden` "
                   "and review the diff of tests/golden/")

# Two arms: a grid over the init scale where every run groks, and a low-decay arm whose two runs
# never grok within the budget (censored: the report's censoring box counts them).
STUDY_TOML = """\
description = "Report test: synthetic grokking curves, planted predictions, no training"
families = ["planted_a", "planted_b"]

[quick]
seeds = [0, 1, 2]
base = { op = "add", p = 11, train_frac = 0.5, arch = "mlp", width = 16, lr = 1e-2, weight_decay = 1.0, max_steps = 3000, stop_after_grok = 300, log_points = 20, log_every = 100, checkpoints = 8 }

[[quick.arms]]
name = "alpha"
grid = { alpha = [0.5, 1.0, 2.0] }

[[quick.arms]]
name = "low_decay"
set = { weight_decay = 0.1 }
seeds = [0, 1]
"""
RUN_SETS = ("alpha", "low_decay", "all")
N_RUNS = 11
PREDICTIONS = ("PA1", "PA2", "PA3", "PA4", "PB1", "PB2")
HEADLINE_KEYS = {"id", "verdict", "test", "effect", "effect_name", "ci", "p", "p_adjusted", "n", "run_filter",
                 "notes"}

# Everything machine-specific is pinned, so the golden files hold on any checkout.
PINNED = {"git_commit": "golden", "git_dirty": False, "study_path": "<study>/report_study.toml",
          "store": "<store>", "python": "<python>", "dependencies": {}}

IMG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


# ---------------------------------------------------------------------- planted predictions (the format under test)


def _n(table) -> int:
    return int(table["run_id"].nunique())


def _pa1(table) -> Outcome:
    """A directional slope with a planted estimate: supported wherever its design (>= 3 alpha levels) exists."""
    return directional_outcome(estimate=-1.0, se=0.2, df=_n(table) - 2, expected="negative",
                               test="planted t-test of a slope", statistic_name="planted slope",
                               n_runs=_n(table))


def _pa2(table) -> Outcome:
    """An equivalence prediction whose planted estimate lies far outside the margin: contradicted."""
    return equivalence_outcome(estimate=0.8, se=0.1, df=_n(table) - 1, target=0.0, margin=0.2,
                               test="TOST, margin 0.2", statistic_name="planted difference", n_runs=_n(table))


def _pa3(table) -> Outcome:
    """Needs every run of its design to generalise: censored runs make it inconclusive, saying so."""
    times = grokking_times(table)
    censored = int(times["grok_censored"].sum())
    if censored:
        raise InsufficientDataError(f"{censored} of {len(times)} run(s) censored at the budget (test accuracy "
                                    f"never reached {GROK_ACC:g}); a longer budget would decide this")
    return directional_outcome(estimate=0.3, se=0.25, df=len(times) - 1, expected="positive",
                               test="planted one-sample t-test", statistic_name="planted mean",
                               n_runs=len(times))


def _pa4(table) -> Outcome:
    """Warns like a degenerate fit, and is decided at p = 0.03 (Holm demotes it in the headline family)."""
    warnings.warn("planted: the fit met a constant input", RuntimeWarning)
    return Outcome(verdict="supported", test="planted exact test", statistic_name="planted statistic",
                   statistic=2.2, effect_name="planted effect", effect_size=0.5, ci_low=0.1, ci_high=0.9,
                   p_value=0.03, p_supports="supported", n_runs=_n(table))


def _pb1(table) -> Outcome:
    return Outcome(verdict="supported", test="planted exact test", statistic_name="planted statistic",
                   statistic=-3.0, effect_name="planted effect", effect_size=-1.0, ci_low=-1.5, ci_high=-0.5,
                   p_value=0.002, p_supports="supported", n_runs=_n(table))


def _pb2(table) -> Outcome:
    """Not decided: p = 0.3 for the predicted direction."""
    return Outcome(verdict="inconclusive", test="planted exact test", statistic_name="planted statistic",
                   statistic=1.0, effect_name="planted effect", effect_size=0.2, ci_low=-0.2, ci_high=0.6,
                   p_value=0.3, p_supports="supported", n_runs=_n(table))


def planted_families() -> list:
    """Two families of planted predictions, one per verdict path the report must show."""
    a = Family(
        name="planted_a", title="Planted family A", study="report_study",
        explanation="Planted outcomes that exercise every path of the report: decided, demoted, censored.",
        references=("none",),
        predictions=(
            Prediction(id="PA1", family="planted_a", statement="A planted negative slope over alpha.",
                       rule="planted: two-sided t-test of the slope, supported when p < 0.05 and negative",
                       test=_pa1, metrics_needed=("test_acc",), config_needed=("alpha",),
                       design=Design(runs="weight_decay >= 1", levels={"alpha": 3}, min_seeds=3),
                       paper="planted: slope -1"),
            Prediction(id="PA2", family="planted_a", statement="A planted effect equals 0 (within 0.2).",
                       rule="planted: TOST with margin 0.2", test=_pa2, metrics_needed=("test_acc",)),
            Prediction(id="PA3", family="planted_a", statement="Every run generalises and the mean is positive.",
                       rule="planted: one-sample t-test, every run must reach the threshold", test=_pa3,
                       metrics_needed=("test_acc", "train_acc")),
            Prediction(id="PA4", family="planted_a", statement="A planted effect whose fit warns.",
                       rule="planted: exact test at p = 0.03", test=_pa4, metrics_needed=("test_acc",)),
        ))
    b = Family(
        name="planted_b", title="Planted family B", study="report_study",
        explanation="A second family, so the report groups predictions by family.",
        predictions=(
            Prediction(id="PB1", family="planted_b", statement="A planted effect at p = 0.002.",
                       rule="planted: exact test at p = 0.002", test=_pb1, metrics_needed=("test_acc",)),
            Prediction(id="PB2", family="planted_b", statement="A planted effect at p = 0.3.",
                       rule="planted: exact test at p = 0.3", test=_pb2, metrics_needed=("test_acc",)),
        ))
    return [a, b]


FAMILIES = planted_families()


def _summary(rows) -> dict:
    """The trainer's summary keys, computed from synthetic rows."""
    def series(metric):
        r = rows[rows["metric"] == metric].sort_values("step")
        return r["step"].to_numpy(), r["value"].to_numpy()

    out = {}
    for key, metric in (("t_fit", "train_acc"), ("t_grok", "test_acc")):
        steps, values = series(metric)
        hit = steps[values >= 0.99]
        out[key] = int(hit[0]) if len(hit) else None
    out["final_test_acc"] = float(series("test_acc")[1][-1])
    out["final_weight_norm"] = float(series("weight_norm")[1][-1])
    return out


def make_study_and_store(root: Path, toml: str = STUDY_TOML):
    """Write the study file, fill a store with synthetic runs; return (study, store root)."""
    from grokking_theories.studies import load_study
    from grokking_theories.theories.synthetic import synthetic_table

    root.mkdir(parents=True, exist_ok=True)
    path = root / "report_study.toml"
    path.write_text(toml)
    study = load_study(str(path), "quick")
    table = synthetic_table(study.configs, seed=0)
    store_root = root / "store"
    with RunStore(store_root) as store:
        for cfg in study.configs:
            rows = table[table["run_id"] == cfg.run_id][["step", "metric", "value"]]
            store.write_result(cfg, rows, summary=_summary(rows), wall_time=1.0, device="cpu")
    return study, store_root


def text_html(html: str) -> str:
    """The HTML with each figure's base64 payload replaced by a numbered placeholder."""
    counter = iter(range(1, 1000))
    return IMG.sub(lambda m: f"data:image/png;base64,<figure {next(counter)}>", html)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    study, store_root = make_study_and_store(root)
    store = RunStore(store_root, readonly=True)
    out = root / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # building a report must not let one warning out
        html_path, json_path = build_report(study, store, out, families=FAMILIES, provenance_overrides=PINNED)
    yield {"root": root, "study": study, "store": store, "store_root": store_root, "out": out,
           "html_path": html_path, "json_path": json_path,
           "html": html_path.read_text(encoding="utf-8"),
           "json": json.loads(json_path.read_text(encoding="utf-8"))}
    store.close()


def _section(html: str, ident: str) -> str:
    start = html.index(f'<section id="{ident}"')
    return html[start:html.index("</section>", start)]


def _cells(html: str) -> dict[tuple[str, str], str]:
    """(prediction id, run set) -> the verdict class of its secondary-matrix cell, read back from the HTML."""
    matrix = html[html.index('id="verdict-matrix"'):html.index("</table>", html.index('id="verdict-matrix"'))]
    headers = re.findall(r'<th class="runset" data-run-set="([^"]+)"', matrix)
    out = {}
    for pid, body in re.findall(r'<tr id="pred-([^"]+)">(.*?)</tr>', matrix, flags=re.S):
        classes = re.findall(r'<td class="verdict (\w+)"', body)
        assert len(classes) == len(headers), f"row {pid} has {len(classes)} cells for {len(headers)} run sets"
        out.update({(pid, h): c for h, c in zip(headers, classes)})
    return out


def _headline_rows(html: str) -> dict[str, str]:
    """prediction id -> the verdict class of its headline row, read back from the HTML."""
    table = html[html.index('id="headline-table"'):html.index("</table>", html.index('id="headline-table"'))]
    return {pid: re.search(r'<td class="verdict (\w+)"', body).group(1)
            for pid, body in re.findall(r'<tr id="headline-([^"]+)">(.*?)</tr>', table, flags=re.S)}


# ---------------------------------------------------------------------- content


def test_report_files_and_returned_paths(env):
    assert env["html_path"] == env["out"] / "report.html"
    assert env["json_path"] == env["out"] / "report.json"
    assert env["html_path"].stat().st_size > 10_000
    # Only the two report files: no stray temporaries or figure files beside them.
    assert sorted(p.name for p in env["out"].iterdir()) == ["report.html", "report.json"]


def test_headline_shows_each_prediction_once_on_its_primary_design(env):
    html, data = env["html"], env["json"]
    headline = data["headline"]
    assert [h["id"] for h in headline] == list(PREDICTIONS)
    for h in headline:
        assert set(h) == HEADLINE_KEYS
        assert isinstance(h["ci"], list) and len(h["ci"]) == 2
    rows = _headline_rows(html)
    assert rows == {h["id"]: h["verdict"] for h in headline}
    by_id = {h["id"]: h for h in headline}
    # PA1 decided on its primary design: the wd >= 1 runs (the 9 runs of the alpha grid), not all 11 runs.
    assert by_id["PA1"]["verdict"] == "supported" and by_id["PA1"]["n"] == 9
    assert by_id["PA1"]["run_filter"] == FAMILIES[0].predictions[0].design.describe()
    assert "weight_decay &gt;= 1" in html and "&gt;= 3 levels of alpha" in html
    assert by_id["PA1"]["effect"] == -1.0 and by_id["PA1"]["effect_name"] == "planted slope"
    assert by_id["PA1"]["test"] == "planted t-test of a slope"
    assert by_id["PA2"]["verdict"] == "contradicted" and by_id["PA2"]["n"] == N_RUNS
    assert "equivalence margin 0 +- 0.2" in by_id["PA2"]["notes"]
    # Censored runs leave PA3 undecided, and its note says why.
    assert by_id["PA3"]["verdict"] == "inconclusive" and "censored at the budget" in by_id["PA3"]["notes"]
    # PA4 is 'supported' at p = 0.03 on its own, but not after Holm across the headline verdicts.
    assert by_id["PA4"]["verdict"] == "inconclusive"
    assert "was 'supported' at p=0.03" in by_id["PA4"]["notes"]
    assert by_id["PB1"]["verdict"] == "supported"
    assert by_id["PB2"]["verdict"] == "inconclusive" and by_id["PB2"]["p"] == 0.3
    # The headline list is the role == 'headline' part of the full verdict list.
    heads = [v for v in data["verdicts"] if v["role"] == "headline"]
    assert [(v["prediction_id"], v["verdict"], v["p_adjusted"], v["design"]) for v in heads] == \
           [(h["id"], h["verdict"], h["p_adjusted"], h["run_filter"]) for h in headline]
    assert all(v["run_set"] == "primary design" for v in heads)
    # The table shows effect, CI, raw and Holm p, n and the run filter of each row.
    row = re.search(r'<tr id="headline-PB1">(.*?)</tr>', html, flags=re.S).group(1)
    for text in ("planted effect = -1", "95% CI [-1.5, -0.5]", ">0.002<", f">{by_id['PB1']['p_adjusted']:.3g}<",
                 ">11<", "every run", "planted exact test"):
        assert text in row, text


def test_holm_runs_over_headline_verdicts_only_and_separately_over_secondary_cells(env):
    from grokking_theories.stats import holm

    verdicts = env["json"]["verdicts"]
    for role in ("headline", "secondary"):
        vs = [v for v in verdicts if v["role"] == role]
        raw = np.array([np.nan if v["p_value"] is None else v["p_value"] for v in vs])
        want = holm(raw)
        for v, w in zip(vs, want):
            if np.isfinite(w):
                assert v["p_adjusted"] == pytest.approx(w, rel=1e-5)
            else:
                assert v["p_adjusted"] is None
    n_head = sum(v["p_value"] is not None for v in verdicts if v["role"] == "headline")
    assert f"Holm's correction runs across these headline verdicts only ({n_head} with a p-value" in env["html"]


def test_secondary_matrix_is_labelled_and_built_from_secondary_cells(env):
    html, data = env["html"], env["json"]
    secondary = _section(html, "secondary")
    assert "Secondary (robustness) view — per arm, never changes a headline verdict" in secondary
    assert html.index('id="headline"') < html.index('id="secondary"')
    cells = _cells(html)
    assert set(cells) == {(p, r) for p in PREDICTIONS for r in RUN_SETS}
    from_json = {(v["prediction_id"], v["run_set"]): v["verdict"] for v in data["verdicts"] if v["role"] == "secondary"}
    assert cells == from_json
    assert cells[("PA1", "alpha")] == cells[("PA1", "all")] == "supported"
    # A cell the arm cannot answer is inconclusive, and its note says why (shown in the cell).
    low = next(v for v in data["verdicts"] if v["prediction_id"] == "PA1" and v["run_set"] == "low_decay")
    assert low["verdict"] == "inconclusive" and "does not vary" in low["notes"]
    assert f'<span class="note">{low["notes"]}</span>'.replace("'", "&#39;") in secondary
    for label in RUN_SETS:
        assert f'data-run-set="{label}"' in secondary


def test_legend_says_what_the_quick_scale_means(env):
    html, data = env["html"], env["json"]
    legend = _section(html, "headline")
    assert "Every decided verdict rests on a p-value" in legend
    sentence = data["setting"]["sentence"]
    assert sentence.startswith("Quick scale: every verdict is a finding about one setting")
    assert "a+b mod 11, train fraction 0.5, an embedding MLP of width 16, AdamW lr 0.01" in sentence
    assert "declares no paper scale" in sentence
    assert sentence.replace("'", "&#39;") in legend


def test_scale_sentence_names_the_paper_setting(tmp_path):
    from grokking_theories.report.provenance import scale_setting
    from grokking_theories.studies import load_study

    path = tmp_path / "two_scales.toml"
    path.write_text(STUDY_TOML + '\n[paper]\nseeds = [0]\nbase = { op = "add", p = 113, train_frac = 0.3, '
                                 'arch = "transformer", lr = 1e-3, max_steps = 100 }\n\n[[paper.arms]]\nname = "x"\n')
    quick = scale_setting(load_study(str(path), "quick"))
    assert "the papers' setting is different (a+b mod 113, train fraction 0.3, Nanda et al.'s 1-layer " \
           "transformer (d_model 128), AdamW lr 0.001, this study's paper scale)" in quick["sentence"]
    paper = scale_setting(load_study(str(path), "paper"))
    assert paper["sentence"].startswith("Paper scale: the papers' setting (a+b mod 113")
    assert paper["paper_setting"] is None


def test_censoring_box_counts_censored_runs_per_arm_above_the_headline(env):
    html, cens = env["html"], env["json"]["censoring"]
    assert cens["n_censored"] == 2 and cens["n_finished"] == N_RUNS
    arms = {a["arm"]: a for a in cens["arms"]}
    assert arms["alpha"]["n_censored"] == 0 and arms["alpha"]["n_finished"] == 9
    low = arms["low_decay"]
    assert low["n_censored"] == low["n_finished"] == 2 and low["budget"] == [3000.0]
    # The synthetic low-decay runs are still rising at the budget: planted t_grok ~2,300 steps for the
    # midpoint of a logistic of width 0.08 decades, so 0.99 is reached near 5,400 steps.
    assert low["n_estimated"] == 2 and 4000 <= low["estimated_budget"] <= 8000
    assert "logit(accuracy) against log10(step)" in cens["method"]
    box = _section(html, "censoring")
    assert html.index('id="censoring"') < html.index('id="headline"')
    assert "2 of 11 finished runs are censored at their budget (test accuracy never reached 0.99)" in box
    assert "arm low_decay: 2 of 2 finished runs censored (budget 3,000 steps); a budget of about " \
           f"{low['estimated_budget']:,} steps" in box
    assert "arm alpha: 0 of 9 finished runs censored" in box


def test_no_censoring_box_when_every_run_generalises(env, tmp_path):
    data = collect_report_data(env["study"], env["store"], families=[], provenance_overrides=PINNED)
    assert data.censoring.any
    from grokking_theories.studies import load_study

    path = tmp_path / "alpha_only.toml"
    path.write_text(STUDY_TOML.split("[[quick.arms]]\nname = \"low_decay\"")[0])
    study = load_study(str(path), "quick")
    data = collect_report_data(study, env["store"], families=[], provenance_overrides=PINNED)
    assert not data.censoring.any and data.censoring.lines() == []
    from grokking_theories.report import render_html

    assert 'id="censoring"' not in render_html(data)


def test_budget_extrapolation_recovers_a_planted_time_and_refuses_a_flat_run():
    from grokking_theories.report.censoring import ArmCensoring, RunEstimate, extrapolate_budget
    from grokking_theories.theories.planted import logistic_logtime

    steps = np.unique(np.round(np.logspace(0, np.log10(3000), 80)))
    for t_mid in (2500.0, 4000.0):
        acc = 1 / 59 + (1 - 1 / 59) * logistic_logtime(steps, t_mid, 0.3)
        want = 10 ** (np.log10(t_mid) + 0.3 / (2 * np.log(9)) * np.log(GROK_ACC / (1 - GROK_ACC) * 1.0))
        est, why = extrapolate_budget(steps, acc, budget=3000, chance=1 / 59)
        assert why == "" and est == pytest.approx(want, rel=0.05)
    est, why = extrapolate_budget(steps, np.full(steps.shape, 1 / 59), budget=3000, chance=1 / 59)
    assert est is None and "not above chance" in why
    rng = np.random.default_rng(0)
    est, why = extrapolate_budget(steps, 0.6 + rng.normal(0, 0.01, steps.shape), budget=3000, chance=1 / 59)
    assert est is None and "not rising" in why
    arm = ArmCensoring("x", 3, 3, 1, (3000.0,), (RunEstimate("r", 3000.0, 0.02, None, why),))
    assert arm.estimated_budget is None and "cannot be estimated (test accuracy not rising" in arm.text()


def test_evaluation_warnings_go_into_the_notes_not_the_terminal(env, recwarn, capsys):
    """A test that makes NumPy warn: no warning reaches pytest or the terminal, the verdict's note names it."""
    from grokking_theories.theories import evaluate_families

    def noisy(table):
        with np.errstate(divide="warn"):
            logs = np.log(np.zeros(2))  # RuntimeWarning: divide by zero encountered in log
        return Outcome(verdict="inconclusive", test="planted test", effect_size=float(logs[0]))

    fam = Family(name="noisy", title="noisy", explanation="", predictions=(
        Prediction(id="N1", family="noisy", statement="warns", test=noisy, metrics_needed=("test_acc",)),))
    table = env["store"].metrics_table([c.run_id for c in env["study"].configs])
    verdicts = evaluate_families(table, [fam], {"alpha": env["study"].run_sets()["alpha"]})
    assert len(recwarn) == 0, [str(w.message) for w in recwarn]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert len(verdicts) == 2
    for v in verdicts:
        assert v.notes.count("RuntimeWarning: divide by zero encountered in log") == 1  # deduplicated
        assert "numerical warning during the fit" in v.notes and "planted test" in v.notes
    # In the planted report: PA4's warning is quoted in its headline note.
    pa4 = next(h for h in env["json"]["headline"] if h["id"] == "PA4")
    assert "RuntimeWarning: planted: the fit met a constant input" in pa4["notes"]


def test_figures_are_inline_pngs_without_software_stamp(env):
    html, data = env["html"], env["json"]
    payloads = IMG.findall(html)
    keys = [f["key"] for f in data["figures"]]
    assert keys == ["grokking:alpha", "grokking:low_decay", "weight_norm"]
    assert len(payloads) == len(keys)
    assert html.count('<img src="data:image/png;base64,') == len(keys)
    for payload in payloads:
        png = base64.b64decode(payload)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert b"Software" not in png and b"matplotlib" not in png.lower()
        # Not a giant image: width and height from the IHDR chunk.
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert 300 < width <= 1400 and 200 < height <= 1400
    # Self-contained: no scripts, no external resources.
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_run_table_lists_every_run_with_its_summary(env):
    html, data = env["html"], env["json"]
    cols = data["run_columns"]
    assert cols[:2] == ["arm", "run_id"]
    assert {"alpha", "weight_decay"} <= set(cols)  # what varies across the study
    assert "lr" not in cols and "p" not in cols  # what does not vary is not a column
    for c in ("seed", "status", "t_fit", "t_grok", "final_test_acc", "final_weight_norm"):
        assert c in cols
    runs = data["runs"]
    assert len(runs) == N_RUNS
    assert [r["arm"] for r in runs] == ["alpha"] * 9 + ["low_decay"] * 2
    # Sorted by arm, varying values, seed.
    assert [(r["alpha"], r["seed"]) for r in runs[:9]] == [(a, s) for a in (0.5, 1.0, 2.0) for s in (0, 1, 2)]
    assert all(r["status"] == "complete" for r in runs)
    assert all(r["t_grok"] is not None for r in runs[:9])
    assert all(r["t_grok"] is None for r in runs[9:])  # never grokked: null, shown as a dash
    table = html[html.index('id="run-table"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == N_RUNS + 1
    for cfg in env["study"].configs:
        assert cfg.run_id in table
    first = runs[0]
    assert f'<td class="num">{first["final_test_acc"]:.3f}</td>' in table


def test_provenance_block(env):
    html, prov = env["html"], env["json"]["provenance"]
    import grokking_theories

    assert prov["version"] == grokking_theories.__version__
    assert prov["git_commit"] == "golden"  # the override replaced the detected commit
    assert prov["study"] == "report_study" and prov["scale"] == "quick"
    assert prov["total_wall_time_s"] == pytest.approx(N_RUNS * 1.0)
    assert prov["devices"] == ["cpu"]
    assert prov["seeds"] == [0, 1, 2]
    assert prov["run_ids"] == sorted(c.run_id for c in env["study"].configs)
    assert prov["n_finished"] == prov["n_runs"] == N_RUNS
    expected_sha = hashlib.sha256(STUDY_TOML.encode()).hexdigest()
    assert prov["study_sha256"] == expected_sha
    block = html[html.index('<section id="provenance">'):]
    for text in ("golden", grokking_theories.__version__, "<study>/report_study.toml".replace("<", "&lt;")
                 .replace(">", "&gt;"), "11.0 s", expected_sha, "report_study / quick"):
        assert text in block, text
    for rid in prov["run_ids"]:
        assert rid in block


def test_json_is_sorted_and_has_no_nan(env):
    text = env["json_path"].read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["study"] == "report_study" and data["scale"] == "quick"
    assert data["format_version"] == 2
    assert data["families"] == ["planted_a", "planted_b"]
    assert data["run_sets"]["all"] == [c.run_id for c in env["study"].configs]
    assert set(data) >= {"provenance", "headline", "censoring", "setting", "verdicts", "runs"}


def test_verdicts_match_a_direct_evaluation(env):
    """report.json holds exactly what evaluate_families decides (rounded to 6 significant digits)."""
    from grokking_theories.theories import evaluate_families

    study, store = env["study"], env["store"]
    table = store.metrics_table([c.run_id for c in study.configs])
    run_sets = {**study.run_sets(), "all": [c.run_id for c in study.configs]}
    direct = evaluate_families(table, FAMILIES, run_sets)
    got = env["json"]["verdicts"]
    assert [(v["prediction_id"], v["run_set"], v["role"], v["verdict"]) for v in got] == \
           [(v.prediction_id, v.run_set, v.role, v.verdict) for v in direct]
    for g, d in zip(got, direct):
        assert g["notes"] == d.notes
        for name in ("effect_size", "ci_low", "ci_high", "p_value", "p_adjusted"):
            value = getattr(d, name)
            if value is None or not np.isfinite(value):
                assert g[name] is None
            else:
                assert g[name] == pytest.approx(value, rel=1e-5)


# ---------------------------------------------------------------------- determinism, golden, side effects


class _WriteMonitor:
    """Records every path opened for writing through open(), io.open and os.open."""

    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real_open, real_os_open = builtins.open, os.open

        def watched_open(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and any(ch in mode for ch in "wax+"):
                self.paths.append(os.fsdecode(os.fspath(file)))
            return real_open(file, mode, *args, **kwargs)

        def watched_os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND):
                self.paths.append(os.fsdecode(os.fspath(path)))
            return real_os_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", watched_open)
        monkeypatch.setattr(io, "open", watched_open)
        monkeypatch.setattr(os, "open", watched_os_open)


def _tree(root: Path, skip: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root outside ``skip``.

    SQLite's shared-memory file is listed but not hashed: every read transaction updates it.
    """
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and skip not in path.parents:
            rel = str(path.relative_to(root))
            out[rel] = "" if rel.endswith("-shm") else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_rebuild_is_byte_identical_and_writes_nothing_outside_out_dir(env, tmp_path, monkeypatch):
    import jinja2  # noqa: F401  (imports, and their caches, happen before monitoring starts)
    import matplotlib.pyplot  # noqa: F401
    import seaborn  # noqa: F401

    monkeypatch.chdir(tmp_path)  # a relative write would land here
    out = tmp_path / "nested" / "again"
    before = _tree(env["root"], env["out"])
    monitor = _WriteMonitor(monkeypatch)
    html_path, json_path = build_report(env["study"], env["store"], out, families=FAMILIES,
                                        provenance_overrides=PINNED)
    monkeypatch.undo()
    outside = [p for p in monitor.paths if out.resolve() not in Path(os.path.abspath(p)).resolve().parents]
    assert outside == [], f"report wrote outside its folder: {outside}"
    assert monitor.paths, "the write monitor saw nothing: it is not hooked in"
    assert _tree(env["root"], env["out"]) == before, "files next to the store or study changed"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == \
           ["nested/again/report.html", "nested/again/report.json"]
    # Same store -> same bytes, even into another folder.
    assert html_path.read_bytes() == env["html_path"].read_bytes()
    assert json_path.read_bytes() == env["json_path"].read_bytes()


def test_golden_report(env):
    """The rendered report equals the stored golden copy (figures replaced by placeholders)."""
    got_html = text_html(env["html"])
    got_json = env["json_path"].read_text(encoding="utf-8")
    html_file, json_file = GOLDEN_DIR / "report_text.html", GOLDEN_DIR / "report.json"
    if REGENERATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        html_file.write_text(got_html, encoding="utf-8")
        json_file.write_text(got_json, encoding="utf-8")
        pytest.skip("golden files regenerated; review `git diff tests/golden/`")
    assert html_file.is_file() and json_file.is_file(), REGENERATE_HINT
    want_json = json_file.read_text(encoding="utf-8")
    # Verdicts first: the clearest message if a statistic moved.
    got_v = json.loads(got_json)["verdicts"]
    want_v = json.loads(want_json)["verdicts"]
    assert got_v == want_v, f"verdicts changed; {REGENERATE_HINT}"
    assert got_json == want_json, f"report.json changed; {REGENERATE_HINT}"
    assert got_html == html_file.read_text(encoding="utf-8"), f"report.html changed; {REGENERATE_HINT}"


# ---------------------------------------------------------------------- families, figures, overrides


def _planted_family():
    """A family outside the registry with fixed verdicts and two figure functions (one declines)."""
    from grokking_theories.stats import Outcome, Prediction
    from grokking_theories.theories import Family

    def contradicted(table):
        return Outcome(verdict="contradicted", statistic_name="planted", statistic=2.0, effect_name="planted effect",
                       effect_size=2.0, ci_low=1.5, ci_high=2.5, p_value=0.001, p_supports="contradicted",
                       notes="planted")

    def needs_alpha(table):
        return Outcome(verdict="supported", statistic_name="planted", statistic=-1.0, effect_name="planted effect",
                       effect_size=-1.0, ci_low=-1.5, ci_high=-0.5, p_value=0.01, p_supports="supported")

    def final_accuracy(table):
        """Final test accuracy per run."""
        import matplotlib.pyplot as plt

        warnings.warn("planted: drawing warned", RuntimeWarning)
        fig, ax = plt.subplots(figsize=(4, 3))
        last = table[table["metric"] == "test_acc"].groupby("run_id")["value"].last()
        ax.bar(range(len(last)), last.to_numpy())
        return fig

    def declines(table):
        return None

    return Family(
        name="planted", title="A planted family for the report tests",
        explanation="Fixed outcomes, to check colours and figure handling without statistics.",
        references=("none",),
        predictions=(
            Prediction(id="PL-1", family="planted", statement="Always contradicted, whatever the runs.",
                       metrics_needed=("test_acc",), rule="planted rule one", test=contradicted),
            Prediction(id="PL-2", family="planted", statement="Needs an alpha sweep, then supported.",
                       metrics_needed=("test_acc",), config_needed=("alpha",), rule="planted rule two",
                       test=needs_alpha),
        ),
        figures=(final_accuracy, declines),
    )


def test_explicit_families_colours_and_family_figures(env, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    rc_before = dict(matplotlib.rcParams)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        html_path, json_path = build_report(env["study"], env["store"], tmp_path, families=[_planted_family()],
                                            provenance_overrides=PINNED)
    html = html_path.read_text(encoding="utf-8")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert plt.get_fignums() == open_before, "a family figure was left open"
    assert dict(matplotlib.rcParams) == rc_before, "the report changed the caller's matplotlib style"
    cells = _cells(html)
    assert set(cells) == {(p, r) for p in ("PL-1", "PL-2") for r in RUN_SETS}  # only the families passed
    assert "S1" not in {v["prediction_id"] for v in data["verdicts"]}
    assert all(cells[("PL-1", r)] == "contradicted" for r in RUN_SETS)
    assert cells[("PL-2", "alpha")] == cells[("PL-2", "all")] == "supported"
    # alpha does not vary within low_decay: the prediction cannot be answered there.
    assert cells[("PL-2", "low_decay")] == "inconclusive"
    low = next(v for v in data["verdicts"] if v["prediction_id"] == "PL-2" and v["run_set"] == "low_decay")
    assert "does not vary" in low["notes"] and "does not vary" in html
    keys = [f["key"] for f in data["figures"]]
    assert keys == ["grokking:alpha", "grokking:low_decay", "weight_norm", "planted:final_accuracy"]
    assert len(IMG.findall(html)) == 4  # the declining figure function is skipped
    assert "Final test accuracy per run. (Note: numerical warning while drawing: RuntimeWarning: planted: " \
           "drawing warned.)" in html
    heads = {h["id"]: h["verdict"] for h in data["headline"]}
    assert heads == {"PL-1": "contradicted", "PL-2": "supported"}
    assert "A planted family for the report tests" in html and "Fixed outcomes" in html


def test_unknown_provenance_override_is_refused(env, tmp_path):
    with pytest.raises(ValueError, match="git_comit"):
        collect_report_data(env["study"], env["store"], families=[], provenance_overrides={"git_comit": "x"})


def test_missing_runs_are_listed_and_not_evaluated(env, tmp_path):
    """A study asking for runs the store lacks: they appear as 'not in store', the rest is evaluated."""
    from grokking_theories.studies import load_study

    path = tmp_path / "bigger.toml"
    path.write_text(STUDY_TOML.replace("seeds = [0, 1]", "seeds = [0, 1, 7]"))
    study = load_study(str(path), "quick")
    data = collect_report_data(study, env["store"], families=[], provenance_overrides=PINNED)
    assert isinstance(data, ReportData)
    missing = [r for r in data.runs if r["status"] == "not in store"]
    assert [(r["arm"], r["seed"]) for r in missing] == [("low_decay", 7)]
    assert missing[0]["t_grok"] is None and missing[0]["device"] is None
    assert data.provenance["n_runs"] == N_RUNS + 1 and data.provenance["n_finished"] == N_RUNS
    assert len(data.finished) == N_RUNS
    low = next(a for a in data.censoring.arms if a.arm == "low_decay")
    assert (low.n_runs, low.n_finished, low.n_censored) == (3, 2, 2)
    assert "1 run(s) not finished" in low.text()


# ---------------------------------------------------------------------- pieces


def test_seed_mean_holds_a_stopped_seed_at_its_last_value():
    from grokking_theories.plotting import seed_mean

    long = (np.array([1.0, 10.0, 100.0]), np.array([0.0, 0.5, 1.0]))
    short = (np.array([1.0, 10.0]), np.array([0.0, 1.0]))
    grid, mean = seed_mean([long, short])
    assert grid.tolist() == [1.0, 10.0, 100.0]
    assert mean.tolist() == [0.0, 0.75, 1.0]  # the short seed stays at 1.0 after step 10


def test_hue_groups_follow_the_varying_columns(env):
    from grokking_theories.report.figures import _groups

    table = env["store"].metrics_table([c.run_id for c in env["study"].configs])
    alpha = env["study"].arms[0]
    groups, _ = _groups(table, [c.run_id for c in alpha.configs], ["alpha"], "alpha")
    assert [label for label, _ in groups] == ["alpha=0.5", "alpha=1", "alpha=2"]
    assert all(len(ids) == 3 for _, ids in groups)  # three seeds per colour
    single, _ = _groups(table, [c.run_id for c in env["study"].arms[1].configs], [], "low_decay")
    assert [label for label, _ in single] == ["low_decay"] and len(single[0][1]) == 2


def test_git_state_outside_a_checkout(tmp_path):
    from grokking_theories.report.provenance import _git_state

    assert _git_state(tmp_path) == ("none", None)
    commit, dirty = _git_state(Path(__file__).resolve().parents[1] / "grokking_theories")
    assert commit == "none" or re.fullmatch(r"[0-9a-f]{40}", commit)


# ---------------------------------------------------------------------- probes: stored, not recomputed


PROBE_STUDY_TOML = """\
description = "Report test: a family that reads a stored probe"
families = ["probed"]

[quick]
seeds = [0, 1, 2, 3]
base = { op = "add", p = 11, train_frac = 0.5, arch = "mlp", width = 16, lr = 1e-2, weight_decay = 1.0, max_steps = 3000, stop_after_grok = 300, log_points = 20, log_every = 100, checkpoints = 8 }
"""


class _ProbeSpy:
    """A stub probe compute: the run's last checkpoint step (one row), counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, config, checkpoint, logged):
        import pandas as pd

        self.calls += 1
        last = int(checkpoint["steps"][-1])
        return pd.DataFrame({"step": [last], "metric": ["stub_last"], "value": [float(last)]})


@pytest.fixture
def probed(tmp_path, monkeypatch):
    """A store whose runs kept (tiny, hand-made) checkpoints, a registered stub probe, and a family declaring it."""
    import dataclasses

    import torch

    from grokking_theories.probes import stage
    from grokking_theories.studies import load_study
    from grokking_theories.theories.synthetic import synthetic_table

    spy = _ProbeSpy()
    probe = stage.Probe(name="stub_report", version=1, metrics=("stub_last",), compute=spy)
    stage.get_probe("flips")  # the builtin probes register before the registry is patched
    monkeypatch.setitem(stage.PROBES, probe.name, probe)
    seen = []

    def reads_probe(table) -> Outcome:
        runs = table.loc[table["metric"] == "stub_last", "run_id"].nunique()
        seen.append(runs)
        return Outcome(verdict="inconclusive", test="planted", notes=f"{runs} runs with stub_last")

    family = Family(name="probed", title="A family that reads a probe", study="report_study",
                    explanation="Reads the stored rows of a stub probe.", references=("none",),
                    probes=("stub_report",),
                    predictions=(Prediction(id="PP1", family="probed", statement="Reads a probe metric.",
                                            rule="planted: inconclusive, counting runs", test=reads_probe,
                                            metrics_needed=("stub_last",)),))
    path = tmp_path / "report_study.toml"
    path.write_text(PROBE_STUDY_TOML)
    study = load_study(str(path), "quick")
    table = synthetic_table(study.configs, seed=0)
    store_root = tmp_path / "store"
    with RunStore(store_root) as store:
        for i, cfg in enumerate(study.configs):
            rows = table[table["run_id"] == cfg.run_id][["step", "metric", "value"]]
            ckpt = None if i == 0 else {"steps": torch.tensor([0, 10 * i]), "params": {"w": torch.ones(2, 3)}}
            store.write_result(cfg, rows, checkpoint=ckpt, summary=_summary(rows), wall_time=1.0, device="cpu")
    return {"study": study, "store_root": store_root, "family": family, "probe": probe, "spy": spy, "seen": seen,
            "path": path, "with_version": lambda v: dataclasses.replace(probe, version=v)}


def test_report_runs_declared_probes_once_and_reads_them_from_the_store(probed):
    study, family, spy = probed["study"], probed["family"], probed["spy"]
    n = len(study.configs)
    with RunStore(probed["store_root"]) as store:
        collect_report_data(study, store, families=[family], provenance_overrides=PINNED)
        assert spy.calls == n - 1  # every run with a checkpoint, once
        assert probed["seen"][0] == n - 1  # and the prediction read the stored rows
        state = store.probe_state()
        assert set(state) == {(c.run_id, "stub_report") for c in study.configs[1:]}
        collect_report_data(study, store, families=[family], provenance_overrides=PINNED)
        assert spy.calls == n - 1  # a second report computes nothing
    with RunStore(probed["store_root"], readonly=True) as reader:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # everything is stored: a read-only report has nothing to say
            collect_report_data(study, reader, families=[family], provenance_overrides=PINNED)
    assert spy.calls == n - 1 and probed["seen"][-1] == n - 1


def test_readonly_report_says_which_probe_rows_are_missing(probed):
    from grokking_theories.probes.stage import ProbeRowsMissingWarning

    study, family = probed["study"], probed["family"]
    with RunStore(probed["store_root"], readonly=True) as reader:
        with pytest.warns(ProbeRowsMissingWarning, match=r"read-only and lacks current rows of probe 'stub_report' "
                                                         r"for 3 of 4 run\(s\).*as a writer"):
            data = collect_report_data(study, reader, families=[family], provenance_overrides=PINNED)
    assert probed["spy"].calls == 0 and probed["seen"] == []  # nothing computed; the metric is missing
    assert "missing metric" in data.headline_verdict("PP1").notes


def test_report_subcommand_computes_missing_probe_rows_with_a_writer(probed, monkeypatch, capsys):
    """`study report`: read-only when every probe row is stored; a writer first when some are missing;
    a clear warning when another driver holds the store."""
    import grokking_theories.theories as theories
    from grokking_theories.probes import stage
    from grokking_theories.study import main

    monkeypatch.setattr(theories, "get_family", lambda name: probed["family"])
    out = probed["store_root"].parent / "out"
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"path": str(probed["path"]), "scale": "quick",
                                                "store": str(probed["store_root"])}))
    assert main(["report", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "probes: 3 computed, 0 reused, 1 runs without checkpoints" in printed.out
    assert probed["spy"].calls == 3 and (out / "report.json").is_file()
    assert main(["report", "--out", str(out)]) == 0  # all stored: read-only, nothing computed
    assert probed["spy"].calls == 3 and "probes:" not in capsys.readouterr().out
    monkeypatch.setitem(stage.PROBES, "stub_report", probed["with_version"](2))
    with RunStore(probed["store_root"]):  # another driver holds the store
        assert main(["report", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "in use by another driver" in err and "lacks current rows of probe 'stub_report' for 3 of 4" in err
    assert probed["spy"].calls == 3
    data = json.loads((out / "report.json").read_text())
    assert next(v for v in data["verdicts"] if v["prediction_id"] == "PP1")["notes"].startswith("missing metric")
