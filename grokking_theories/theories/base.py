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
    """

    name: str
    title: str
    explanation: str
    references: tuple = ()
    study: str = ""
    predictions: tuple = ()
    figures: tuple = field(default=())

    def sweep(self, scale: str = "quick"):
        """The family's runs as a :class:`~grokking_theories.studies.Study`."""
        from ..studies import load_study
        return load_study(self.study, scale)

    def evaluate(self, table, run_set: str = "all") -> list:
        """Every prediction's :class:`~grokking_theories.stats.Verdict` on one run set."""
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


def evaluate_families(table, families: Sequence[Family], run_sets: Mapping[str, Sequence[str]],
                      alpha: float = 0.05) -> list:
    """Verdicts of every prediction of every family on every run set, Holm-adjusted together.

    ``run_sets`` maps a label to run ids; each prediction sees only those runs.
    """
    from ..stats import adjust_verdicts

    verdicts = []
    for label, ids in run_sets.items():
        subset = table[table["run_id"].isin(set(ids))]
        for family in families:
            verdicts.extend(family.evaluate(subset, label))
    return adjust_verdicts(verdicts, alpha)
