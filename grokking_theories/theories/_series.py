"""Reading one run's curves out of the tidy table."""
from __future__ import annotations

import numpy as np


def run_series(group, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric of one run, sorted by step, finite values only."""
    rows = group[group["metric"] == metric]
    steps = rows["step"].to_numpy(dtype=float)
    values = rows["value"].to_numpy(dtype=float)
    order = np.argsort(steps)
    steps, values = steps[order], values[order]
    keep = np.isfinite(values)
    return steps[keep], values[keep]


def runs(table):
    """Iterate (run_id, rows of that run)."""
    return table.groupby("run_id", sort=True)


def grok_times(table):
    """:func:`grokking_theories.stats.grokking_times`, or InsufficientDataError on a table with no runs."""
    from ..stats import InsufficientDataError, grokking_times

    if table.empty:
        raise InsufficientDataError("no runs of the kind this prediction needs in the run set")
    return grokking_times(table)


def series_by_run(table, metrics) -> dict:
    """run_id -> {metric: (steps, values)} sorted by step, finite values only; every run of the table.

    One pass over the table (factorised keys), not one boolean filter per run and metric: calibration
    draws call it thousands of times.
    """
    import pandas as pd

    out = {rid: {} for rid in sorted(pd.unique(table["run_id"]))}
    sub = table[table["metric"].isin(list(metrics))]
    if sub.empty:
        return out
    rcodes, rids = pd.factorize(sub["run_id"])
    mcodes, names = pd.factorize(sub["metric"])
    steps = sub["step"].to_numpy(dtype=float)
    values = sub["value"].to_numpy(dtype=float)
    order = np.lexsort((steps, mcodes, rcodes))
    key = rcodes[order] * len(names) + mcodes[order]
    cuts = np.flatnonzero(np.diff(key)) + 1
    for chunk in np.split(order, cuts):
        s, v = steps[chunk], values[chunk]
        keep = np.isfinite(v)
        out[rids[rcodes[chunk[0]]]][names[mcodes[chunk[0]]]] = (s[keep], v[keep])
    return out


def first_step(series, level: float) -> float | None:
    """First logged step at which a (steps, values) series reaches ``level`` (None: never)."""
    steps, values = series
    hit = np.nonzero(values >= level)[0]
    return float(steps[hit[0]]) if hit.size else None


def one_sample_decision(values, n_eligible: int, n_excluded: int, notes: str, *, null: float, expected: str,
                        test: str, statistic_name: str, effect_name: str, describe, min_runs: int,
                        max_excluded_frac: float):
    """Two-sided one-sample t-test of per-run values against ``null``, with an exclusion cap.

    ``n_eligible`` runs were eligible (e.g. grokked), ``n_excluded`` of them
    could not give a value; when more than ``max_excluded_frac`` of the
    eligible runs were excluded the verdict is inconclusive whatever the test
    says (the used runs could be a selected minority). Fewer than
    ``min_runs`` values, or values that do not vary, raise
    InsufficientDataError.
    """
    import dataclasses
    import math

    from ..levels import ALPHA
    from ..stats import InsufficientDataError, directional_outcome

    values = np.asarray(values, float)
    n = len(values)
    if n_eligible == 0:
        raise InsufficientDataError(notes + "; no run reached the transition")
    if n < min_runs:
        raise InsufficientDataError(f"{n} usable run(s), the rule needs {min_runs}; {notes}")
    mean = float(np.mean(values))
    se = float(np.std(values, ddof=1) / math.sqrt(n))
    if not (np.isfinite(se) and se > 0):
        raise InsufficientDataError(f"the {n} per-run values do not vary; {notes}")
    notes = f"{notes}; {describe(mean)}"
    out = directional_outcome(estimate=mean, se=se, df=n - 1, expected=expected, null=null, alpha=ALPHA,
                              test=test, statistic_name=statistic_name, effect_name=effect_name, n_runs=n,
                              notes=notes)
    if n_excluded > max_excluded_frac * n_eligible:
        cap = (f"inconclusive by the exclusion cap: {n_excluded} of {n_eligible} eligible runs excluded "
               f"(> {max_excluded_frac:.0%}); the test alone would say '{out.verdict}'")
        out = dataclasses.replace(out, verdict="inconclusive", notes=f"{out.notes}; {cap}")
    return out
