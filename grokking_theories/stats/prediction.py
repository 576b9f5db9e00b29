"""Pre-registered predictions and their verdicts.

A :class:`Prediction` fixes, before any data is seen, what it needs from the
tidy table, the statistic it computes and the rule that turns the statistic
into 'supported', 'contradicted' or 'inconclusive'. :meth:`Prediction.evaluate`
applies it to one table and returns a :class:`Verdict`; a table that lacks
what the prediction needs gives an 'inconclusive' verdict saying what is
missing, never an exception, so one bad sweep cannot sink a whole report.
:func:`adjust_verdicts` then applies Holm's correction across all verdicts.
"""
from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Optional

import numpy as np
import pandas as pd

from ._common import REQUIRED_COLUMNS, InsufficientDataError
from ..levels import ALPHA, CONFIDENCE
from .hypothesis_tests import holm
from .regression import loglog_slope

__all__ = [
    "VERDICTS",
    "Outcome",
    "Verdict",
    "Prediction",
    "VerdictTable",
    "adjust_verdicts",
    "decide_sign",
    "directional_outcome",
    "equivalence_outcome",
    "slope_outcome",
    "Design",
    "Calibration",
    "ROLES",
]

#: The three possible verdicts.
VERDICTS = ("supported", "contradicted", "inconclusive")
_P_SUPPORTS = ("supported", "contradicted", None)
#: A verdict's role in a report: decided once on its primary design (and in the one Holm family), or a
#: robustness cell on another run set that never changes a headline verdict.
ROLES = ("headline", "secondary")

_NAN = float("nan")


def _check_verdict(verdict: str) -> None:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")


def _check_p_supports(p_supports: Optional[str]) -> None:
    if p_supports not in _P_SUPPORTS:
        raise ValueError(f"p_supports must be one of {_P_SUPPORTS}, got {p_supports!r}")


