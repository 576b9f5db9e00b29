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
