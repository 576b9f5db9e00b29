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
    "slope_outcome",
]

#: The three possible verdicts.
VERDICTS = ("supported", "contradicted", "inconclusive")
_P_SUPPORTS = ("supported", "contradicted", None)

_NAN = float("nan")


def _check_verdict(verdict: str) -> None:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")


def _check_p_supports(p_supports: Optional[str]) -> None:
    if p_supports not in _P_SUPPORTS:
        raise ValueError(f"p_supports must be one of {_P_SUPPORTS}, got {p_supports!r}")


@dataclass
class Outcome:
    """What a prediction's test function returns: the data-dependent part of a verdict.

    Attributes
    ----------
    verdict : {'supported', 'contradicted', 'inconclusive'}
        Decision by the prediction's rule.
    statistic_name : str
        Name of the test statistic (e.g. 'log-log slope of t_grok on wd').
    statistic : float
    effect_size : float
        Effect on an interpretable scale (may equal ``statistic``).
    effect_name : str
    ci_low, ci_high : float
        Confidence interval of the effect.
    confidence : float
        Level of that interval.
    p_value : float or None
        The p-value the decision used, if any.
    p_supports : {'supported', 'contradicted', None}
        Which verdict a *small* ``p_value`` argues for. :func:`adjust_verdicts`
        demotes a verdict equal to ``p_supports`` to 'inconclusive' when its
        Holm-adjusted p is not below alpha. None: the decision does not rest
        on ``p_value`` (it is then only reported).
    n_runs : int or None
        Runs the statistic used (None: all runs of the table).
    notes : str
    """

    verdict: str
    statistic_name: str = ""
    statistic: float = _NAN
    effect_size: float = _NAN
    effect_name: str = ""
    ci_low: float = _NAN
    ci_high: float = _NAN
    confidence: float = 0.95
    p_value: Optional[float] = None
    p_supports: Optional[str] = None
    n_runs: Optional[int] = None
    notes: str = ""

    def __post_init__(self) -> None:
        _check_verdict(self.verdict)
        _check_p_supports(self.p_supports)


