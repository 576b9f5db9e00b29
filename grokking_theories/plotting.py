"""The one plotting layer: figures, colours and the seeds-and-mean curves of the report and every family.

Functions that draw take the tidy long-form table (``run_id``, ``step``,
``metric``, ``value`` and config columns, as
:meth:`~grokking_theories.store.RunStore.metrics_table` returns it) as
``data``, their first parameter, and everything else by keyword, like
seaborn's::

    from grokking_theories.plotting import curves_by, new_figure, seeds_and_mean

    fig, axes = new_figure(2, 1)
    curves_by(data=table, metric="test_acc", hue="weight_decay", ax=axes[0][0], label_fmt="wd={:g}")
    seeds_and_mean(data=table, metric="weight_norm", ax=axes[0][1], color="black", label="all runs")

The convention is the same everywhere: each run (seed) is a thin faded
line, the mean over runs a bold one (:func:`seeds_and_mean`), against the
step on a log axis, so step 0 is left out.

Figures are :class:`matplotlib.figure.Figure` objects with their own Agg
canvas (:func:`new_figure`), not pyplot's: no backend switch, no figure
registry to leak into, so drawing works without a display and leaves the
caller's matplotlib state as it was. matplotlib and seaborn are imported
inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

#: Faded per-run lines and the bold mean: (line width, alpha) and the mean's line width.
SEED_LW, SEED_ALPHA, MEAN_LW = 0.7, 0.3, 2.0

#: Share of viridis an ordered palette spans: its top is a yellow that vanishes on white.
VIRIDIS_TOP = 0.85


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 5.0, height: float = 3.6,
               layout: Optional[str] = None, dpi: Optional[float] = None, **subplot_kw):
    """A figure of ``nrows`` x ``ncols`` panels, each ``width`` x ``height`` inches.

    Parameters
    ----------
    ncols, nrows : int
        Panels per row and rows.
    width, height : float
        Size of one panel in inches.
    layout : str, optional
        matplotlib's layout engine (``"constrained"``, ``"tight"``); default none.
    dpi : float, optional
        Default: rcParams.
    **subplot_kw
        Passed to :meth:`matplotlib.figure.Figure.subplots` (``sharex=True``, ...).

    Returns
    -------
    (matplotlib.figure.Figure, numpy.ndarray)
        The figure (with an Agg canvas, not registered with pyplot) and its axes as a 2-D array
        (``axes[row][col]``), also for one panel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def palette(n: int, *, ordered: bool = True) -> list:
    """``n`` colours (RGB tuples).

    ``ordered`` levels (the values of a knob: alpha, weight decay, width) run along viridis from its
    dark end to :data:`VIRIDIS_TOP`; unordered ones are seaborn's ``"deep"`` palette.
    """
    import seaborn as sns

    if not ordered:
        return sns.color_palette("deep", n)
    cmap = sns.color_palette("viridis", as_cmap=True)
    return [tuple(cmap(x)[:3]) for x in np.linspace(0.0, VIRIDIS_TOP, n)]


def style():
    """seaborn's whitegrid look, scoped: ``with style(): ...``; the rcParams revert when the block ends."""
    import contextlib

    import matplotlib
    import seaborn as sns

    stack = contextlib.ExitStack()
    stack.enter_context(matplotlib.rc_context())
    stack.enter_context(sns.axes_style("whitegrid"))
    stack.enter_context(sns.plotting_context("notebook", font_scale=0.85))
    return stack