def _check_decision(verdict: str, p_value: Optional[float], p_supports: Optional[str]) -> None:
    """One decision calculus: a decided verdict rests on a p-value for exactly that decision."""
    if verdict == "inconclusive":
        return
    if p_value is None or not (0.0 <= float(p_value) <= 1.0):
        raise ValueError(f"a {verdict!r} verdict must rest on a p-value in [0, 1] (got {p_value!r}): every "
                         "decision enters the Holm family, so a rule decided by an interval alone is not allowed")
    if p_supports != verdict:
        raise ValueError(f"a {verdict!r} verdict must carry p_supports={verdict!r} (the decision its p-value "
                         f"argues for), got {p_supports!r}")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a prediction's test function returns: the data-dependent part of a verdict.

    Keyword-only: a dozen numbers travel together here, and two of them must
    never be swapped silently by position.

    Attributes
    ----------
    verdict : {'supported', 'contradicted', 'inconclusive'}
        Decision by the prediction's rule, at the unadjusted level.
    test : str
        The test that decided (e.g. ``"log-rank"``, ``"TOST, margin 0.15"``).
    statistic_name : str
        Name of the test statistic (e.g. 'log-log slope of t_grok on wd').
    statistic : float
    effect_name : str
    effect_size : float
        Effect on an interpretable scale (may equal ``statistic``).
    ci_low, ci_high : float
        Confidence interval of the effect.
    confidence : float
        Level of that interval.
    p_value : float or None
        The p-value of the decision. Required for a decided verdict
        (supported or contradicted): "supported" never rests on failing to
        reject, and every decision enters one Holm family.
    p_supports : {'supported', 'contradicted', None}
        Which verdict a *small* ``p_value`` argues for; equals ``verdict``
        when the verdict is decided. For an inconclusive outcome it names
        the decision the reported p was testing for (or None).
    n_runs : int or None
        Runs the statistic used (None: all runs of the table).
    notes : str
    """

    verdict: str
    test: str = ""
    statistic_name: str = ""
    statistic: float = _NAN
    effect_name: str = ""
    effect_size: float = _NAN
    ci_low: float = _NAN
    ci_high: float = _NAN
    confidence: float = CONFIDENCE
    p_value: Optional[float] = None
    p_supports: Optional[str] = None
    n_runs: Optional[int] = None
    notes: str = ""

    def __post_init__(self) -> None:
        _check_verdict(self.verdict)
        _check_p_supports(self.p_supports)
        _check_decision(self.verdict, self.p_value, self.p_supports)


#: Held by every design before its own ``hold``: one task per verdict.
TASK_HELD = ("op",)


@dataclass(frozen=True, kw_only=True)
class Design:
    """The runs a prediction is about, and the least design that can decide it.

    A prediction is decided once, on its primary design: the report applies
    :meth:`select` to every run of the study, and a prediction whose design is
    absent says so (inconclusive, with the reason) instead of borrowing runs
    of another arm.

    Attributes
    ----------
    runs : str
        A filter on config columns, as a :meth:`pandas.DataFrame.query`
        expression (python engine), e.g.
        ``"decay_target == 'zero' and fixed_norm.isna() and weight_decay > 0"``.
        Empty: every run.
    hold : tuple of str
        Config columns held at one level: the selection keeps the level with
        the most runs (ties: the smallest value). E.g. ``("lr",)``: one lr.
        The task (``op``) is always held first (:data:`TASK_HELD`): a verdict
        is about one task, never modular arithmetic and digits pooled
        (``prefer`` may name it without listing it here).
    prefer : mapping of str -> tuple
        For a held column, the levels the prediction is about, in order: the
        first one present is held, whatever the run counts; only when none is
        present does the most-runs rule choose. E.g. ``{"arch": ("transformer",)}``:
        the transformer wherever the table has transformer runs, so adding
        seeds to another arm can never move the headline onto it.
    levels : mapping of str -> int
        Config column -> the least number of distinct values it must take in
        the selection (the sweep the prediction needs).
    min_seeds : int
        The least number of runs at every level of each column in ``levels``.
    about : tuple of str
        The intervention columns of :data:`~grokking_theories.config.PLAIN_OPTIMISER` (``loss_fn``,
        ``orthograd``, ``grokfast``, ``loss_dtype``) the prediction is about. Every other one is held at its plain value
        before anything else, so a StableMax, ⊥Grad or Grokfast run never joins an arm of a prediction
        that is not about it.
    """

    runs: str = ""
    hold: tuple = ()
    prefer: Mapping[str, tuple] = field(default_factory=dict)
    levels: Mapping[str, int] = field(default_factory=dict)
    min_seeds: int = 1
    about: tuple = ()

    def __post_init__(self) -> None:
        from ..config import PLAIN_OPTIMISER

        unheld = set(self.prefer) - set(self.hold) - set(TASK_HELD)
        if unheld:
            raise ValueError(f"prefer names column(s) {sorted(unheld)} that hold does not hold")
        unknown = set(self.about) - set(PLAIN_OPTIMISER)
        if unknown:
            raise ValueError(f"about names column(s) {sorted(unknown)} that are not interventions "
                             f"({', '.join(PLAIN_OPTIMISER)})")

    @property
    def plain(self) -> dict:
        """The intervention columns held at their plain value: those the prediction is not about."""
        from ..config import PLAIN_OPTIMISER

        return {c: v for c, v in PLAIN_OPTIMISER.items() if c not in self.about}

    def describe(self) -> str:
        """The design in words, as the report's 'run filter' column shows it."""
        parts = [self.runs or "every run"]
        if self.about:  # the other interventions are held plain in every design (docs: interventions)
            parts.append(f"about {', '.join(self.about)}; the other interventions plain")
        parts += [f"{c} held at {' or '.join(map(str, self.prefer[c]))} where present, else at its most common level"
                  if c in self.prefer else f"{c} held at its most common level" for c in self.hold]
        parts += [f">= {n} levels of {c}" for c, n in self.levels.items()]
        if self.min_seeds > 1:
            parts.append(f">= {self.min_seeds} runs per level")
        return "; ".join(parts)

    def select(self, table: pd.DataFrame, *, facts: Optional["TableFacts"] = None) -> tuple[pd.DataFrame, list[str]]:
        """The rows of ``table`` in this design, and the reasons the design is absent (empty if present).

        ``facts``: :meth:`TableFacts.of` ``table``. The filter, the held levels and the level counts read config
        columns only, which are constant within a run, so deciding them on one row per run
        (:attr:`TableFacts.runs`) selects the same runs, and the same rows in the same order, as on the long
        table, only much faster; a filter that names a per-row column (step, metric, value) is decided on the
        long table.
        """
        sub, problems, _ = self.select_runs(table, facts=facts)
        return sub, problems

    def select_runs(self, table: pd.DataFrame, *, facts: Optional["TableFacts"] = None
                    ) -> tuple[pd.DataFrame, list[str], Optional[pd.DataFrame]]:
        """:meth:`select`, and the chosen runs (one row each, from ``facts.runs``) when it was decided on them:
        then the rows are whole runs of ``table`` (None: decided on the long table)."""
        if facts is not None and not table.empty:
            if facts.table is not table:
                raise ValueError("select: facts describe another table than the one given (TableFacts.of(table))")
            try:
                chosen, problems = self._select(facts.runs)
            except _FilterColumnMissing:
                pass
            else:
                return facts.rows_of(chosen["run_id"]), problems, chosen
        try:
            sub, problems = self._select(table)
        except _FilterColumnMissing as exc:
            return table.iloc[:0], [str(exc)], None
        return sub, problems, None

    def _select(self, table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        sub = table
        for col, plain in self.plain.items():  # a table (or row) from before the interventions lacks it: plain
            if col in sub.columns and not sub.empty:
                sub = sub[sub[col].isna() | (sub[col] == plain)]
        if self.runs and not sub.empty:
            try:
                sub = sub.query(self.runs, engine="python")
            except (KeyError, NameError, pd.errors.UndefinedVariableError) as exc:
                raise _FilterColumnMissing(
                    f"the run filter {self.runs!r} names a column the table lacks ({exc})") from None
        for col in TASK_HELD + tuple(c for c in self.hold if c not in TASK_HELD):
            if col in TASK_HELD and col not in sub.columns:
                continue  # a table without the column (a hand-built one) has one task
            if col not in sub.columns:
                return sub.iloc[:0], [f"missing config column {col!r} (held at one level)"]
            if not sub.empty:
                present = [v for v in self.prefer.get(col, ()) if (sub[col] == v).any()]
                if present:
                    sub = sub[sub[col] == present[0]]
                    continue
                if col in TASK_HELD and sub[col].nunique() <= 1:
                    continue  # one task already (the common case; a categorical column has no order to take)
                counts = sub.groupby(col, observed=True)["run_id"].nunique()
                sub = sub[sub[col] == min(counts[counts == counts.max()].index.tolist())]
        if sub.empty:
            return sub, [f"primary design absent: no run matches {self.describe()!r}"]
        problems = []
        for col, need in self.levels.items():
            if col not in sub.columns:
                problems.append(f"missing config column {col!r}")
                continue
            per_level = sub.groupby(col)["run_id"].nunique()
            ok = per_level[per_level >= self.min_seeds]
            if len(ok) < need:
                problems.append(f"primary design absent: {len(ok)} level(s) of {col} with >= {self.min_seeds} "
                                f"run(s) each (levels found: {per_level.to_dict()}); the prediction needs {need}")
        return sub, problems


class _FilterColumnMissing(Exception):
    """A design's run filter names a column the table lacks."""


@dataclass(frozen=True, eq=False)
class TableFacts:
    """What the applicability checks read from a tidy table, computed once for many predictions.

    Attributes
    ----------
    metrics : frozenset
        The metrics the table has rows of.
    finite : frozenset
        The metrics with at least one finite value.
    runs : DataFrame
        One row per run (its first row): ``run_id`` and the config columns, constant within a run.
    table : DataFrame
        The table these facts describe (a design selects its rows through :meth:`rows_of`).
    positions : dict
        Run id -> the positions of its rows in ``table``.
    runs_with, runs_with_finite : dict
        Metric -> the runs with a row of it / with a finite value of it.
    """

    metrics: frozenset
    finite: frozenset
    runs: pd.DataFrame
    table: pd.DataFrame = field(repr=False)
    positions: dict = field(repr=False, default_factory=dict)
    runs_with: dict = field(repr=False, default_factory=dict)
    runs_with_finite: dict = field(repr=False, default_factory=dict)

    @classmethod
    def of(cls, table: pd.DataFrame) -> "TableFacts":
        finite = np.isfinite(table["value"].to_numpy(dtype=float))
        per_row = [c for c in ("step", "metric", "value") if c in table.columns]
        runs = table.loc[~table["run_id"].duplicated()].drop(columns=per_row)
        pairs = table[["metric", "run_id"]].assign(finite=finite).drop_duplicates(["metric", "run_id", "finite"])
        runs_with = {m: frozenset(g["run_id"]) for m, g in pairs.groupby("metric", sort=False)}
        runs_with_finite = {m: frozenset(g["run_id"]) for m, g in pairs[pairs["finite"]].groupby("metric", sort=False)}
        return cls(metrics=frozenset(runs_with), finite=frozenset(runs_with_finite), runs=runs, table=table,
                   positions=table.groupby("run_id", sort=False).indices, runs_with=runs_with,
                   runs_with_finite=runs_with_finite)

    def of_runs(self, runs: pd.DataFrame, rows: pd.DataFrame) -> "TableFacts":
        """The facts of ``rows`` = :meth:`rows_of` ``runs["run_id"]`` (every row of those runs), from these
        facts: the same as ``TableFacts.of(rows)`` without reading the rows again. ``runs``: one row per run, as
        :attr:`runs` holds them."""
        ids = set(runs["run_id"])
        runs_with = {m: r & ids for m, r in self.runs_with.items() if not r.isdisjoint(ids)}
        finite = {m: r & ids for m, r in self.runs_with_finite.items() if not r.isdisjoint(ids)}
        return TableFacts(metrics=frozenset(runs_with), finite=frozenset(finite), runs=runs, table=rows,
                          positions={}, runs_with=runs_with, runs_with_finite=finite)

    def rows_of(self, run_ids) -> pd.DataFrame:
        """The table's rows of ``run_ids``, in table order (what ``table[table.run_id.isin(run_ids)]`` gives)."""
        wanted = [self.positions[r] for r in dict.fromkeys(run_ids) if r in self.positions]
        at = np.sort(np.concatenate(wanted)) if wanted else np.array([], dtype=int)
        return self.table.iloc[at]


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """How :mod:`benchmarks.calibration` plants tables for one rule.

    Attributes
    ----------
    plant : callable
        ``plant(configs, scenario, rng) -> tidy table`` for the shipped
        study's run configs; ``scenario`` is ``'null'`` (the predicted effect
        absent), ``'effect'`` (the effect the paper reports) or
        ``'opposite'`` (an effect of that size the other way).
    effect : str
        The planted effect in words and where its size comes from (the
        paper's number, or the smallest effect a researcher would care
        about, stated as such).
    """

    plant: Callable[..., pd.DataFrame]
    effect: str


@dataclass(kw_only=True)
class Verdict:
    """The decision on one prediction for one set of runs (built from an :class:`Outcome`).

    Attributes
    ----------
    prediction_id, family, statement, rule : str
        Identity and rule of the prediction (copied from :class:`Prediction`).
    run_set : str
        Which runs were used ('primary design' for a headline verdict, or an arm's name).
    role : {'headline', 'secondary'}
        Headline verdicts form the report's one multiplicity family;
        secondary cells are robustness views that never change a headline.
    design : str
        The run filter, in words (:meth:`Design.describe`).
    test, statistic_name, statistic, effect_name, effect_size, ci_low, ci_high, confidence,
    p_value, p_supports, notes
        See :class:`Outcome`.
    p_adjusted : float or None
        Holm-adjusted p-value within the verdict's family, set by :func:`adjust_verdicts`.
    n_runs : int
    verdict : {'supported', 'contradicted', 'inconclusive'}
    """

    prediction_id: str
    family: str
    statement: str
    rule: str = ""
    run_set: str = "all"
    role: str = "headline"
    design: str = ""
    verdict: str = "inconclusive"
    test: str = ""
    statistic_name: str = ""
    statistic: float = _NAN
    effect_name: str = ""
    effect_size: float = _NAN
    ci_low: float = _NAN
    ci_high: float = _NAN
    confidence: float = CONFIDENCE
    p_value: Optional[float] = None
    p_adjusted: Optional[float] = None
    p_supports: Optional[str] = None
    n_runs: int = 0
    notes: str = ""

    def __post_init__(self) -> None:
        _check_verdict(self.verdict)
        _check_p_supports(self.p_supports)
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")

    @classmethod
    def from_outcome(cls, prediction: "Prediction", outcome: Outcome, *, run_set: str, role: str,
                     n_runs: int) -> "Verdict":
        """The verdict of ``prediction`` on a run set, carrying every field of ``outcome``."""
        return cls(
            prediction_id=prediction.id, family=prediction.family, statement=prediction.statement,
            rule=prediction.rule, run_set=run_set, role=role, design=prediction.design.describe(),
            verdict=outcome.verdict, test=outcome.test, statistic_name=outcome.statistic_name,
            statistic=float(outcome.statistic), effect_name=outcome.effect_name,
            effect_size=float(outcome.effect_size), ci_low=float(outcome.ci_low), ci_high=float(outcome.ci_high),
            confidence=float(outcome.confidence),
            p_value=None if outcome.p_value is None else float(outcome.p_value),
            p_supports=outcome.p_supports,
            n_runs=int(n_runs if outcome.n_runs is None else outcome.n_runs), notes=outcome.notes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-friendly: floats, str, None)."""
        return dataclasses.asdict(self)

    def summary(self, width: int = 78) -> str:
        """Fixed-width text block in the style of statsmodels' ``summary()``."""
        half = width // 2

        def pair(lk, lv, rk, rv):
            left = f"{lk:<14}{lv}"[:half]
            right = f"{rk:<16}{rv:>{width - half - 16}}"
            return f"{left:<{half}}{right}"

        def fmt(v, spec=".4g"):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "-"
            return format(v, spec)

        conf = f"{100 * self.confidence:.0f}%"
        lines = [
            "=" * width,
            pair("Prediction:", self.prediction_id, "Verdict:", self.verdict.upper()),
            pair("Family:", self.family, "N runs:", str(self.n_runs)),
            pair("Run set:", self.run_set, "p-value:", fmt(self.p_value)),
            pair("Role:", self.role, "Holm p:", fmt(self.p_adjusted)),
            "=" * width,
        ]
        lines += textwrap.wrap("Statement: " + self.statement, width) or ["Statement:"]
        if self.design:
            lines += textwrap.wrap("Runs: " + self.design, width)
        if self.test:
            lines += textwrap.wrap("Test: " + self.test, width)
        lines.append("-" * width)
        col = 13
        lab = width - 3 * col
        lines.append(f"{'':<{lab}}{'value':>{col}}{'[' + conf:>{col}}{'CI]':>{col}}")
        lines.append(f"{(self.statistic_name or 'statistic')[: lab - 1]:<{lab}}{fmt(self.statistic):>{col}}")
        lines.append(
            f"{(self.effect_name or 'effect size')[: lab - 1]:<{lab}}{fmt(self.effect_size):>{col}}"
            f"{fmt(self.ci_low):>{col}}{fmt(self.ci_high):>{col}}"
        )
        lines.append("-" * width)
        lines += textwrap.wrap("Rule: " + (self.rule or "-"), width)
        if self.notes:
            lines += textwrap.wrap("Notes: " + self.notes, width)
        lines.append("=" * width)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _coerce_outcome(result: Any) -> Outcome:
    """Accept an Outcome or a mapping with Outcome's fields from a test function."""
    if isinstance(result, Outcome):
        return result
    if isinstance(result, Mapping):
        names = {f.name for f in dataclasses.fields(Outcome)}
        unknown = set(result) - names
        if unknown:
            raise TypeError(f"test result has unknown field(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return Outcome(**result)
    raise TypeError(f"a prediction's test must return an Outcome or a dict, got {type(result).__name__}")


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """A falsifiable prediction with its primary design and decision rule fixed in advance.

    Attributes
    ----------
    id : str
        Short unique id, e.g. 'W1'.
    family : str
        Theory family ('weight_decay', 'goldilocks', 'sharpness', ...).
    statement : str
        The prediction in words.
    rule : str
        When the verdict is supported / contradicted / inconclusive, with the
        test that decides it.
    test : callable
        ``test(table) -> Outcome`` on the rows of the primary design. May
        raise :class:`InsufficientDataError` -> 'inconclusive'.
    design : Design
        The runs the prediction is about and the least design it needs.
    paper : str
        The paper's own claim and number, stated beside the rule.
    metrics_needed : tuple of str
        Metrics that must be present (with at least one finite value).
    config_needed : tuple of str
        Config columns that must exist *and vary* in the design.
    config_present : tuple of str
        Config columns that must merely exist.
    calibration : Calibration or None
        How the calibration benchmark plants null and effect tables for this rule.
    """

    id: str
    family: str
    statement: str
    rule: str = ""
    test: Optional[Callable[[pd.DataFrame], Any]] = None
    design: Design = field(default_factory=Design)
    paper: str = ""
    metrics_needed: tuple = ()
    config_needed: tuple = ()
    config_present: tuple = ()
    calibration: Optional[Calibration] = None

    def missing(self, table: pd.DataFrame, *, facts: Optional["TableFacts"] = None) -> list[str]:
        """Reasons the table cannot answer this prediction (empty list if it can).

        ``facts``: :meth:`TableFacts.of` ``table``, when the caller asks many predictions about one table.
        """
        problems = []
        base = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if base:
            return [f"table lacks required column(s) {base}"]
        if table.empty:
            return ["table is empty"]
        has, finite = self._metric_facts(table, facts)
        absent = [m for m in self.metrics_needed if m not in has]
        if absent:
            present = facts.metrics if facts is not None else set(pd.unique(table["metric"]).tolist())
            problems.append(f"missing metric(s) {absent} (table has {sorted(present)})")
        for m in self.metrics_needed:
            if m in has and m not in finite:
                problems.append(f"metric {m!r} has no finite value")
        runs = facts.runs if facts is not None else table
        cols = [c for c in (*self.config_needed, *self.config_present) if c not in table.columns]
        if cols:
            problems.append(f"missing config column(s) {cols}")
        for c in self.config_needed:
            if c in table.columns:
                distinct = pd.unique(runs[c].dropna())
                if len(distinct) < 2:
                    shown = [v.item() if hasattr(v, "item") else v for v in list(distinct)[:3]]  # 1.0, not np.float64(1.0)
                    problems.append(
                        f"config column {c!r} does not vary (values: {shown}); the prediction needs a sweep"
                    )
        return problems

    def _metric_facts(self, table: pd.DataFrame, facts: Optional["TableFacts"]) -> tuple[set, set]:
        """(needed metrics the table has, needed metrics with a finite value): from ``facts`` when given, else
        one comparison per needed metric (cheaper than every distinct metric of a long table)."""
        if facts is not None:
            return set(self.metrics_needed) & facts.metrics, set(self.metrics_needed) & facts.finite
        has, finite = set(), set()
        values = table["value"].to_numpy(dtype=float)
        for m in self.metrics_needed:
            rows = (table["metric"] == m).to_numpy()
            if rows.any():
                has.add(m)
                if np.isfinite(values[rows]).any():
                    finite.add(m)
        return has, finite

    def design_rows(self, table: pd.DataFrame, *, facts: Optional["TableFacts"] = None
                    ) -> tuple[pd.DataFrame, list[str]]:
        """The rows of the primary design within ``table``, and why the table cannot answer (empty: it can).

        A run set "has what the prediction needs" when the reasons are empty: the
        table has its metrics and knobs, and its design finds runs there.
        ``facts``: :meth:`TableFacts.of` ``table``, computed once when many predictions ask about one table.
        """
        if facts is not None and facts.table is not table:
            raise ValueError("design_rows: facts describe another table than the one given (TableFacts.of(table))")
        problems = self.missing(table, facts=facts)
        if problems:
            return table, list(problems)
        facts = facts or TableFacts.of(table)
        sub, problems, chosen = self.design.select_runs(table, facts=facts)
        if problems:
            return sub, list(problems)
        # rows that are whole runs of ``table`` have facts that follow from the table's
        return sub, list(self.missing(sub, facts=None if chosen is None else facts.of_runs(chosen, sub)))

    def answerable(self, table: pd.DataFrame, *, facts: "TableFacts") -> list[str]:
        """Why ``table`` cannot answer this prediction (empty: it can), as :meth:`design_rows` decides it, without
        building the design's rows: the design is decided on one row per run, and the design's runs are checked
        for the needed metrics and knobs from ``facts``. For asking many predictions about many run sets."""
        problems = self.missing(table, facts=facts)
        if problems:
            return problems
        try:
            chosen, problems = self.design._select(facts.runs)
        except _FilterColumnMissing:
            return self.design_rows(table, facts=facts)[1]
        if problems:
            return problems
        ids = set(chosen["run_id"])
        absent = [m for m in self.metrics_needed if not ids & facts.runs_with.get(m, frozenset())]
        if absent:
            return [f"missing metric(s) {absent} in the design's runs"]
        problems = [f"metric {m!r} has no finite value" for m in self.metrics_needed
                    if not ids & facts.runs_with_finite.get(m, frozenset())]
        for c in self.config_needed:
            if c in chosen.columns and chosen[c].dropna().nunique() < 2:
                problems.append(f"config column {c!r} does not vary in the design's runs; the prediction needs a sweep")
        return problems

    def evaluate(self, table: pd.DataFrame, run_set: str = "primary design", *, role: str = "headline",
                 facts: Optional["TableFacts"] = None) -> Verdict:
        """Apply the prediction to the runs of its primary design within ``table``.

        Parameters
        ----------
        table : DataFrame
            Tidy long-form table; the prediction's :class:`Design` selects its runs.
        run_set : str
            Label of the runs, copied into the verdict.
        role : {'headline', 'secondary'}
            Copied into the verdict.

        Returns
        -------
        Verdict
            'inconclusive' with a note naming what is missing when the design is
            absent, the table lacks a needed metric/column, a needed knob does
            not vary, or the test raises :class:`InsufficientDataError`.

        Raises
        ------
        TypeError
            If ``table`` is not a DataFrame or the test returns something that
            is not an Outcome/dict (programming errors are not hidden as
            'inconclusive').
        """
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"evaluate expects a pandas DataFrame, got {type(table).__name__}")

        def verdict(outcome: Outcome, n: int) -> Verdict:
            return Verdict.from_outcome(self, outcome, run_set=run_set, role=role, n_runs=n)

        sub, problems = self.design_rows(table, facts=facts)
        n_runs = int(sub["run_id"].nunique()) if "run_id" in sub.columns else 0
        if self.test is None:
            problems.append("prediction has no test function")
        if problems:
            return verdict(Outcome(verdict="inconclusive", notes="; ".join(problems)), n_runs)
        try:
            outcome = _coerce_outcome(self.test(sub))
        except InsufficientDataError as exc:
            return verdict(Outcome(verdict="inconclusive", notes=f"insufficient data: {exc}"), n_runs)
        return verdict(outcome, n_runs)


def adjust_verdicts(verdicts: Iterable[Verdict], alpha: float = ALPHA) -> list[Verdict]:
    """Holm-adjust one family of verdicts and re-decide.

    Parameters
    ----------
    verdicts : iterable of Verdict
        One multiplicity family: a report's headline verdicts (one per
        prediction), or, separately, its secondary cells.
    alpha : float
        Family-wise level.

    Returns
    -------
    list of Verdict
        New Verdict objects (inputs untouched) with ``p_adjusted`` set for
        every verdict with a finite ``p_value``. Every decided verdict rests
        on its p-value (:class:`Outcome` enforces it), so a decided verdict
        whose adjusted p is ``>= alpha`` becomes 'inconclusive', with a note.
    """
    vs = list(verdicts)
    raw = np.array([_NAN if v.p_value is None else float(v.p_value) for v in vs], dtype=float)
    adj = holm(raw)
    out = []
    for v, pa in zip(vs, adj):
        if not np.isfinite(pa):
            out.append(dataclasses.replace(v, p_adjusted=None))
            continue
        new = dataclasses.replace(v, p_adjusted=float(pa))
        if v.verdict != "inconclusive" and pa >= alpha:
            note = f"was '{v.verdict}' at p={v.p_value:.3g}; Holm-adjusted p={pa:.3g} >= {alpha:g}"
            new = dataclasses.replace(new, verdict="inconclusive", notes="; ".join(filter(None, [v.notes, note])))
        out.append(new)
    return out


@dataclass
class VerdictTable:
    """A list of verdicts with tabular and text views.

    Attributes
    ----------
    verdicts : list of Verdict
    """

    verdicts: list = field(default_factory=list)

    def __iter__(self) -> Iterator[Verdict]:
        return iter(self.verdicts)

    def __len__(self) -> int:
        return len(self.verdicts)

    def append(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)

    def adjusted(self, alpha: float = ALPHA) -> "VerdictTable":
        """A new table with :func:`adjust_verdicts` applied."""
        return VerdictTable(adjust_verdicts(self.verdicts, alpha))

    def headline(self) -> "VerdictTable":
        """The headline verdicts only (one per prediction)."""
        return VerdictTable([v for v in self.verdicts if v.role == "headline"])

    def to_frame(self) -> pd.DataFrame:
        """One row per verdict, one column per :class:`Verdict` field."""
        cols = [f.name for f in dataclasses.fields(Verdict)]
        return pd.DataFrame([v.to_dict() for v in self.verdicts], columns=cols)

    def counts(self) -> dict[str, int]:
        """Number of verdicts of each kind."""
        return {k: sum(v.verdict == k for v in self.verdicts) for k in VERDICTS}

    def summary(self, width: int = 100) -> str:
        """Fixed-width table: one line per verdict, then the counts."""

        def fmt(v):
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"

        head = f"{'id':<12}{'run set':<18}{'verdict':<14}{'effect':>10}{'CI low':>10}{'CI high':>10}{'p':>10}{'p (Holm)':>10}{'n':>6}"
        lines = ["=" * width, head, "-" * width]
        for v in self.verdicts:
            lines.append(
                f"{v.prediction_id[:11]:<12}{v.run_set[:17]:<18}{v.verdict:<14}{fmt(v.effect_size):>10}"
                f"{fmt(v.ci_low):>10}{fmt(v.ci_high):>10}{fmt(v.p_value):>10}{fmt(v.p_adjusted):>10}{v.n_runs:>6}"
            )
        lines.append("-" * width)
        lines.append("  ".join(f"{k}: {n}" for k, n in self.counts().items()))
        lines.append("=" * width)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ----------------------------------------------------------------------------
# ready-made decision helpers
# ----------------------------------------------------------------------------


def decide_sign(
    ci_low: float, ci_high: float, expected: Literal["negative", "positive"], null: float = 0.0
) -> str:
    """Verdict from an interval and an expected sign relative to ``null``.

    'supported' if the whole interval lies on the expected side of ``null``,
    'contradicted' if it lies wholly on the other side, 'inconclusive'
    otherwise (including NaN limits).
    """
    if expected not in ("negative", "positive"):
        raise ValueError(f"expected must be 'negative' or 'positive', got {expected!r}")
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "inconclusive"
    below, above = ci_high < null, ci_low > null
    if expected == "negative":
        return "supported" if below else "contradicted" if above else "inconclusive"
    return "supported" if above else "contradicted" if below else "inconclusive"


def _tail(t: float, df: Optional[float], upper: bool) -> float:
    """P(T >= t) (upper) or P(T <= t) of a t (df) or standard normal (df None) variable."""
    from scipy import stats

    dist = stats.norm if df is None or not np.isfinite(df) else stats.t(df)
    return float(dist.sf(t) if upper else dist.cdf(t))


def directional_outcome(
    *,
    estimate: float,
    se: float,
    df: Optional[float],
    expected: Literal["negative", "positive"],
    null: float = 0.0,
    alpha: float = ALPHA,
    test: str,
    statistic_name: str,
    effect_name: str = "",
    n_runs: Optional[int] = None,
    notes: str = "",
) -> Outcome:
    """A directional prediction ("the effect is positive") decided by one two-sided test.

    Supported when the two-sided p of ``estimate = null`` is below ``alpha``
    and the estimate lies on the expected side; contradicted when it is below
    ``alpha`` on the other side; else inconclusive. The interval is the
    two-sided ``1 - alpha`` t (``df``) or Wald (``df`` None) interval, so the
    verdict and the interval always agree.
    """
    if not (np.isfinite(estimate) and np.isfinite(se) and se > 0):
        raise InsufficientDataError(f"{statistic_name}: no finite estimate with a positive standard error")
    if expected not in ("negative", "positive"):
        raise ValueError(f"expected must be 'negative' or 'positive', got {expected!r}")
    from scipy import stats

    t = (estimate - null) / se
    p = 2 * min(_tail(t, df, True), _tail(t, df, False))
    q = stats.norm.ppf(1 - alpha / 2) if df is None or not np.isfinite(df) else stats.t(df).ppf(1 - alpha / 2)
    lo, hi = estimate - q * se, estimate + q * se
    on_expected = (estimate < null) if expected == "negative" else (estimate > null)
    direction = "supported" if on_expected else "contradicted"
    return Outcome(verdict=direction if p < alpha else "inconclusive", test=test, statistic_name=statistic_name,
                   statistic=float(t), effect_name=effect_name or statistic_name, effect_size=float(estimate),
                   ci_low=float(lo), ci_high=float(hi), confidence=1 - alpha, p_value=float(min(p, 1.0)),
                   p_supports=direction, n_runs=n_runs, notes=notes)


def equivalence_outcome(
    *,
    estimate: float,
    se: float,
    df: Optional[float],
    target: float,
    margin: float,
    alpha: float = ALPHA,
    test: str,
    statistic_name: str,
    effect_name: str = "",
    n_runs: Optional[int] = None,
    notes: str = "",
) -> Outcome:
    """A "the effect equals ``target``" prediction decided by equivalence, never by failing to reject.

    Supported when TOST shows ``|effect - target| < margin`` (both one-sided
    p below ``alpha``; reported p = the larger one); contradicted when a
    one-sided test shows the effect lies beyond ``target + margin`` or below
    ``target - margin`` (reported p = the smaller; the two alternatives are
    disjoint, so each side is an ``alpha``-level test and the pair exceeds
    ``alpha`` only by the other side's negligible rejection probability at
    the boundary); otherwise inconclusive. The interval is the ``1 - 2
    alpha`` interval, the one TOST at ``alpha`` reads.
    """
    if not (np.isfinite(estimate) and np.isfinite(se) and se > 0):
        raise InsufficientDataError(f"{statistic_name}: no finite estimate with a positive standard error")
    from scipy import stats

    q = stats.norm.ppf(1 - alpha) if df is None or not np.isfinite(df) else stats.t(df).ppf(1 - alpha)
    return equivalence_from_statistics(
        estimate=estimate, z_low=(estimate - (target - margin)) / se, z_high=(estimate - (target + margin)) / se,
        df=df, ci=(estimate - q * se, estimate + q * se), target=target, margin=margin, alpha=alpha, test=test,
        statistic_name=statistic_name, effect_name=effect_name, n_runs=n_runs, notes=notes)


def equivalence_from_statistics(
    *,
    estimate: float,
    z_low: float,
    z_high: float,
    df: Optional[float],
    ci: tuple[float, float],
    target: float,
    margin: float,
    alpha: float = ALPHA,
    test: str,
    statistic_name: str,
    effect_name: str = "",
    n_runs: Optional[int] = None,
    notes: str = "",
) -> Outcome:
    """:func:`equivalence_outcome`'s decision from the two one-sided test statistics themselves.

    ``z_low`` and ``z_high`` test the effect against ``target - margin`` and ``target + margin``: positive
    when the estimate lies above the boundary, referred to a t (``df``) or standard normal (``df`` None)
    distribution. For a Wald test they are ``(estimate - boundary) / se``; for a likelihood-ratio test the
    signed roots (:func:`grokking_theories.stats.survival.profile_slope`). ``ci`` is the ``1 - 2 alpha``
    interval of the same test (the one TOST at ``alpha`` reads).
    """
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    if not (np.isfinite(z_low) and np.isfinite(z_high)):
        raise InsufficientDataError(f"{statistic_name}: no finite test statistic at the margin's boundaries")
    p_equiv = max(_tail(z_low, df, True), _tail(z_high, df, False))
    p_above, p_below = _tail(z_high, df, True), _tail(z_low, df, False)
    p_outside = min(p_above, p_below)
    common = dict(test=test, statistic_name=statistic_name, statistic=float(estimate),
                  effect_name=effect_name or statistic_name, effect_size=float(estimate),
                  ci_low=float(ci[0]), ci_high=float(ci[1]), confidence=1 - 2 * alpha,
                  n_runs=n_runs, notes="; ".join(filter(None, [f"equivalence margin {target:g} +- {margin:g}", notes])))
    if p_equiv < alpha:
        return Outcome(verdict="supported", p_value=float(p_equiv), p_supports="supported", **common)
    if p_outside < alpha:
        return Outcome(verdict="contradicted", p_value=float(p_outside), p_supports="contradicted", **common)
    closer = "supported" if p_equiv <= p_outside else "contradicted"
    return Outcome(verdict="inconclusive", p_value=float(min(p_equiv, p_outside)), p_supports=closer, **common)


def slope_outcome(
    x,
    y,
    expected: Literal["negative", "positive"],
    *,
    null: float = 0.0,
    alpha: float = ALPHA,
    statistic_name: str = "log-log slope",
) -> Outcome:
    """Directional log-log OLS slope prediction (:func:`directional_outcome` on its t statistic).

    Raises
    ------
    InsufficientDataError
        Fewer than 3 usable points.
    """
    res = loglog_slope(x, y, null_values=(null,), alpha=alpha)
    notes = f"{res.n_dropped} point(s) dropped (x or y <= 0 or non-finite)" if res.n_dropped else ""
    return directional_outcome(estimate=res.slope, se=res.slope_se, df=res.n - 2, expected=expected, null=null,
                               alpha=alpha, test="OLS t-test of the log-log slope", statistic_name=statistic_name,
                               effect_name="slope", n_runs=res.n, notes=notes)
