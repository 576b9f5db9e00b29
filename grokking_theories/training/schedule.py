"""When to log metrics and keep checkpoints.

Log-spaced steps resolve memorisation (the first hundreds of steps); a
linear grid resolves the late, abrupt test transition with even spacing.
"""
from __future__ import annotations

import numpy as np


def log_linear_steps(max_steps: int, n_log: int, every: int) -> np.ndarray:
    """Sorted unique steps in [0, max_steps]: n_log log-spaced plus every ``every``, and both ends."""
    steps = {0, max_steps}
    if n_log > 0 and max_steps > 0:
        steps.update(np.unique(np.round(np.logspace(0, np.log10(max_steps), n_log)).astype(int)).tolist())
    if every > 0:
        steps.update(range(0, max_steps + 1, every))
    return np.array(sorted(steps), dtype=np.int64)


def metric_steps(budget) -> np.ndarray:
    return log_linear_steps(budget.max_steps, budget.log_points, budget.log_every)


def checkpoint_steps(budget) -> np.ndarray:
    """Candidate checkpoint steps over the whole budget: 2N log-spaced plus a linear grid of 4N.

    The trainer keeps every candidate it reaches, then :func:`thin_checkpoints`
    keeps N of them spread over the steps the run actually took, so a run that
    stops early after grokking still has N checkpoints (N = ``budget.checkpoints``).
    """
    n = budget.checkpoints
    if n <= 0:
        return np.array([], dtype=np.int64)
    return log_linear_steps(budget.max_steps, 2 * n, max(1, budget.max_steps // (4 * n)))


def thin_checkpoints(candidates, last: int, n: int) -> np.ndarray:
    """Indices of at least ``n`` of the sorted candidate steps: half log-spaced, half even over [0, last].

    Each target step takes its nearest candidate; where targets share one, the
    remaining slots go to the candidates farthest from those already kept. The
    first and the last candidate are always kept.
    """
    steps = np.asarray(candidates, dtype=np.int64)
    if len(steps) <= n:
        return np.arange(len(steps))
    targets = log_linear_steps(int(last), max(n // 2, 1), max(1, int(last) // max(n // 2, 1)))
    pos = np.clip(np.searchsorted(steps, targets), 1, len(steps) - 1)
    nearest = np.where(targets - steps[pos - 1] <= steps[pos] - targets, pos - 1, pos)
    chosen = set(nearest.tolist()) | {0, len(steps) - 1}
    while len(chosen) < n:
        kept = np.array(sorted(chosen))
        rest = np.setdiff1d(np.arange(len(steps)), kept)
        gaps = np.abs(steps[rest][:, None] - steps[kept][None, :]).min(axis=1)
        chosen.add(int(rest[np.argmax(gaps)]))
    return np.array(sorted(chosen))
