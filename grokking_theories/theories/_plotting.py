"""Small plotting helpers shared by the families' report figures (matplotlib, Agg, no global state)."""
from __future__ import annotations

import numpy as np


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6, **kwargs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)
    return fig, axes


def palette(n: int):
    import seaborn as sns
    return sns.color_palette("viridis", max(n, 1))


def curves_by(ax, table, metric: str, by: str, *, label_fmt="{}", mean_only_legend=True):
    """Seeds as faded thin lines, the mean over seeds bold, one colour per value of ``by``."""
    rows = table[table["metric"] == metric]
    if rows.empty:
        return
    levels = sorted(rows[by].dropna().unique())
    for colour, level in zip(palette(len(levels)), levels):
        sub = rows[rows[by] == level]
        for _, g in sub.groupby("run_id"):
            g = g.sort_values("step")
            ax.plot(np.maximum(g["step"], 1), g["value"], color=colour, alpha=0.25, lw=0.8)
        mean = sub.groupby("step")["value"].mean()
        ax.plot(np.maximum(mean.index, 1), mean.values, color=colour, lw=2.0, label=label_fmt.format(level))
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
