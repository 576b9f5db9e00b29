"""Shared helpers of the statistics layer: input checking and the one exception.

Kept private: the public names are re-exported by :mod:`grokking_theories.stats`.
"""
from __future__ import annotations

import numpy as np

from ..errors import GrokkingError

#: Columns of the tidy long-form table that are *not* per-run config columns.
MEASUREMENT_COLUMNS = ("step", "metric", "value")

#: Columns every tidy table must have.
REQUIRED_COLUMNS = ("run_id", "step", "metric", "value")


class InsufficientDataError(GrokkingError, ValueError):
    """Too few (usable) observations for the requested statistic.

    Subclasses :class:`ValueError` so generic callers can catch it as one;
    :meth:`grokking_theories.stats.Prediction.evaluate` turns it into an
    'inconclusive' verdict instead of crashing a whole report.
    """


def as_1d_float(values, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float array or raise a ValueError naming it."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def check_same_length(**arrays: np.ndarray) -> int:
    """Raise a ValueError naming the arrays if their lengths differ; return the length."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"arrays must have the same length, got {desc}")
    return next(iter(lengths.values())) if lengths else 0


def as_events(events, name: str = "events") -> np.ndarray:
    """Event indicators as a 0/1 float array; anything but 0/1/True/False is an error.

    Accepting floats like 0.5 silently would corrupt every survival estimate, so
    values are checked rather than cast.
    """
    arr = np.asarray(events)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    as_float = arr.astype(float)
    bad = ~np.isin(as_float, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"{name} must be 0/1 or boolean (1 = event observed, 0 = censored); "
            f"found {as_float[bad][:5].tolist()}"
        )
    return as_float
