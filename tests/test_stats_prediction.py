"""Prediction / Verdict machinery, Holm re-decision, and calibration of a verdict rule."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from grokking_theories.stats import (
    Design,
    InsufficientDataError,
    Outcome,
    Prediction,
    Verdict,
    VerdictTable,
    adjust_verdicts,
    decide_sign,
    directional_outcome,
    equivalence_outcome,
    grokking_times,
    loglog_slope,
    slope_outcome,
)

WDS = np.array([0.03, 0.1, 0.3, 1.0, 3.0])
BUDGET = 200_000
# log-spaced logging grid (1.5 % resolution), like the trainer's dense-early schedule
STEPS = np.unique(np.round(np.logspace(0, np.log10(BUDGET), 300)).astype(int))


def wd_table(exponent=-1.0, seeds=3, noise=0.1, seed=0):
    """Tidy table where t_grok = 2000 * wd**exponent * lognormal noise, t_fit = 200."""
    rng = np.random.default_rng(seed)
    frames = []
    for wd in WDS:
        for s in range(seeds):
            t_grok = 2000 * wd**exponent * np.exp(rng.normal(0, noise))
            steps = STEPS
            run_id = f"wd{wd}-s{s}"
            for metric, values in (
                ("train_acc", np.where(steps >= 200, 1.0, 0.1)),
                ("test_acc", np.where(steps >= t_grok, 1.0, 0.05)),
            ):
                frames.append(pd.DataFrame({
                    "run_id": run_id, "status": "done", "op": "add", "p": 59, "weight_decay": wd,
                    "max_steps": BUDGET, "seed": s, "step": steps, "metric": metric, "value": values,
                }))
    return pd.concat(frames, ignore_index=True)


def wd_slope_test(table):
    g = grokking_times(table)
    g = g[~g.grok_censored]  # never-grokked runs are censored, not observed
    return slope_outcome(g.weight_decay, g.t_grok, "negative", statistic_name="slope of log t_grok on log wd")


WD_PREDICTION = Prediction(
    id="WD-1",
    family="weight_decay",
    statement="Grokking time falls with weight decay (log-log slope < 0).",
    metrics_needed=("train_acc", "test_acc"),
    config_needed=("weight_decay",),
    rule="two-sided t-test of the slope at 5 %: supported if below 0, contradicted if above 0",
    test=wd_slope_test,
)


def test_evaluate_supported_on_planted_inverse_law():
    v = WD_PREDICTION.evaluate(wd_table(), run_set="wd-sweep")
    assert v.verdict == "supported"
    assert (v.prediction_id, v.family, v.run_set) == ("WD-1", "weight_decay", "wd-sweep")
    assert v.rule == WD_PREDICTION.rule and v.statement == WD_PREDICTION.statement
    assert v.effect_size == pytest.approx(-1.0, abs=0.1) and v.ci_high < 0
    assert v.p_value < 1e-6 and v.p_supports == "supported" and v.p_adjusted is None
    assert v.n_runs == 15 and v.confidence == pytest.approx(0.95)
    assert v.role == "headline" and v.test.startswith("OLS t-test")
    d = v.to_dict()
    assert d["verdict"] == "supported" and d["prediction_id"] == "WD-1" and "ci_low" in d


def test_evaluate_contradicted_on_planted_opposite_law():
    v = WD_PREDICTION.evaluate(wd_table(exponent=+0.5))
    assert v.verdict == "contradicted" and v.ci_low > 0 and v.p_supports == "contradicted"


def test_evaluate_missing_metric_is_inconclusive_with_note():
    table = wd_table()
    table = table[table.metric != "test_acc"]
    v = WD_PREDICTION.evaluate(table)
    assert v.verdict == "inconclusive"
    assert "test_acc" in v.notes and "missing metric" in v.notes
    assert np.isnan(v.statistic) and v.p_value is None and v.n_runs == 15


def test_evaluate_missing_or_constant_config_is_inconclusive():
    table = wd_table()
    v = WD_PREDICTION.evaluate(table.drop(columns="weight_decay"))
    assert v.verdict == "inconclusive" and "weight_decay" in v.notes
    v = WD_PREDICTION.evaluate(table[table.weight_decay == 1.0])
    assert v.verdict == "inconclusive" and "does not vary" in v.notes
    v = WD_PREDICTION.evaluate(table.iloc[:0])
    assert v.verdict == "inconclusive" and "empty" in v.notes


def test_evaluate_insufficient_data_becomes_inconclusive_but_bugs_propagate():
    def needs_more(table):
        raise InsufficientDataError("only 2 runs grokked")

    def pred(pid, test):
        return Prediction(id=pid, family="fourier", statement="s", metrics_needed=("test_acc",), rule="r", test=test)

    v = pred("X-1", needs_more).evaluate(wd_table())
    assert v.verdict == "inconclusive" and "only 2 runs grokked" in v.notes

    def buggy(table):
        raise KeyError("typo")

    with pytest.raises(KeyError):
        pred("X-2", buggy).evaluate(wd_table())
    with pytest.raises(TypeError):
        pred("X-3", lambda t: 3.0).evaluate(wd_table())


def test_test_function_may_return_a_dict():
    p = Prediction(id="D-1", family="double_descent", statement="s", metrics_needed=("test_acc",), rule="r",
                   test=lambda t: {"verdict": "supported", "statistic": 2.0, "p_value": 0.01,
                                   "p_supports": "supported"})
    v = p.evaluate(wd_table())
    assert v.verdict == "supported" and v.statistic == 2.0 and v.p_value == 0.01


def test_invalid_verdict_strings_rejected():
    with pytest.raises(ValueError, match="verdict"):
        Outcome(verdict="maybe")
    with pytest.raises(ValueError, match="p_supports"):
        Outcome(verdict="inconclusive", p_supports="yes")
    with pytest.raises(TypeError):  # keyword-only: twelve floats cannot be swapped by position
        Outcome("supported", "t-test")


def test_a_decided_verdict_must_rest_on_its_own_p_value():
    with pytest.raises(ValueError, match="must rest on a p-value"):
        Outcome(verdict="supported", ci_low=-2.0, ci_high=-1.0)  # an interval alone decides nothing
    with pytest.raises(ValueError, match="p_supports='contradicted'"):
        Outcome(verdict="contradicted", p_value=0.01, p_supports="supported")
    assert Outcome(verdict="supported", p_value=0.01, p_supports="supported").verdict == "supported"


def test_summary_is_fixed_width_and_complete():
    v = WD_PREDICTION.evaluate(wd_table(), run_set="wd-sweep")
    text = v.summary()
    assert "WD-1" in text and "SUPPORTED" in text and "wd-sweep" in text and "Rule:" in text
    assert max(len(line) for line in text.splitlines()) <= 78


def make_verdict(pid, p, verdict="supported", p_supports="supported"):
    return Verdict(prediction_id=pid, family="fam", statement="stmt", p_value=p, verdict=verdict,
                   p_supports=p_supports)


def test_adjust_verdicts_holm_redecides_every_decided_verdict():
    vs = [
        make_verdict("A", 0.01),
        make_verdict("B", 0.04),
        make_verdict("C", 0.03, verdict="contradicted", p_supports="contradicted"),
        make_verdict("D", None, verdict="inconclusive", p_supports=None),  # design absent: no p, not in the family
        make_verdict("E", 0.02, verdict="inconclusive", p_supports="supported"),  # tested, undecided: in the family
        make_verdict("F", 0.001, verdict="contradicted", p_supports="contradicted"),
    ]
    out = {v.prediction_id: v for v in adjust_verdicts(vs, alpha=0.05)}
    # family of 5 p-values: sorted 0.001, 0.01, 0.02, 0.03, 0.04 -> x5, x4, x3, x2, x1, cumulative max
    assert out["F"].p_adjusted == pytest.approx(0.005)
    assert out["A"].p_adjusted == pytest.approx(0.04)
    assert out["E"].p_adjusted == pytest.approx(0.06)
    assert out["C"].p_adjusted == pytest.approx(0.06)
    assert out["B"].p_adjusted == pytest.approx(0.06)
    assert out["A"].verdict == "supported" and out["F"].verdict == "contradicted"
    # a contradiction is demoted exactly like a support: one calculus for both directions
    assert out["B"].verdict == out["C"].verdict == "inconclusive"
    assert "Holm" in out["B"].notes and "was 'contradicted'" in out["C"].notes
    assert out["D"].p_adjusted is None and out["E"].verdict == "inconclusive"
    assert vs[1].verdict == "supported"  # inputs untouched


def test_design_selects_its_runs_and_says_when_absent():
    table = wd_table()
    table["lr"] = np.where(table["seed"] == 2, 3e-3, 1e-3)  # seed 2 at another lr
    design = Design(runs="weight_decay > 0.05", hold=("lr",), levels={"weight_decay": 3}, min_seeds=2)
    sub, problems = design.select(table)
    assert problems == []
    assert set(sub["lr"]) == {1e-3} and sub["weight_decay"].min() > 0.05 and sub["run_id"].nunique() == 8
    _, problems = Design(levels={"weight_decay": 3}, min_seeds=4).select(table)
    assert problems and "primary design absent" in problems[0]
    # a preferred level is held whatever the run counts (seed 2's lr has a third of the runs) ...
    sub, _ = Design(hold=("lr",), prefer={"lr": (3e-3,)}).select(table)
    assert set(sub["lr"]) == {3e-3}
    # ... and the most-runs rule chooses only when no preferred level is present
    sub, _ = Design(hold=("lr",), prefer={"lr": (1.0,)}).select(table)
    assert set(sub["lr"]) == {1e-3}
    with pytest.raises(ValueError, match="does not hold"):
        Design(prefer={"lr": (1e-3,)})
    _, problems = Design(runs="weight_decay > 100").select(table)
    assert problems and "no run matches" in problems[0]
    _, problems = Design(runs="no_such_column == 1").select(table)
    assert problems and "no_such_column" in problems[0]
    pred = Prediction(id="WD-2", family="weight_decay", statement="s", rule="r", test=wd_slope_test,
                      metrics_needed=("train_acc", "test_acc"), design=Design(runs="weight_decay > 100"))
    v = pred.evaluate(table)
    assert v.verdict == "inconclusive" and "primary design absent" in v.notes and v.p_value is None
    assert v.design == "weight_decay > 100"


def test_verdict_table_frame_and_summary():
    table = VerdictTable([make_verdict("A", 0.01), make_verdict("B", 0.04), make_verdict("C", 0.5, "inconclusive")])
    adj = table.adjusted(0.05)
    frame = adj.to_frame()
    assert list(frame.prediction_id) == ["A", "B", "C"]
    assert {"verdict", "p_value", "p_adjusted", "rule", "notes"} <= set(frame.columns)
    assert frame.p_adjusted.tolist() == pytest.approx([0.03, 0.08, 0.5])
    assert {"role", "design", "test"} <= set(frame.columns)
    assert adj.counts() == {"supported": 1, "contradicted": 0, "inconclusive": 2}
    text = adj.summary()
    assert "supported: 1" in text and "inconclusive: 2" in text and len(adj) == 3


def test_decide_sign():
    assert decide_sign(-2, -1, "negative") == "supported"
    assert decide_sign(1, 2, "negative") == "contradicted"
    assert decide_sign(-1, 1, "negative") == "inconclusive"
    assert decide_sign(1, 2, "positive") == "supported"
    assert decide_sign(np.nan, 1, "positive") == "inconclusive"
    assert decide_sign(-0.5, -0.2, "positive", null=-1.0) == "supported"


# ---------------------------------------------------------------- calibration

def binomial_band(n, p, level=0.999):
    lo, hi = stats.binom.interval(level, n, p)
    return int(lo), int(hi)


def test_calibration_false_supported_rate_of_the_ci_rule():
    # Slope-0 data; rule "slope is negative" is supported when the upper limit of the
    # two-sided 90% CI is < 0, i.e. a one-sided test at alpha = 0.05.
    rng = np.random.default_rng(2024)
    x = np.logspace(-2, 1, 15)
    n_draws = 2000
    supported = sum(
        loglog_slope(x, np.exp(rng.normal(0, 0.3, x.size)), null_values=(0.0,), alpha=0.10).ci_high < 0
        for _ in range(n_draws)
    )
    lo, hi = binomial_band(n_draws, 0.05)  # ~[69, 133]; a 95%-CI rule (2.5 %) would give ~50
    assert lo <= supported <= hi, supported


def test_calibration_through_prediction_evaluate():
    # The whole pipeline (tidy table -> grokking_times -> slope_outcome -> verdict) under a
    # planted null (t_grok independent of weight decay): false 'supported' ~ alpha = 0.05.
    n_draws = 200
    supported = contradicted = 0
    for i in range(n_draws):
        v = WD_PREDICTION.evaluate(wd_table(exponent=0.0, seeds=2, noise=0.4, seed=1000 + i))
        supported += v.verdict == "supported"
        contradicted += v.verdict == "contradicted"
    lo, hi = binomial_band(n_draws, 0.05)  # ~[2, 21]
    assert lo <= supported <= hi, supported
    assert lo <= contradicted <= hi, contradicted  # symmetric rule, symmetric error


def test_directional_outcome_decides_both_ways_on_one_two_sided_test():
    sup = directional_outcome(estimate=-1.0, se=0.2, df=10, expected="negative", test="t", statistic_name="b")
    con = directional_outcome(estimate=1.0, se=0.2, df=10, expected="negative", test="t", statistic_name="b")
    inc = directional_outcome(estimate=-0.1, se=0.2, df=10, expected="negative", test="t", statistic_name="b")
    assert (sup.verdict, con.verdict, inc.verdict) == ("supported", "contradicted", "inconclusive")
    assert sup.p_value == pytest.approx(2 * stats.t(10).cdf(-5.0))
    assert sup.ci_high < 0 < con.ci_low and inc.ci_low < 0 < inc.ci_high  # the interval agrees with the test


def test_equivalence_outcome_supports_only_when_tost_rejects():
    kw = dict(df=20, target=-1.0, margin=0.3, test="TOST", statistic_name="slope")
    assert equivalence_outcome(estimate=-1.0, se=0.05, **kw).verdict == "supported"
    # a wide interval around -1 is NOT support: failing to reject is not evidence
    wide = equivalence_outcome(estimate=-1.0, se=0.5, **kw)
    assert wide.verdict == "inconclusive" and wide.p_value > 0.05
    out = equivalence_outcome(estimate=0.0, se=0.1, **kw)
    assert out.verdict == "contradicted" and out.p_value == pytest.approx(stats.t(20).sf((0.0 + 0.7) / 0.1))
    sup = equivalence_outcome(estimate=-1.1, se=0.05, **kw)
    assert sup.p_value == pytest.approx(stats.t(20).sf((-1.1 + 1.3) / 0.05))


@pytest.mark.parametrize("boundary", [-1.3, -0.7])
def test_equivalence_outcome_false_support_at_the_margin_is_at_most_alpha(boundary):
    rng = np.random.default_rng(7)
    n, df, se = 4000, 13, 0.1
    est = boundary + se * rng.standard_t(df, n)
    hits = sum(equivalence_outcome(estimate=e, se=se, df=df, target=-1.0, margin=0.3, test="TOST",
                                   statistic_name="slope").verdict == "supported" for e in est)
    assert hits / n <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / n)


def test_table_facts_select_the_same_rows_as_the_long_table():
    """Deciding a design on one row per run (TableFacts.runs) selects exactly the long table's rows, for every
    shipped prediction's design on a planted table of the shipped quick studies' configs."""
    from grokking_theories.stats import TableFacts
    from grokking_theories.studies import load_study
    from grokking_theories.theories import all_families
    from grokking_theories.theories.planted import table_of_runs

    configs = load_study("all").configs  # every shipped quick study's runs
    steps = np.array([1.0, 10.0, 100.0])
    full = table_of_runs([(c, {"test_acc": (steps, np.array([0.0, 0.5, 1.0])),
                               "weight_norm": (steps, np.array([np.nan, np.nan, np.nan]))}) for c in configs])
    # the whole table, and a filtered one whose index has gaps (as a run set's rows of a composite study do)
    for table in (full, full[full["weight_decay"] > 0.5]):
        facts = TableFacts.of(table)
        assert facts.metrics == {"test_acc", "weight_norm"} and facts.finite == {"test_acc"}
        assert len(facts.runs) == table["run_id"].nunique() and "value" not in facts.runs.columns
        for family in all_families():
            for p in family.predictions:
                long_rows, long_problems = p.design.select(table)
                fast_rows, fast_problems = p.design.select(table, facts=facts)
                assert fast_problems == long_problems, p.id
                assert fast_rows.index.equals(long_rows.index), p.id
                assert p.missing(table, facts=facts) == p.missing(table), p.id
                assert bool(p.answerable(table, facts=facts)) == bool(p.design_rows(table)[1]), p.id
    with pytest.raises(ValueError, match="another table"):
        family.predictions[0].design.select(full, facts=facts)


def test_design_rows_from_facts_equal_the_long_table_s():
    """design_rows with the run set's facts (the design's facts derived from them, TableFacts.of_runs) gives the
    rows and reasons it gives without, on a table whose runs differ in the metrics they have and in finiteness."""
    from grokking_theories.stats import TableFacts
    from grokking_theories.studies import load_study
    from grokking_theories.theories import all_families
    from grokking_theories.theories.planted import table_of_runs

    configs = load_study("all").configs
    steps = np.array([1.0, 10.0, 100.0])
    runs = []
    for i, c in enumerate(configs):
        series = {"test_acc": (steps, np.array([0.0, 0.5, 1.0]) if i % 3 else np.full(3, np.nan))}
        if i % 2:
            series["weight_norm"] = (steps, np.array([1.0, 2.0, 3.0]))
        runs.append((c, series))
    table = table_of_runs(runs)
    facts = TableFacts.of(table)
    some = facts.runs.iloc[::5]
    derived, direct = facts.of_runs(some, facts.rows_of(some["run_id"])), TableFacts.of(facts.rows_of(some["run_id"]))
    assert (derived.metrics, derived.finite) == (direct.metrics, direct.finite)
    assert derived.runs_with == direct.runs_with and derived.runs_with_finite == direct.runs_with_finite
    for family in all_families():
        for p in family.predictions:
            # the reference: the table's reasons, else the design chosen on the long table and the reasons of
            # its rows read from those rows
            slow_problems = p.missing(table)
            slow_rows = table
            if not slow_problems:
                slow_rows, slow_problems = p.design.select(table)
                slow_problems = slow_problems or p.missing(slow_rows)
            fast_rows, fast_problems = p.design_rows(table, facts=facts)
            assert fast_problems == slow_problems and fast_rows.index.equals(slow_rows.index), p.id
    with pytest.raises(ValueError, match="another table"):
        p.design_rows(table.iloc[1:], facts=facts)


def test_a_filter_on_a_per_row_column_falls_back_to_the_long_table():
    from grokking_theories.stats import TableFacts

    table = wd_table()
    facts = TableFacts.of(table)
    design = Design(runs="step >= 2")
    fast, problems = design.select(table, facts=facts)
    assert problems == [] and fast.index.equals(table.query("step >= 2").index)