@dataclass
class Verdict:
    """The decision on one prediction for one set of runs.

    Attributes
    ----------
    prediction_id, family, statement : str
        Identity of the prediction (copied from :class:`Prediction`).
    run_set : str
        Which runs were used (e.g. the study/sweep name).
    statistic_name, statistic, effect_size, effect_name, ci_low, ci_high
        See :class:`Outcome`.
    p_value : float or None
        Raw p-value the decision used, if any.
    p_adjusted : float or None
        Holm-adjusted p-value, set by :func:`adjust_verdicts`.
    n_runs : int
    verdict : {'supported', 'contradicted', 'inconclusive'}
    rule : str
        The decision rule, fixed in advance.
    notes : str
        Anything the reader must know (missing data, demotion by Holm ...).
    p_supports : {'supported', 'contradicted', None}
        See :class:`Outcome`.
    confidence : float
        Level of ``[ci_low, ci_high]``.
    """

    prediction_id: str
    family: str
    statement: str
    run_set: str = "all"
    statistic_name: str = ""
    statistic: float = _NAN
    effect_size: float = _NAN
    effect_name: str = ""
    ci_low: float = _NAN
    ci_high: float = _NAN
    p_value: Optional[float] = None
    p_adjusted: Optional[float] = None
    n_runs: int = 0
    verdict: str = "inconclusive"
    rule: str = ""
    notes: str = ""
    p_supports: Optional[str] = None
    confidence: float = 0.95

    def __post_init__(self) -> None:
        _check_verdict(self.verdict)
        _check_p_supports(self.p_supports)

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
            pair("", "", "Holm p:", fmt(self.p_adjusted)),
            "=" * width,
        ]
        lines += textwrap.wrap("Statement: " + self.statement, width) or ["Statement:"]
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
    """Accept an Outcome, a Verdict or a mapping from a test function."""
    if isinstance(result, Outcome):
        return result
    if isinstance(result, Verdict):
        names = {f.name for f in dataclasses.fields(Outcome)}
        return Outcome(**{k: v for k, v in result.to_dict().items() if k in names})
    if isinstance(result, Mapping):
        names = {f.name for f in dataclasses.fields(Outcome)}
        unknown = set(result) - names
        if unknown:
            raise TypeError(f"test result has unknown field(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return Outcome(**result)
    raise TypeError(f"a prediction's test must return an Outcome, Verdict or dict, got {type(result).__name__}")


@dataclass(frozen=True)
class Prediction:
    """A falsifiable prediction with its decision rule fixed in advance.

    Attributes
    ----------
    id : str
        Short unique id, e.g. 'WD-1'.
    family : str
        Theory family ('weight_decay', 'fourier', 'goldilocks',
        'double_descent', 'metric_artifact' ...).
    statement : str
        The prediction in words.
    metrics_needed : tuple of str
        Metrics that must be present in the ``metric`` column (with at least
        one finite value).
    config_needed : tuple of str
        Config columns that must exist *and vary* (take >= 2 distinct values
        across runs) -- the knobs the prediction is about.
    rule : str
        When the verdict is supported / contradicted / inconclusive.
    test : callable
        ``test(table) -> Outcome`` (or a dict with Outcome's fields). May
        raise :class:`InsufficientDataError` -> 'inconclusive'.
    config_present : tuple of str
        Config columns that must merely exist (e.g. used to filter).
    """

    id: str
    family: str
    statement: str
    metrics_needed: tuple = ()
    config_needed: tuple = ()
    rule: str = ""
    test: Optional[Callable[[pd.DataFrame], Any]] = None
    config_present: tuple = ()

    def missing(self, table: pd.DataFrame) -> list[str]:
        """Reasons the table cannot answer this prediction (empty list if it can)."""
        problems = []
        base = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if base:
            return [f"table lacks required column(s) {base}"]
        if table.empty:
            return ["table is empty"]
        present = set(pd.unique(table["metric"]).tolist())
        absent = [m for m in self.metrics_needed if m not in present]
        if absent:
            problems.append(f"missing metric(s) {absent} (table has {sorted(present)})")
        for m in self.metrics_needed:
            if m in present:
                vals = table.loc[table["metric"] == m, "value"].to_numpy(dtype=float)
                if not np.isfinite(vals).any():
                    problems.append(f"metric {m!r} has no finite value")
        cols = [c for c in (*self.config_needed, *self.config_present) if c not in table.columns]
        if cols:
            problems.append(f"missing config column(s) {cols}")
        for c in self.config_needed:
            if c in table.columns:
                distinct = pd.unique(table[c].dropna())
                if len(distinct) < 2:
                    shown = [v.item() if hasattr(v, "item") else v for v in list(distinct)[:3]]  # 1.0, not np.float64(1.0)
                    problems.append(
                        f"config column {c!r} does not vary (values: {shown}); the prediction needs a sweep"
                    )
        return problems

    def _verdict(self, run_set: str, n_runs: int, outcome: Outcome) -> Verdict:
        return Verdict(
            prediction_id=self.id,
            family=self.family,
            statement=self.statement,
            run_set=run_set,
            statistic_name=outcome.statistic_name,
            statistic=float(outcome.statistic),
            effect_size=float(outcome.effect_size),
            effect_name=outcome.effect_name,
            ci_low=float(outcome.ci_low),
            ci_high=float(outcome.ci_high),
            p_value=None if outcome.p_value is None else float(outcome.p_value),
            p_adjusted=None,
            n_runs=int(n_runs if outcome.n_runs is None else outcome.n_runs),
            verdict=outcome.verdict,
            rule=self.rule,
            notes=outcome.notes,
            p_supports=outcome.p_supports,
            confidence=float(outcome.confidence),
        )

    def evaluate(self, table: pd.DataFrame, run_set: str = "all") -> Verdict:
        """Apply the prediction to a tidy table.

        Parameters
        ----------
        table : DataFrame
            Tidy long-form table (the runs the prediction should see).
        run_set : str
            Label of the runs, copied into the verdict.

        Returns
        -------
        Verdict
            'inconclusive' with a note naming what is missing when the table
            lacks a needed metric/column, a needed knob does not vary, or the
            test raises :class:`InsufficientDataError`.

        Raises
        ------
        TypeError
            If ``table`` is not a DataFrame or the test returns something
            that is not an Outcome/Verdict/dict (programming errors are not
            hidden as 'inconclusive').
        """
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"evaluate expects a pandas DataFrame, got {type(table).__name__}")
        n_runs = int(table["run_id"].nunique()) if "run_id" in table.columns else 0
        problems = self.missing(table)
        if self.test is None:
            problems.append("prediction has no test function")
        if problems:
            return self._verdict(run_set, n_runs, Outcome("inconclusive", notes="; ".join(problems)))
        try:
            outcome = _coerce_outcome(self.test(table))
        except InsufficientDataError as exc:
            return self._verdict(run_set, n_runs, Outcome("inconclusive", notes=f"insufficient data: {exc}"))
        return self._verdict(run_set, n_runs, outcome)


