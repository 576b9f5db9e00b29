"""Planted tidy tables for calibration: runs whose grokking times and curves we choose.

Each family's calibration planters (``Calibration.plant``) build their tables
from these pieces, so a planted run looks like a trained one to every rule:
the same tidy columns, the config columns of a real :class:`RunConfig`, and
metrics logged on the trainer's own step schedule (so t_fit and t_grok are
resolved exactly as coarsely as in a real run).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..levels import FIT_ACC, GROK_ACC


def logged_steps(cfg) -> np.ndarray:
    """The steps a real run of ``cfg`` logs metrics at (log-spaced plus linear, to its budget)."""
    from ..training.schedule import metric_steps

    return np.asarray(metric_steps(cfg.budget), dtype=float)


def quick_t_fit(alpha: float, lr: float = 1e-2) -> float:
    """The quick MLP's measured t_fit (train accuracy FIT_ACC) in steps, as the omnigrok and weight_decay quick
    studies measured it (a+b mod 31, train fraction 0.7, lr 1e-2, 2026-11-26): 54-68, 100-150 and 308-470 steps
    at alpha 1, 8 and 64-128, log-linear between 58, 115 and 346 (alpha^0.33 up to 8, alpha^0.53 above), scaled
    by 1e-2 / lr (lr 5e-3 measured 100-119 at alpha 1)."""
    base = 58.0 * alpha ** 0.33 if alpha <= 8 else 115.0 * (alpha / 8) ** 0.53
    return base * 1e-2 / lr


def logistic_logtime(steps, t_mid: float, width: float) -> np.ndarray:
    """0 -> 1 logistic in log10(step) centred on ``t_mid``; ``width`` is its 10-90 % width in decades."""
    lt = np.log10(np.maximum(np.asarray(steps, float), 1.0))
    return 1.0 / (1.0 + np.exp(-(lt - np.log10(max(t_mid, 1.0))) * 2 * np.log(9.0) / width))


def accuracy_curves(steps, t_fit: float, t_grok: float, *, width: float = 0.05) -> dict[str, np.ndarray]:
    """Train accuracy crossing FIT_ACC at ``t_fit`` and test accuracy crossing GROK_ACC at ``t_grok``.

    ``t_grok = inf`` (or beyond the last step) plants a run that never generalises within its budget:
    its test accuracy stays near chance, so every rule sees it as right-censored.
    """
    steps = np.asarray(steps, float)
    train = np.where(steps >= t_fit, 1.0, 0.5 * logistic_logtime(steps, t_fit, 0.3))
    if np.isfinite(t_grok):
        # shift the logistic so that it passes GROK_ACC exactly at t_grok
        shift = width / (2 * np.log(9.0)) * np.log(GROK_ACC / (1 - GROK_ACC))
        test = logistic_logtime(steps, 10 ** (np.log10(max(t_grok, 1.0)) - shift), width)
        test = np.where(steps >= t_grok, np.maximum(test, GROK_ACC), np.minimum(test, GROK_ACC - 1e-3))
    else:
        test = np.full_like(steps, 0.02)
    train = np.where(steps >= t_fit, np.maximum(train, FIT_ACC), np.minimum(train, FIT_ACC - 1e-3))
    return {"train_acc": train, "test_acc": test}


def run_frame(cfg, steps, metrics: Mapping[str, np.ndarray], status: str = "complete"):
    """One run's tidy rows: run_id, status, every config column, step, metric, value."""
    import pandas as pd

    flat = cfg.flat()
    steps = np.asarray(steps, float)
    return pd.concat([pd.DataFrame({"run_id": cfg.run_id, "status": status, **flat, "step": steps,
                                    "metric": name, "value": np.asarray(values, float)})
                      for name, values in metrics.items()], ignore_index=True)


def concat(frames):
    """Frames of several runs as one tidy table."""
    import pandas as pd

    return pd.concat(list(frames), ignore_index=True)


def table_of_runs(runs):
    """One tidy table from ``[(cfg, {metric: (steps, values)})]``: the columns of :func:`run_frame`, built in one go.

    (:func:`run_frame` builds one frame per run and metric; the calibration draws thousands of tables.) Each
    metric may have its own steps (logged metrics on the trainer's grid, probe metrics on the checkpoints).
    """
    import pandas as pd

    lengths = np.array([sum(len(v) for _, v in metrics.values()) for _, metrics in runs])
    head = pd.DataFrame([{"run_id": cfg.run_id, "status": "complete", **cfg.flat()} for cfg, _ in runs])
    table = head.iloc[np.repeat(np.arange(len(runs)), lengths)].reset_index(drop=True)
    table["step"] = np.concatenate([np.asarray(s, float) for _, m in runs for s, _ in m.values()])
    table["metric"] = np.concatenate([np.repeat(name, len(v)) for _, m in runs for name, (_, v) in m.items()])
    table["value"] = np.concatenate([np.asarray(v, float) for _, m in runs for _, v in m.values()])
    return table
