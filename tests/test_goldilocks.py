"""Known-answer tests of the Goldilocks predictions on synthetic tables with planted effects."""
import numpy as np
import pytest

from grokking_theories.config import make_run_config
from grokking_theories.theories import get_family
from grokking_theories.theories.goldilocks import band
from grokking_theories.theories.synthetic import synthetic_table

BASE = dict(op="add", p=59, arch="mlp", width=128, lr=1e-2, max_steps=20000)
ALPHAS = (0.25, 1.0, 4.0, 16.0, 64.0)
NORMS = (2.0, 3.0, 4.5, 6.0, 8.0, 11.0, 16.0)


def configs(seeds=range(4), alphas=ALPHAS, norms=NORMS, wd=1.0):
    free = [make_run_config({**BASE, "alpha": a, "weight_decay": wd, "seed": s}) for a in alphas for s in seeds]
    fixed = [make_run_config({**BASE, "fixed_norm": f, "weight_decay": 0.0, "seed": s}) for f in norms for s in seeds]
    return free + fixed


def verdict(pid, table):
    pred = {p.id: p for p in get_family("goldilocks").predictions}[pid]
    return pred.evaluate(table, "planted")


def test_g1_delay_growing_with_alpha_is_supported_and_shrinking_is_contradicted():
    # no delay at alpha = 0.25 (t_grok ~ 1.3 t_fit), then growing; alpha = 64 never groks (censored)
    grows = synthetic_table(configs(), t_grok=lambda c: 130 + 300 * (c.model.alpha / 0.25 - 1))
    v = verdict("G1", grows)
    assert v.verdict == "supported", v.summary()
    assert v.effect_size > 0.8 and v.ci_low > 0
    assert "of 20 delays censored" in v.notes and v.n_runs == 20
    shrinks = synthetic_table(configs(), t_grok=lambda c: 150 + 3000 / c.model.alpha ** 0.8)
    assert verdict("G1", shrinks).verdict == "contradicted"


def test_g2_lu_shape_supported_and_monotone_contradicted():
    v = verdict("G2", synthetic_table(configs(), w_c=6.0))
    assert v.verdict == "supported", v.summary()
    assert "test-loss minimum at fixed norm 6 w0" in v.notes
    # Goldilocks radius far below the sweep: test loss rises monotonically with the norm
    assert verdict("G2", synthetic_table(configs(), w_c=0.3)).verdict == "contradicted"


def _plant_norm_at_grok(table, target):
    """Rewrite weight_norm so that every run reaches ``target`` by its grokking time (or not)."""
    table = table.copy()
    for run_id, g in table.groupby("run_id"):
        acc = g[g.metric == "test_acc"].sort_values("step")
        hit = acc[acc.value >= 0.99]
        t_g = float(hit.step.iloc[0]) if len(hit) else float(acc.step.max())
        rows = (table.run_id == run_id) & (table.metric == "weight_norm")
        steps = table.loc[rows, "step"].to_numpy(float)
        w0 = table.loc[rows, "value"].to_numpy(float)[0]
        table.loc[rows, "value"] = target(g) + (w0 - target(g)) * np.exp(-8 * steps / t_g)
    return table


def test_g3_norm_band_at_grok():
    base = synthetic_table(configs(), t_grok=lambda c: 300 + 200 * c.model.alpha ** 0.5)
    assert verdict("G3", _plant_norm_at_grok(base, lambda g: 50.0)).verdict == "supported"
    spread = _plant_norm_at_grok(base, lambda g: 10.0 * g["alpha"].iloc[0])  # norm at grok scales with alpha
    assert verdict("G3", spread).verdict == "contradicted"


def test_g4_fixed_norm_in_band_removes_delay():
    table = synthetic_table(configs(), w_c=6.0, t_grok=lambda c: 3000.0)
    assert band(table) == (4.5, 8.0)
    v = verdict("G4", table)
    assert v.verdict == "supported", v.summary()
    none_in_band = synthetic_table(configs(), w_c=100.0, t_grok=lambda c: 3000.0)
    assert band(none_in_band) is None
    assert verdict("G4", none_in_band).verdict == "contradicted"


def test_predictions_need_their_arms():
    free_only = synthetic_table(configs(norms=()))
    for pid in ("G2", "G4"):
        v = verdict(pid, free_only)
        assert v.verdict == "inconclusive" and "fixed_norm" in v.notes


def test_figures_render_on_a_planted_table():
    table = synthetic_table(configs(seeds=range(2)), w_c=6.0)
    for figure in get_family("goldilocks").figures:
        fig = figure(table)
        assert fig is not None and len(fig.axes) >= 1, figure.__name__
