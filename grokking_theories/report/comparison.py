"""The comparison page at the top of a composite study's report, and its matrix figure.

Everything here is generated from :class:`~grokking_theories.theories.comparison.Comparison`:
per explanation its headline verdicts with effects and CIs and the strongest
evidence for and against it; the opposite predictions and which way the
data went; and one figure with the whole prediction x run-set matrix.
"""
from __future__ import annotations

import math
from typing import Any

#: Cell colours of the matrix: one per verdict, and the colour of a run set that cannot answer.
VERDICT_COLOURS = {"supported": "#2e7d32", "contradicted": "#c62828", "inconclusive": "#b0b4ba"}
NOT_APPLICABLE_COLOUR = "#ffffff"
#: The mark printed in a cell (colour is not the only cue).
VERDICT_MARKS = {"supported": "+", "contradicted": "\u2212", "inconclusive": "?"}


def matrix_figure(comparison):
    """Predictions (rows, grouped by explanation) x run sets (columns); colour = verdict.

    A headline cell (the prediction on its own study's runs) has a black frame; a white cell with a
    dot is a run set that cannot answer the prediction.
    """
    from matplotlib.patches import Patch, Rectangle

    from ..plotting import new_figure

    rows = [(f, p) for f in comparison.families for p in f.predictions]
    columns = list(comparison.run_sets)
    fig, axes = new_figure(1, 1, width=1.1 * len(columns) + 3.4, height=0.27 * len(rows) + 1.4)
    ax = axes[0][0]
    for i, (family, p) in enumerate(rows):
        for j, run_set in enumerate(columns):
            v = comparison.cells.get((p.id, run_set))
            colour = NOT_APPLICABLE_COLOUR if v is None else VERDICT_COLOURS[v.verdict]
            headline = v is not None and v.role == "headline"
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="black" if headline else "#dde0e4",
                                   lw=2.0 if headline else 0.6, zorder=3 if headline else 2))
            mark = "\u00b7" if v is None else VERDICT_MARKS[v.verdict]
            ax.text(j + 0.5, i + 0.5, mark, ha="center", va="center", fontsize=9, zorder=4,
                    color="#555555" if v is None or v.verdict == "inconclusive" else "white")
    ax.set_xlim(0, len(columns))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([j + 0.5 for j in range(len(columns))], [f"{c}\nruns" for c in columns], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([i + 0.5 for i in range(len(rows))], [p.id for _, p in rows], fontsize=8)
    starts = [i for i, (f, _) in enumerate(rows) if i == 0 or rows[i - 1][0] is not f]
    for start in starts[1:]:
        ax.axhline(start, color="black", lw=1.0, zorder=5)
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(rows)
        ax.text(len(columns) + 0.15, (start + end) / 2, rows[start][0].name, va="center", fontsize=8)
    for side in ("right", "bottom", "left", "top"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    handles = [Patch(facecolor=c, label=k) for k, c in VERDICT_COLOURS.items()]
    handles += [Patch(facecolor="white", edgecolor="black", lw=2.0, label="headline (own study)"),
                Patch(facecolor=NOT_APPLICABLE_COLOUR, edgecolor="#dde0e4", label="cannot answer")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, fontsize=7,
              frameon=False)
    return fig


def comparison_view(comparison) -> dict[str, Any]:
    """What the template's comparison page shows (plain strings and numbers)."""
    from .render import fmt_num

    explanations = []
    for family in comparison.families:
        verdicts = comparison.family_headline(family)
        counts = {k: sum(v.verdict == k for v in verdicts) for k in VERDICT_COLOURS}
        pro, con = comparison.evidence(family)
        best = {k: comparison.ranked(family, k) for k in ("supported", "contradicted")}
        explanations.append({
            "for_id": _cell_label(best["supported"][0]) if best["supported"] else "–",
            "against_id": _cell_label(best["contradicted"][0]) if best["contradicted"] else "–",
            "name": family.name, "title": family.title, "run_set": comparison.own_run_set(family) or "–",
            "counts": counts, "for": pro, "against": con,
            "rows": [{"id": v.prediction_id, "statement": _short(v.statement), "verdict": v.verdict,
                      "effect_name": v.effect_name or "–", "effect": fmt_num(v.effect_size),
                      "ci": ci_text(v), "p_adjusted": fmt_num(v.p_adjusted, ".2g"), "n_runs": v.n_runs}
                     for v in verdicts],
        })
    conflicts = []
    for found in comparison.conflict_findings():
        conflict = found["conflict"]
        conflicts.append({
            "question": conflict.question, "why": conflict.why, "sentence": found["sentence"],
            "claims": [f"{c.prediction}: {c.expected_by} expects it to hold, {c.denied_by} to fail"
                       for c in conflict.claims],
            "rows": [{"run_set": r["run_set"], "prediction": r["prediction"], "verdict": r["verdict"],
                      "favours": r["favours"] or "neither", "headline": r["headline"],
                      "effect": fmt_num(r["verdict_obj"].effect_size), "ci": ci_text(r["verdict_obj"]),
                      "p_adjusted": fmt_num(r["verdict_obj"].p_adjusted, ".2g")} for r in found["rows"]],
        })
    cells = len(comparison.cells) + len(comparison.not_applicable)
    return {"explanations": explanations, "conflicts": conflicts, "run_sets": list(comparison.run_sets),
            "evaluated": len(comparison.cells), "cells": cells}


def _cell_label(v) -> str:
    return v.prediction_id if v.role == "headline" else f"{v.prediction_id} (on the {v.run_set} runs)"


def ci_text(v) -> str:
    """'[low, high] (95%)', or '–' when the verdict has no interval."""
    if not (math.isfinite(v.ci_low) and math.isfinite(v.ci_high)):
        return "–"
    return f"[{v.ci_low:.3g}, {v.ci_high:.3g}] ({v.confidence:.0%})"


def _short(statement: str, limit: int = 160) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "\u2026"