def seed_mean(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds on the union of their steps.

    Each seed is interpolated linearly in log-step; past its last logged
    step it keeps its last value (a run stopped after grokking stays where
    it ended), so the mean does not jump where one seed's log ends.

    Parameters
    ----------
    curves : sequence of (steps, values)
        One pair of arrays per seed; steps ascending and >= 1.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The union of the steps and the mean there.
    """
    grid = np.unique(np.concatenate([s for s, _ in curves]))
    lg = np.log10(grid)
    stack = np.vstack([np.interp(lg, np.log10(s), v) for s, v in curves])
    return grid, stack.mean(axis=0)


def _curves(data, x: str, y: str, units: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x, y) of each unit in unit order: finite y at x >= 1 (a log axis has no step 0), x ascending."""
    out = []
    for _, g in data.groupby(units, sort=True):
        xs = g[x].to_numpy(dtype=float)
        ys = g[y].to_numpy(dtype=float)
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
        keep = np.isfinite(ys) & (xs >= 1)
        if keep.any():
            out.append((xs[keep], ys[keep]))
    return out


def seeds_and_mean(data, *, ax, color, label: Optional[str] = None, metric: Optional[str] = None,
                   x: str = "step", y: str = "value", units: str = "run_id"):
    """Each run a thin faded line, the mean over runs (:func:`seed_mean`) a bold one, in one colour.

    Parameters
    ----------
    data : pandas.DataFrame
        Tidy long-form rows of several runs.
    ax : matplotlib.axes.Axes
    color
        Any matplotlib colour.
    label : str, optional
        Legend label of the mean line (the runs' lines have none).
    metric : str, optional
        Draw only the rows of this metric (``data["metric"] == metric``); default: every row, so
        ``data`` must then hold one metric.
    x, y, units : str
        Columns of the step, the value and the run.

    Returns
    -------
    matplotlib.lines.Line2D or None
        The mean line (a legend handle), or None when no run has a finite value at a step >= 1.
    """
    rows = data if metric is None else data[data["metric"] == metric]
    curves = _curves(rows, x, y, units) if not rows.empty else []
    if not curves:
        return None
    for xs, ys in curves:
        ax.plot(xs, ys, color=color, lw=SEED_LW, alpha=SEED_ALPHA)
    grid, mean = seed_mean(curves)
    (line,) = ax.plot(grid, mean, color=color, lw=MEAN_LW, label=label)
    return line


def curves_by(data, *, metric: str, hue: str, ax, label_fmt: str = "{}") -> list:
    """One metric against log step, one colour per value of the column ``hue`` (:func:`seeds_and_mean` each).

    Parameters
    ----------
    data : pandas.DataFrame
        Tidy long-form table.
    metric : str
    hue : str
        Config column; its values, sorted, get :func:`palette` colours.
    ax : matplotlib.axes.Axes
    label_fmt : str
        Legend label of each value, e.g. ``"wd={:g}"``.

    Returns
    -------
    list of matplotlib.lines.Line2D
        The mean lines (legend handles); empty when ``data`` has no row of ``metric``.
    """
    rows = data[data["metric"] == metric]
    if rows.empty:
        return []
    levels = sorted(rows[hue].dropna().unique())
    handles = []
    for colour, level in zip(palette(len(levels)), levels):
        line = seeds_and_mean(rows[rows[hue] == level], ax=ax, color=colour, label=label_fmt.format(level))
        if line is not None:
            handles.append(line)
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    return handles


def accuracy_grid(data, *, hue: str, label_fmt: str = "{}", rows: Optional[str] = None):
    """Train and test accuracy against step, one colour per value of ``hue``; one row of panels per value of ``rows``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    row_levels = sorted(data[rows].unique()) if rows else [None]
    fig, axes = new_figure(2, len(row_levels), width=4.8, height=3.2)
    for row, level in zip(axes, row_levels):
        sub = data if rows is None else data[data[rows] == level]
        for ax, metric in zip(row, ("train_acc", "test_acc")):
            curves_by(sub, metric=metric, hue=hue, ax=ax, label_fmt=label_fmt)
            ax.set_title(metric if rows is None else f"{metric}, {rows} {level:g}")
    axes[0][1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


__all__ = ["accuracy_grid", "curves_by", "new_figure", "palette", "seed_mean", "seeds_and_mean", "style"]
