"""Tidy rows: validating metric rows on their way in, config columns on their way out."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pandas as pd

from ..config import SECTIONS, RunConfig, from_dict

METRIC_COLUMNS = ("step", "metric", "value")

# pandas dtype of each config column, from the dataclass annotations, so the
# tidy tables have the same dtypes whatever mix of values a store holds (an
# all-None ``fixed_norm`` column is float64 NaN, not object).
_ANNOTATION_DTYPES = {
    "int": "int64",
    "float": "float64",
    "str": "str",
    "bool": "bool",
    "Optional[float]": "float64",
    "Optional[int]": "Int64",
    "Optional[str]": "str",
}


def config_dtypes() -> dict[str, str]:
    out: dict[str, str] = {}
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            dtype = _ANNOTATION_DTYPES.get(str(f.type))
            if dtype is not None:
                out[f.name] = dtype
    out["seed"] = "int64"
    return out


def config_frame(config_jsons: list[str]) -> pd.DataFrame:
    """Flat config columns for a list of stored config JSON strings, with stable dtypes."""
    flats = [from_dict(json.loads(c)).flat() for c in config_jsons]
    names = list(RunConfig().flat())
    frame = pd.DataFrame({name: [f[name] for f in flats] for name in names})
    for name, dtype in config_dtypes().items():
        if name in frame:
            frame[name] = frame[name].astype(dtype)
    return frame


def metric_columns(metrics, rid: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Validate metric rows and return (steps int64, names, values float64)."""
    if isinstance(metrics, pd.DataFrame):
        missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
        if missing:
            raise ValueError(f"run {rid}: metrics frame lacks column(s) {missing}; needs {list(METRIC_COLUMNS)}")
        steps_raw = metrics["step"].to_numpy()
        names = metrics["metric"].tolist()
        values_raw = metrics["value"].to_numpy()
    else:
        rows = list(metrics)
        for row in rows:
            if len(row) != 3:
                raise ValueError(f"run {rid}: metric rows must be (step, metric, value), got {row!r}")
        steps_raw = np.asarray([r[0] for r in rows])
        names = [r[1] for r in rows]
        values_raw = [r[2] for r in rows]
    if len(names) == 0:
        return np.zeros(0, dtype=np.int64), [], np.zeros(0, dtype=np.float64)

    bad_names = [n for n in names if not isinstance(n, str)]
    if bad_names:
        raise ValueError(f"run {rid}: metric names must be str, got {bad_names[0]!r}")
    steps_raw = np.asarray(steps_raw)
    if steps_raw.dtype.kind in "iu":
        steps = steps_raw.astype(np.int64)
    else:
        try:
            as_float = steps_raw.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"run {rid}: metric steps must be integers ({exc})") from exc
        if steps_raw.dtype.kind == "b" or not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise ValueError(f"run {rid}: metric steps must be integers, got dtype {steps_raw.dtype}")
        steps = as_float.astype(np.int64)
    raw = np.asarray(values_raw)
    # Reject text outright: numpy would silently parse "0.5", hiding a column mix-up.
    if raw.dtype.kind in "US" or (raw.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in raw.ravel())):
        raise ValueError(f"run {rid}: metric values must be numeric, got text")
    try:
        values = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run {rid}: metric values must be numeric ({exc})") from exc
    if values.shape != (len(names),) or steps.shape != (len(names),):
        raise ValueError(f"run {rid}: metric steps, names and values must be 1-d and of equal length")
    return steps, names, values


def json_default(obj: Any):
    # numpy and torch scalars are what summaries are usually made of.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "numel", lambda: 0)() == 1:
        return item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dump_summary(summary: dict, rid: str) -> str:
    if not isinstance(summary, dict):
        raise ValueError(f"run {rid}: summary must be a dict, got {type(summary).__name__}")
    try:
        return json.dumps(summary, sort_keys=True, default=json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run {rid}: summary is not JSON serialisable: {exc}") from exc
