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
    """``checkpoints`` log-spaced steps plus as many evenly spaced ones.

    The linear half keeps checkpoints dense enough for offline Fourier
    analysis even when a run stops long before its budget.
    """
    n = budget.checkpoints
    if n <= 0:
        return np.array([], dtype=np.int64)
    return log_linear_steps(budget.max_steps, n, max(1, budget.max_steps // n))