def adjust_verdicts(verdicts: Iterable[Verdict], alpha: float = 0.05) -> list[Verdict]:
    """Holm-adjust the p-values of all verdicts and re-decide.

    Parameters
    ----------
    verdicts : iterable of Verdict
        The family of verdicts (e.g. every prediction of a report).
    alpha : float
        Family-wise level.

    Returns
    -------
    list of Verdict
        New Verdict objects (inputs untouched) with ``p_adjusted`` set for
        every verdict that has a finite ``p_value``. A verdict whose
        decision rested on its p-value (``verdict == p_supports``) becomes
        'inconclusive' when the adjusted p is ``>= alpha``, with a note.
        Verdicts without a p-value are unchanged.
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
        if v.p_supports is not None and v.verdict == v.p_supports and pa >= alpha:
            note = f"was '{v.verdict}' at p={v.p_value:.3g}; Holm-adjusted p={pa:.3g} >= {alpha}"
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

    def adjusted(self, alpha: float = 0.05) -> "VerdictTable":
        """A new table with :func:`adjust_verdicts` applied."""
        return VerdictTable(adjust_verdicts(self.verdicts, alpha))

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

        head = f"{'id':<12}{'family':<18}{'verdict':<14}{'effect':>10}{'CI low':>10}{'CI high':>10}{'p':>10}{'p (Holm)':>10}{'n':>6}"
        lines = ["=" * width, head, "-" * width]
        for v in self.verdicts:
            lines.append(
                f"{v.prediction_id[:11]:<12}{v.family[:17]:<18}{v.verdict:<14}{fmt(v.effect_size):>10}"
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


def slope_outcome(
    x,
    y,
    expected: Literal["negative", "positive"],
    *,
    null: float = 0.0,
    alpha: float = 0.05,
    statistic_name: str = "log-log slope",
) -> Outcome:
    """Directional log-log slope prediction decided as a one-sided test at level ``alpha``.

    Parameters
    ----------
    x, y : array_like
        Positive data (see :func:`loglog_slope`).
    expected : {'negative', 'positive'}
        The predicted sign of ``slope - null``.
    null : float
        Reference slope.
    alpha : float
        One-sided level. The reported interval is the two-sided
        ``1 - 2 alpha`` interval, whose limits are the two one-sided
        ``1 - alpha`` bounds.

    Returns
    -------
    Outcome
        'supported' when the interval lies wholly on the expected side of
        ``null`` (equivalently one-sided p < alpha), 'contradicted' when it
        lies wholly on the other side, else 'inconclusive'. ``p_value`` is
        the one-sided p in the direction of the decision (the expected one
        when inconclusive) and ``p_supports`` names that direction, so Holm
        can demote it.

    Raises
    ------
    InsufficientDataError
        Fewer than 3 usable points.
    """
    res = loglog_slope(x, y, null_values=(null,), alpha=2 * alpha)
    p2 = res.p_value(null)
    # One-sided p-values from the two-sided t-test p (symmetric t distribution).
    below_p = p2 / 2 if res.slope < null else 1 - p2 / 2
    above_p = 1 - below_p
    p_expected, p_other = (below_p, above_p) if expected == "negative" else (above_p, below_p)
    verdict = decide_sign(res.ci_low, res.ci_high, expected, null)
    if verdict == "contradicted":
        p, p_supports = p_other, "contradicted"
    else:
        p, p_supports = p_expected, "supported"
    return Outcome(
        verdict=verdict,
        statistic_name=statistic_name,
        statistic=res.slope,
        effect_size=res.slope,
        effect_name="slope",
        ci_low=res.ci_low,
        ci_high=res.ci_high,
        confidence=1 - 2 * alpha,
        p_value=float(p),
        p_supports=p_supports,
        n_runs=res.n,
        notes=f"{res.n_dropped} point(s) dropped (x or y <= 0 or non-finite)" if res.n_dropped else "",
    )
