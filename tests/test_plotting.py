"""The plotting layer (grokking_theories.plotting): its seaborn-style signatures and what it draws.

The table is planted: three runs of one metric whose values are known at every step, one of them stopped
early, so the bold mean line can be checked against a hand-computed mean.
"""
from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from grokking_theories import plotting
from grokking_theories.plotting import (MEAN_LW, SEED_ALPHA, SEED_LW, accuracy_grid, curves_by, new_figure,
                                        palette, seed_mean, seeds_and_mean)

DRAWING = (seeds_and_mean, curves_by, accuracy_grid)


def planted_table() -> pd.DataFrame:
    """Runs a, b, c of 'loss' (plus a 'noise' metric that must be ignored) at steps 0, 1, 10, 100; c stops at 10."""
    rows = []
    values = {"a": [9.0, 1.0, 2.0, 3.0], "b": [9.0, 3.0, 4.0, 5.0], "c": [9.0, 2.0, 6.0]}
    for run, vals in values.items():
        for step, v in zip((0, 1, 10, 100), vals):
            rows.append({"run_id": run, "step": step, "metric": "loss", "value": v, "wd": 0.1 if run != "b" else 1.0})
            rows.append({"run_id": run, "step": step, "metric": "noise", "value": -50.0, "wd": 0.1})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("func", DRAWING, ids=lambda f: f.__name__)
def test_drawing_functions_take_data_first_and_the_rest_by_keyword(func):
    params = list(inspect.signature(func).parameters.values())
    assert params[0].name == "data"
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params[1:] and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), \
        [(p.name, p.kind) for p in params[1:]]


def test_seeds_and_mean_draws_a_faded_line_per_run_and_a_bold_mean():
    fig, axes = new_figure(1, 1)
    ax = axes[0][0]
    mean_line = seeds_and_mean(data=planted_table(), metric="loss", ax=ax, color="tab:red", label="mean")
    lines = ax.get_lines()
    assert len(lines) == 3 + 1  # a, b, c, then the mean
    seeds, mean = lines[:3], lines[3]
    assert mean is mean_line and mean.get_label() == "mean"
    for line in seeds:
        assert line.get_alpha() == SEED_ALPHA and line.get_linewidth() == SEED_LW
        assert line.get_label().startswith("_")  # no legend entry per run
    assert mean.get_alpha() is None and mean.get_linewidth() == MEAN_LW
    assert all(line.get_color() == "tab:red" for line in lines)
    # step 0 left out (log step axis); the runs' own values, in run order
    assert [line.get_xdata().tolist() for line in seeds] == [[1, 10, 100], [1, 10, 100], [1, 10]]
    assert seeds[2].get_ydata().tolist() == [2.0, 6.0]
    # the mean at each step; run c, stopped at step 10, holds its last value (6) at step 100
    assert mean.get_xdata().tolist() == [1.0, 10.0, 100.0]
    assert mean.get_ydata() == pytest.approx([2.0, 4.0, (3.0 + 5.0 + 6.0) / 3])
    assert ax.get_legend_handles_labels() == ([mean], ["mean"])


def test_seeds_and_mean_on_rows_without_a_drawable_value_draws_nothing():
    fig, axes = new_figure()
    table = planted_table()
    assert seeds_and_mean(table[table["step"] == 0], metric="loss", ax=axes[0][0], color="k") is None
    assert seeds_and_mean(table, metric="absent", ax=axes[0][0], color="k") is None
    assert axes[0][0].get_lines() == []


def test_seed_mean_interpolates_in_log_step():
    grid, mean = seed_mean([(np.array([1.0, 100.0]), np.array([0.0, 2.0])), (np.array([10.0]), np.array([5.0]))])
    assert grid.tolist() == [1.0, 10.0, 100.0]
    assert mean.tolist() == [2.5, 3.0, 3.5]  # halfway in log step; the one-point run is constant


def test_curves_by_gives_each_hue_level_one_palette_colour_and_label():
    fig, axes = new_figure()
    ax = axes[0][0]
    handles = curves_by(planted_table(), metric="loss", hue="wd", ax=ax, label_fmt="wd={:g}")
    assert [h.get_label() for h in handles] == ["wd=0.1", "wd=1"]
    colours = palette(2)
    assert [tuple(h.get_color()) for h in handles] == [tuple(c) for c in colours]
    assert len(ax.get_lines()) == 2 + 1 + 1 + 1  # runs a, c and their mean; run b and its mean
    assert handles[1].get_ydata() == pytest.approx([3.0, 4.0, 5.0])  # one run: its mean is itself
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "loss"
    assert curves_by(planted_table(), metric="absent", hue="wd", ax=ax) == []


def test_accuracy_grid_has_a_train_and_a_test_panel_per_row_level():
    table = planted_table().replace({"metric": {"loss": "test_acc", "noise": "train_acc"}})
    fig = accuracy_grid(table, hue="wd", label_fmt="wd={:g}", rows="wd")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["train_acc, wd 0.1", "test_acc, wd 0.1", "train_acc, wd 1", "test_acc, wd 1"]


def test_palette_orders_along_viridis_and_leaves_its_yellow_top_out():
    import matplotlib

    ordered = palette(3)
    viridis = matplotlib.colormaps["viridis"]
    assert ordered[0] == pytest.approx(viridis(0.0)[:3])
    assert ordered[-1] == pytest.approx(viridis(plotting.VIRIDIS_TOP)[:3])
    import seaborn as sns

    assert palette(3, ordered=False) == sns.color_palette("deep", 3)


def test_new_figure_is_not_registered_with_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig, axes = new_figure(3, 2, width=2.0, height=1.5, sharex=True)
    assert plt.get_fignums() == before
    assert axes.shape == (2, 3) and tuple(fig.get_size_inches()) == (6.0, 3.0)
    fig, axes = new_figure()
    assert axes.shape == (1, 1)


def test_importing_the_plotting_layer_leaves_matplotlib_unimported():
    code = ("import sys, grokking_theories.plotting, grokking_theories.report; "
            "print(sorted(m for m in ('matplotlib', 'seaborn', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
