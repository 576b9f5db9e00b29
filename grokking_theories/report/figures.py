"""The report's own figures, and turning any matplotlib figure into deterministic PNG bytes.

The figures are drawn with :mod:`grokking_theories.plotting` (figures with
their own Agg canvas, not pyplot's; seaborn's look scoped to a ``with``
block), so building a report leaves the caller's matplotlib state as it was.
This module adds what is the report's own: the hue groups (one colour per
combination of the config values that vary within an arm), the grokking and
weight-norm figures, and saving a figure as PNG bytes that depend only on
what is drawn.
"""
from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .render import format_value

#: Resolution of every PNG. Fixed: the bytes (and the golden files) must not depend on rcParams.
DPI = 100

#: The four panels of the grokking plot: (metric, title, log y axis).
GROKKING_PANELS = (
    ("train_acc", "train accuracy", False),
    ("test_acc", "test accuracy", False),
    ("train_loss", "train loss", True),
    ("test_loss", "test loss", True),
)


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report.

    Attributes
    ----------
    key : str
        Stable identifier (``grokking:<arm>``, ``weight_norm``, ``<family>:<function>``).
    title : str
    caption : str
    png : bytes
        The figure as PNG, saved by :func:`png_bytes`.
    """

    key: str
    title: str
    caption: str
    png: bytes


def png_bytes(fig, *, tight: bool = True) -> bytes:
    """Save a figure as PNG bytes that depend only on what is drawn.

    ``metadata={"Software": None}`` drops the matplotlib version stamp and
    the dpi is fixed, so the same data gives the same bytes on every build.
    ``tight`` crops to the drawn content (for figures of unknown layout, such
    as the families'); it costs one extra draw, so figures laid out by the
    constrained-layout engine skip it.
    """
    buf = io.BytesIO()
    extra = {"bbox_inches": "tight", "pad_inches": 0.1} if tight else {}
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white", **extra)
    return buf.getvalue()


def close_figure(fig) -> None:
    """Release a figure: pyplot keeps a reference to the figures it made until they are closed."""
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        plt.close(fig)


# ---------------------------------------------------------------------- hue groups


def _sort_key(value):
    """Numbers before text before missing values, so hue order is stable whatever the mix."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    if isinstance(value, (bool, np.bool_)):
        return (1, 0.0, str(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _run_keys(table, hue_cols: Sequence[str]) -> dict[str, tuple]:
    """run_id -> its values of the hue columns."""
    if table.empty:
        return {}
    first = table.drop_duplicates("run_id").sort_values("run_id")
    keys = {}
    for _, row in first.iterrows():
        vals = []
        for c in hue_cols:
            v = row[c] if c in first.columns else None
            vals.append(None if _is_missing(v) else (v.item() if isinstance(v, np.generic) else v))
        keys[str(row["run_id"])] = tuple(vals)
    return keys


def _is_missing(v) -> bool:
    if v is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def hue_label(hue_cols: Sequence[str], key: tuple, default: str = "all runs") -> str:
    if not hue_cols:
        return default
    return ", ".join(f"{c}={format_value(v)}" for c, v in zip(hue_cols, key))


def _groups(table, run_ids: Sequence[str], hue_cols: Sequence[str], default: str):
    """[(label, [run ids])] in hue-value order, and each group's key."""
    keys = _run_keys(table[table["run_id"].isin(set(run_ids))], hue_cols)
    by_key: dict[tuple, list[str]] = {}
    for rid in sorted(keys):
        by_key.setdefault(keys[rid], []).append(rid)
    ordered = sorted(by_key, key=lambda k: tuple(_sort_key(v) for v in k))
    return [(hue_label(hue_cols, k, default), by_key[k]) for k in ordered], ordered


def _panel(ax, table, groups, colors, metric: str, *, log_y: bool) -> list:
    """One metric of each hue group (:func:`~grokking_theories.plotting.seeds_and_mean`); returns legend handles."""
    from ..plotting import seeds_and_mean

    rows = table[table["metric"] == metric]
    handles = []
    for (label, run_ids), color in zip(groups, colors):
        line = seeds_and_mean(rows[rows["run_id"].isin(set(run_ids))], ax=ax, color=color, label=label)
        if line is not None:
            handles.append(line)
    ax.set_xscale("log")
    # A log y axis only pays off over two decades or more; over less, matplotlib labels its minor
    # ticks ("3 x 10^0"), which reads worse than a linear axis. The data limits span the drawn runs.
    low, high = ax.dataLim.intervaly
    if log_y and handles and low > 0 and high / low >= 100:
        from matplotlib.ticker import NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
    if not handles:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
    return handles


def _hue_palette(keys: list[tuple]) -> list:
    """Colours of the hue groups: an ordered knob (one numeric column, > 2 values) on viridis, else 'deep'."""
    from ..plotting import palette

    numeric = bool(keys) and all(len(k) == 1 and _sort_key(k[0])[0] == 0 for k in keys)
    return palette(len(keys), ordered=numeric and len(keys) > 2)


def grokking_figure(table, arm: str, run_ids: Sequence[str], hue_cols: Sequence[str]) -> Optional[object]:
    """Train/test accuracy and loss against log step for one arm (a 2 x 2 grid).

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy table (any runs; only ``run_ids`` are drawn).
    arm : str
        Arm name, for the title.
    run_ids : sequence of str
        The arm's runs.
    hue_cols : sequence of str
        Config columns that vary within the arm (seed excluded): one colour
        per combination; seeds are the faded lines, their mean the bold one.

    Returns
    -------
    matplotlib.figure.Figure or None
        None when the arm has no logged accuracy or loss.
    """
    from ..plotting import new_figure, style

    sub = table[table["run_id"].isin(set(run_ids))]
    if sub.empty or not sub["metric"].isin([m for m, _, _ in GROKKING_PANELS]).any():
        return None
    groups, keys = _groups(sub, run_ids, hue_cols, arm)
    with style():
        colors = _hue_palette(keys)
        fig, axes = new_figure(2, 2, width=5.0, height=3.2, layout="constrained", dpi=DPI, sharex=True)
        handles = []
        for ax, (metric, title, log_y) in zip(axes.ravel(), GROKKING_PANELS):
            h = _panel(ax, sub, groups, colors, metric, log_y=log_y)
            handles = handles or h
            ax.set_title(title)
            if metric.endswith("acc"):
                ax.set_ylim(-0.03, 1.03)
        for ax in axes[1]:
            ax.set_xlabel("step")
        fig.suptitle(f"arm {arm}: accuracy and loss (faded: seeds, bold: mean over seeds)")
        if handles:
            fig.legend(handles=handles, loc="outside right upper", title=", ".join(hue_cols) or None,
                       frameon=False)
    return fig


def weight_norm_figure(table, arms: Sequence[tuple[str, Sequence[str], Sequence[str]]]) -> Optional[object]:
    """Weight norm against log step, one panel per arm, same seed/mean convention as the grokking plot.

    Parameters
    ----------
    table : pandas.DataFrame
    arms : sequence of (arm name, run ids, hue columns)

    Returns
    -------
    matplotlib.figure.Figure or None
        None when no run logged ``weight_norm``.
    """
    from ..plotting import new_figure, style

    if table.empty or not (table["metric"] == "weight_norm").any():
        return None
    ncols = min(len(arms), 2)
    nrows = math.ceil(len(arms) / ncols)
    with style():
        fig, axes = new_figure(ncols, nrows, width=5.4, height=3.6, layout="constrained", dpi=DPI)
        axes = axes.ravel()
        for ax, (arm, run_ids, hue_cols) in zip(axes, arms):
            sub = table[table["run_id"].isin(set(run_ids))]
            groups, keys = _groups(sub, run_ids, hue_cols, arm)
            handles = _panel(ax, sub, groups, _hue_palette(keys), "weight_norm", log_y=False)
            ax.set_title(f"arm {arm}")
            ax.set_xlabel("step")
            ax.set_ylabel("weight norm")
            if handles:
                ax.legend(handles=handles, fontsize="small", title=", ".join(hue_cols) or None,
                          title_fontsize="small", frameon=True)
        for ax in axes[len(arms):]:
            ax.set_visible(False)
        fig.suptitle("weight norm (faded: seeds, bold: mean over seeds)")
    return fig
