"""The family interface: one explanation of grokking, its sweep and its predictions.

A family declares the runs it wants (a study in ``studies/``) and its
:class:`~grokking_theories.stats.Prediction` objects, each with a decision
rule fixed before any data is seen. Predictions read only the tidy table, so
they can be evaluated on *any* run set in the store that has what they need
(the same-runs principle): the Goldilocks predictions on the weight-decay
ablation, the sharpness claim on the Omnigrok sweep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..config import did_you_mean
from ..errors import ConfigError
from ..levels import ALPHA

FAMILIES: dict[str, "Family"] = {}


@dataclass(frozen=True)
class Family:
    """An explanation of grokking, as a set of tests.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"goldilocks"``.
    title : str
        One line for the report.
    explanation : str
        The explanation in our own words (shown in the report and the docs).
    references : tuple of str
        The papers it comes from.
    study : str
        The study in ``studies/`` that declares the runs the family needs.
    predictions : tuple of Prediction
        Its predictions, ids unique across all families.
    figures : tuple of callable
        ``figure(table) -> matplotlib Figure or None``: figures the report
        shows for this family (None when the table lacks what it draws).
    probes : tuple of str
        Names of the registered probes (:mod:`grokking_theories.probes.stage`)
        whose metrics its predictions or figures read. The study driver runs
        them on the stored checkpoints after training and the report reads
        their stored rows; ``check_family`` accepts a prediction's metric
        only if the trainer logs it or a declared probe writes it.
    """

    name: str
    title: str
    explanation: str
    references: tuple = ()
    study: str = ""
    predictions: tuple = ()
    figures: tuple = field(default=())
    probes: tuple = ()

    def sweep(self, scale: str = "quick"):
        """The family's runs as a :class:`~grokking_theories.studies.Study`."""
        from ..studies import load_study
        return load_study(self.study, scale)

    def evaluate(self, table, run_set: str = "primary design") -> list:
        """Every prediction's :class:`~grokking_theories.stats.Verdict` on its primary design within ``table``."""
        return [p.evaluate(table, run_set) for p in self.predictions]


