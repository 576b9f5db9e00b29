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


def seeds_and_mean(ax, rows, *, color, label=None):
    """One metric's rows (several runs): each run a faded thin line, the mean over runs bold."""
    for _, g in rows.groupby("run_id"):
        g = g.sort_values("step")
        ax.plot(np.maximum(g["step"], 1), g["value"], color=color, alpha=0.25, lw=0.8)
    # a run that stopped early (after grokking) keeps its last value, so the mean does not jump
    wide = rows.pivot_table(index="step", columns="run_id", values="value").sort_index().ffill()
    mean = wide.mean(axis=1)
    ax.plot(np.maximum(mean.index, 1), mean.values, color=color, lw=2.0, label=label)


def curves_by(ax, table, metric: str, by: str, *, label_fmt="{}", mean_only_legend=True):
    """Seeds as faded thin lines, the mean over seeds bold, one colour per value of ``by``."""
    rows = table[table["metric"] == metric]
    if rows.empty:
        return
    levels = sorted(rows[by].dropna().unique())
    for colour, level in zip(palette(len(levels)), levels):
        seeds_and_mean(ax, rows[rows[by] == level], color=colour, label=label_fmt.format(level))
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)


def accuracy_grid(table, by: str, label_fmt: str, rows: str | None = None):
    """Train and test accuracy against step, one colour per value of ``by``; one row per value of ``rows``."""
    row_levels = sorted(table[rows].unique()) if rows else [None]
    fig, axes = new_figure(2, len(row_levels), width=4.8, height=3.2)
    for row, level in zip(axes, row_levels):
        sub = table if rows is None else table[table[rows] == level]
        for ax, metric in zip(row, ("train_acc", "test_acc")):
            curves_by(ax, sub, metric, by, label_fmt=label_fmt)
            ax.set_title(metric if rows is None else f"{metric}, {rows} {level:g}")
    axes[0][1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
