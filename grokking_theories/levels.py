"""One home for every threshold and level the package decides with.

A rule's text (in the report and the docs) and its code read the same
constant from here, so the two cannot drift. Change a value here and every
rule, figure caption and docs page that quotes it follows.
"""
from __future__ import annotations

#: Family-wise level: one Holm family made of a report's headline verdicts is controlled at this level.
ALPHA = 0.05
#: Level of every confidence interval a verdict reports (two-sided), unless a rule says otherwise.
CONFIDENCE = 1 - ALPHA

#: t_fit: first logged step with train accuracy >= FIT_ACC (Power et al.'s 99 %).
FIT_ACC = 0.99
#: t_grok: first logged step with test accuracy >= GROK_ACC (Power et al.'s 99 %). Every rule that
#: asks "did the run generalise?" uses this one threshold (no second, looser "band" threshold).
GROK_ACC = 0.99
#: t_grok50: first logged step with test accuracy >= HALF_ACC (the midpoint of the transition).
HALF_ACC = 0.5

#: Below this many runs a confidence interval is computed by exact or t / profile-likelihood methods,
#: never the bootstrap (percentile intervals from a handful of runs undercover badly).
MIN_BOOTSTRAP_RUNS = 10


def pct(level: float) -> str:
    """A level as rule text writes it: 0.99 -> '0.99', 0.05 -> '0.05'."""
    return f"{level:g}"