def register(family: Family) -> Family:
    if family.name in FAMILIES and FAMILIES[family.name] is not family:
        raise ValueError(f"a family named {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    from . import builtin  # noqa: F401  (registers the shipped families)
    if name not in FAMILIES:
        raise ConfigError(f"unknown family {name!r}{did_you_mean(name, FAMILIES)}; "
                          f"registered: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def all_families() -> list[Family]:
    from . import builtin  # noqa: F401
    return list(FAMILIES.values())


#: Label of the run set a headline verdict is decided on: the prediction's primary design within the study.
PRIMARY = "primary design"
#: Label of a cross-study cell: a prediction evaluated on all runs of a study that is not its family's own.
CROSS_STUDY = "all runs (cross-study)"


def headline_families(families: Sequence[Family], study: str | None) -> list[Family]:
    """The families whose predictions a report on ``study`` decides (its headline).

    A family's predictions are decided in the study that declares its runs (``Family.study``); in any other
    shipped study that evaluates it (the goldilocks rules on the weight-decay ablation, say) they are a
    secondary, cross-study view. A study that is no family's own (a user's edited copy, ``study=None``)
    decides all of its families.
    """
    own = [f for f in families if study is not None and f.study == study]
    return own or list(families)


def evaluate_families(table, families: Sequence[Family], run_sets: Mapping[str, Sequence[str]],
                      alpha: float = ALPHA, *, study: str | None = None) -> list:
    """Headline and secondary verdicts of every prediction of ``families``.

    Headline: each prediction of :func:`headline_families` once, on the rows
    of its primary design among *all* of ``table``'s runs; these verdicts
    form the one Holm family. The other families' predictions are evaluated
    the same way on all runs, labelled ``"all runs (cross-study)"``, as
    secondary cells.
    Secondary: each prediction on each run set of ``run_sets`` (label -> run
    ids; the design's filter still applies, so no arm is pooled with one it
    must not be), Holm-adjusted as a separate family. A secondary cell is a
    robustness view: it never changes a headline verdict.

    No library warning escapes: each evaluation runs under
    :func:`evaluate_quietly`, which records what NumPy, SciPy or statsmodels
    warned about and appends it to that verdict's notes.
    """
    from ..stats import adjust_verdicts

    decided = headline_families(families, study)
    facts = _facts(table)
    headline = [evaluate_quietly(p, table, PRIMARY, role="headline", facts=facts)
                for f in decided for p in f.predictions]
    secondary = [evaluate_quietly(p, table, CROSS_STUDY, role="secondary", facts=facts)
                 for f in families if f not in decided for p in f.predictions]
    for label, ids in run_sets.items():
        subset = table[table["run_id"].isin(set(ids))]
        facts = _facts(subset)
        secondary.extend(evaluate_quietly(p, subset, label, role="secondary", facts=facts)
                         for f in families for p in f.predictions)
    return adjust_verdicts(headline, alpha) + adjust_verdicts(secondary, alpha)


def _facts(table):
    """:class:`~grokking_theories.stats.TableFacts` of a table the predictions can read (else None: each
    prediction then names what the table lacks)."""
    from ..stats import TableFacts
    from ..stats._common import REQUIRED_COLUMNS

    if table.empty or any(c not in table.columns for c in REQUIRED_COLUMNS):
        return None
    return TableFacts.of(table)


#: Warning categories about the code (an API that will change), not about the data being fitted.
_CODE_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning)
#: Distinct warnings quoted in one verdict's notes; the rest are counted.
_MAX_QUOTED = 3


def evaluate_quietly(prediction, table, run_set: str, *, role: str, facts=None):
    """``prediction.evaluate(table, run_set, role=role)`` with every warning captured into the verdict's notes.

    A degenerate fit (a constant input, an all-NaN slice, a non-converging
    likelihood) makes NumPy, SciPy or statsmodels warn on the terminal with
    no context. Here each distinct warning (category and message) is quoted
    once in the notes of the verdict it arose in, with what it means for the
    verdict; nothing is printed.
    """
    import dataclasses
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        verdict = prediction.evaluate(table, run_set, role=role, facts=facts)
    note = warning_note(caught, test=verdict.test)
    if not note:
        return verdict
    return dataclasses.replace(verdict, notes="; ".join(filter(None, [verdict.notes, note])))


def warning_note(caught, *, test: str = "", verdict: bool = True) -> str:
    """One note for a list of recorded warnings (empty string when there are none); deduplicated, in order.

    ``verdict``: the warnings arose while evaluating a verdict decided by ``test`` (else while drawing a figure).
    """
    seen: dict[tuple[str, str], bool] = {}
    for w in caught:
        category = w.category if isinstance(w.category, type) else type(w.message)
        message = " ".join(str(w.message).split())
        if len(message) > 160:
            message = message[:157] + "..."
        seen.setdefault((category.__name__, message), issubclass(category, _CODE_WARNINGS))
    if not seen:
        return ""
    parts = []
    numeric = [k for k, code in seen.items() if not code]
    code = [k for k, code in seen.items() if code]
    if numeric:
        quoted = "; ".join(f"{c}: {m}" for c, m in numeric[:_MAX_QUOTED])
        more = f" (and {len(numeric) - _MAX_QUOTED} more)" if len(numeric) > _MAX_QUOTED else ""
        if not verdict:
            parts.append(f"numerical warning while drawing: {quoted}{more}")
        else:
            rests = f"the verdict rests on the test named ({test})" if test else \
                "the verdict is inconclusive for the reason given"
            parts.append(f"numerical warning during the fit: {quoted}{more} [captured; {rests}]")
    if code:
        quoted = "; ".join(f"{c}: {m}" for c, m in code[:_MAX_QUOTED])
        more = f" (and {len(code) - _MAX_QUOTED} more)" if len(code) > _MAX_QUOTED else ""
        parts.append(f"library notice during evaluation, about the code and not the data: {quoted}{more}")
    return "; ".join(parts)
