"""The cross-theory comparison: every explanation's predictions on the same runs.

A study that includes the family studies (``studies/all.toml``) is evaluated
here. Three rules, stated before any data:

1. **Headline.** Each prediction is decided once, on its primary design
   within the runs of the study that declares its family (``Family.study``),
   Holm-adjusted within its explanation. These are exactly the rows and the
   multiplicity family of that study's own report, so ``study all`` and, say,
   ``study omnigrok`` give the goldilocks predictions the same verdicts.
2. **Cross-table (secondary).** Each prediction is also tried on every other
   included study's runs. A cell is evaluated when that run set has what the
   prediction needs (its metrics, its knobs and runs its design accepts:
   :meth:`~grokking_theories.stats.Prediction.design_rows`); the evaluated
   cells are Holm-adjusted as one separate family and never change a headline.
   The other cells are *not applicable*, with the reason.
3. **Opposite predictions** (:data:`CONFLICTS`) are declared here, with the
   verdict each explanation expects; the report says which way each verdict
   on each run set went.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from ..levels import ALPHA
from .base import PRIMARY, _facts, evaluate_quietly

@dataclass(frozen=True, kw_only=True)
class Claim:
    """One prediction inside a :class:`Conflict`: which explanation expects it to hold and which expects it to fail."""

    prediction: str
    expected_by: str
    denied_by: str


@dataclass(frozen=True, kw_only=True)
class Conflict:
    """Two explanations that predict opposite things about the same runs."""

    question: str
    claims: tuple
    #: Why the two explanations disagree here, in words (shown in the report).
    why: str


#: The places where two explanations make opposite predictions about the same runs.
CONFLICTS: tuple = (
    Conflict(
        question="Do runs grok without weight decay?",
        claims=(Claim(prediction="G1b", expected_by="goldilocks", denied_by="weight_decay"),
                Claim(prediction="W3", expected_by="weight_decay", denied_by="goldilocks")),
        why="Omnigrok: a small initial norm is already inside the Goldilocks zone, so small-alpha runs generalise "
            "without decay (G1b) and alpha = 1 runs may too, against W3. Power et al.'s slow-regulariser view: "
            "without decay nothing pulls the network off its memorising solution, so no run groks within the "
            "budget (W3), against G1b's small-alpha half.",
    ),
    Conflict(
        question="Is weight decay what lets a network generalise?",
        claims=(Claim(prediction="I1", expected_by="interventions", denied_by="weight_decay"),
                Claim(prediction="I2", expected_by="interventions", denied_by="weight_decay")),
        why="Prieto et al.: weight decay's main role is to stop the logits growing into softmax collapse; "
            "StableMax (I1) or the orthogonal gradient (I2) prevents the collapse without decay, and the runs "
            "generalise. Power et al.'s slow-regulariser view: the decay itself carries the network to the "
            "generalising solution, so without it they stay at chance whatever the loss or gradient (as W3's "
            "plain softmax runs do).",
    ),
    Conflict(
        question="When does the test loss peak: as the training set is memorised, or later?",
        claims=(Claim(prediction="D2", expected_by="double_descent", denied_by="circuits"),),
        why="Double descent over time: the test loss peaks at the interpolation time t_fit and falls from there "
            "(D2). Nanda et al.'s phases: the test loss stays high through circuit formation and falls in "
            "cleanup, around t_grok, so the peak is not tied to t_fit (D2 contradicted).",
    ),
)


@dataclass
class Comparison:
    """Headline and cross-table verdicts of several explanations on the runs of a composite study.

    Attributes
    ----------
    families : list of Family
        In the study's order.
    run_sets : dict
        Included study name -> its run ids (the cross-table's columns).
    headline : list of Verdict
        One per prediction, on its primary design within its own study's runs.
    cells : dict
        (prediction_id, run_set) -> Verdict for every evaluated cell; a
        prediction's own-study cell is its headline verdict.
    not_applicable : dict
        (prediction_id, run_set) -> why that run set cannot answer it.
    """

    families: list
    run_sets: dict
    headline: list = field(default_factory=list)
    cells: dict = field(default_factory=dict)
    not_applicable: dict = field(default_factory=dict)

    @property
    def verdicts(self) -> list:
        """The headline verdicts, then the evaluated secondary cells (the report's verdict list)."""
        own = {id(v) for v in self.headline}
        return self.headline + [v for v in self.cells.values() if id(v) not in own]

    def own_run_set(self, family) -> Optional[str]:
        """The run set a family's predictions are decided on (its own study), or None when not included."""
        return family.study if family.study in self.run_sets else None

    def family_headline(self, family) -> list:
        return [v for v in self.headline if v.family == family.name]

    def ranked(self, family, verdict: str) -> list:
        """``family``'s verdicts equal to ``verdict`` (headline and cells), strongest first: headline before
        secondary, then the smallest adjusted p, then the largest effect per CI width."""
        names = {p.id for p in family.predictions}
        return sorted((v for v in self.cells.values() if v.prediction_id in names and v.verdict == verdict),
                      key=_rank)

    def evidence(self, family) -> tuple[str, str]:
        """The strongest evidence for and against ``family``, one sentence each, generated from the verdicts."""
        return (_strongest(self, family, "supported"), _strongest(self, family, "contradicted"))

    def conflict_findings(self, conflicts: Sequence[Conflict] = CONFLICTS) -> list[dict]:
        """For each conflict whose explanations are both here: the verdicts on each run set and where they point."""
        names = {f.name for f in self.families}
        found = []
        for conflict in conflicts:
            sides = {c.expected_by for c in conflict.claims} | {c.denied_by for c in conflict.claims}
            if not sides <= names:
                continue
            rows = []
            for run_set in self.run_sets:
                for claim in conflict.claims:
                    v = self.cells.get((claim.prediction, run_set))
                    if v is None:
                        continue
                    favours = {"supported": claim.expected_by, "contradicted": claim.denied_by}.get(v.verdict)
                    rows.append({"run_set": run_set, "prediction": claim.prediction, "verdict": v.verdict,
                                 "favours": favours, "headline": v.role == "headline", "verdict_obj": v})
            # The finding rests on the headline verdicts (each prediction on its own study's runs, the design it
            # was calibrated on); the secondary cells are listed as a consistency check, not counted: run sets
            # overlap, and a count of cells would weigh a prediction by how many studies happen to answer it.
            tally: dict[str, int] = {}
            for r in rows:
                if r["favours"] and r["headline"]:
                    tally[r["favours"]] = tally.get(r["favours"], 0) + 1
            found.append({"conflict": conflict, "rows": rows, "tally": tally,
                          "sentence": _conflict_sentence(conflict, rows, tally, self)})
        return found

    def summary(self) -> str:
        """The headline verdicts per explanation and the cross-table, as fixed-width text."""
        lines = []
        for family in self.families:
            own = self.own_run_set(family)
            where = f"decided on the {own} runs" if own else f"not decided here (its study {family.study!r} is not included)"
            lines.append(f"{family.name} ({family.title}), {where}:")
            for v in self.family_headline(family):
                lines.append(f"  {v.prediction_id:4s} {v.verdict:12s} {_effect_text(v)}")
            pro, con = self.evidence(family)
            lines += [f"  for:     {pro}", f"  against: {con}"]
        width = max((len(p.id) for f in self.families for p in f.predictions), default=4)
        header = " " * (width + 2) + " ".join(f"{r[:12]:>12s}" for r in self.run_sets)
        lines += ["", "cross-table (H headline cell, . not applicable):", header]
        for family in self.families:
            for p in family.predictions:
                marks = []
                for r in self.run_sets:
                    v = self.cells.get((p.id, r))
                    mark = "." if v is None else v.verdict[:12] + ("*" if v.role == "headline" else "")
                    marks.append(f"{mark:>12s}")
                lines.append(f"{p.id:{width}s}  " + " ".join(marks))
        return "\n".join(lines)


def evaluate_comparison(table, families: Sequence, run_sets: Mapping[str, Sequence[str]],
                        alpha: float = ALPHA) -> Comparison:
    """Decide every prediction on its own study's runs and try it on every other run set (rules above).

    Parameters
    ----------
    table : DataFrame
        The tidy long-form table of the composite study's finished runs.
    families : sequence of Family
    run_sets : mapping
        Included study name -> run ids.
    """
    from ..stats import adjust_verdicts

    by_set = {name: table[table["run_id"].isin(set(ids))] for name, ids in run_sets.items()}
    facts = {name: _facts(rows) for name, rows in by_set.items()}
    comparison = Comparison(families=list(families), run_sets={k: list(v) for k, v in run_sets.items()})
    for family in families:
        own = comparison.own_run_set(family)
        if own is None:
            continue
        decided = [evaluate_quietly(p, by_set[own], PRIMARY, role="headline", facts=facts.get(own))
                   for p in family.predictions]
        adjusted = adjust_verdicts(decided, alpha)  # one Holm family per explanation, as in its own study
        comparison.headline.extend(adjusted)
        comparison.cells.update({(v.prediction_id, own): v for v in adjusted})
    tried = []
    for name, rows in by_set.items():
        for family in families:
            if comparison.own_run_set(family) == name:
                continue
            for p in family.predictions:
                problems = (p.answerable(rows, facts=facts[name]) if facts.get(name) is not None
                            else p.design_rows(rows)[1])
                if problems:
                    comparison.not_applicable[(p.id, name)] = "; ".join(problems)
                else:
                    tried.append((p.id, name, evaluate_quietly(p, rows, name, role="secondary",
                                                               facts=facts.get(name))))
    adjusted = adjust_verdicts([v for _, _, v in tried], alpha)
    comparison.cells.update({(pid, name): v for (pid, name, _), v in zip(tried, adjusted)})
    return comparison


# --- sentences -----------------------------------------------------------------------------------

def _effect_text(v) -> str:
    """'effect 1.2 (95 % CI 0.8 to 1.6), Holm p 0.003, 12 runs' with what is defined."""
    parts = []
    if v.effect_name and math.isfinite(v.effect_size):
        ci = ""
        if math.isfinite(v.ci_low) and math.isfinite(v.ci_high):
            ci = f" ({v.confidence:.0%} CI {v.ci_low:.3g} to {v.ci_high:.3g})"
        parts.append(f"{v.effect_name} {v.effect_size:.3g}{ci}")
    if v.p_adjusted is not None:
        parts.append(f"Holm p {v.p_adjusted:.2g}")
    elif v.p_value is not None:
        parts.append(f"p {v.p_value:.2g}")
    parts.append(f"{v.n_runs} runs")
    return ", ".join(parts)


def _rank(v) -> tuple:
    """Stronger evidence first: headline before secondary, then the smallest adjusted p, then the larger |z|."""
    p = v.p_adjusted if v.p_adjusted is not None else (v.p_value if v.p_value is not None else 1.0)
    width = v.ci_high - v.ci_low
    z = abs(v.effect_size) / width if math.isfinite(width) and width > 0 and math.isfinite(v.effect_size) else 0.0
    return (v.role != "headline", p, -z)


def _strongest(comparison: Comparison, family, verdict: str) -> str:
    names = {p.id for p in family.predictions}
    found = comparison.ranked(family, verdict)
    if not found:
        return (f"nothing: no prediction came out {verdict}, on its own runs or on another study's "
                f"({sum(1 for v in comparison.cells.values() if v.prediction_id in names)} verdicts).")
    v = found[0]
    where = "on its primary design" if v.role == "headline" else f"on the {v.run_set} runs (secondary)"
    more = len(found) - 1
    tail = f"; {more} other {verdict} verdict{'s' if more != 1 else ''}" if more else ""
    return (f"{v.prediction_id} {verdict} {where}: {_first_sentence(v.statement)} "
            f"[{_effect_text(v)}{tail}]")


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    cut = text.find(". ")
    return text if cut < 0 else text[:cut + 1]


def _conflict_sentence(conflict: Conflict, rows: list, tally: dict, comparison: Comparison) -> str:
    """Which way the data went: from the headline verdicts; the secondary cells said as agreeing or not."""
    titles = {f.name: f.title for f in comparison.families}
    if not rows:
        return "No run set here can answer either prediction."
    head = [r for r in rows if r["headline"]]
    decided = [r for r in head if r["favours"]]
    shown = "; ".join(f"{r['prediction']} {r['verdict']} on the {r['run_set']} runs" for r in head)
    if not decided:
        lead = f"Not decided: the headline verdicts are inconclusive ({shown})." if head else \
            "Not decided: no prediction of this conflict is decided here on its own study's runs."
    else:
        ranked = sorted(tally.items(), key=lambda kv: -kv[1])
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            lead = f"Split: {shown}."
        else:
            lead = f"The data side with {titles.get(ranked[0][0], ranked[0][0])}: {shown}."
    other = [r for r in rows if not r["headline"] and r["favours"]]
    if other:
        winner = max(tally, key=tally.get) if tally else None
        agree = sum(r["favours"] == winner for r in other) if winner else 0
        lead += (f" On other studies' runs (secondary): {len(other)} decided cell(s), "
                 f"{agree} pointing the same way.") if winner else \
            f" On other studies' runs (secondary): {len(other)} decided cell(s)."
    return lead


