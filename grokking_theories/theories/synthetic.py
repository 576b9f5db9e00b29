"""Synthetic tidy tables with planted grokking curves.

Used by :func:`check_family` (every prediction must run on one and return a
Verdict) and by tests that plant a known effect. Each run fits at ``t_fit``
and generalises at ``t_grok`` (logistic in log-time); the caller decides how
t_grok depends on the config, and every logged metric is produced. Metrics of
probes (``probes=``) are planted by each probe's own ``plant``
(:class:`~grokking_theories.probes.stage.Probe`).
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from ..config import RunConfig
from ..probes import MARGIN_QUANTILES


def default_t_grok(cfg: RunConfig) -> float:
    """A plausible dependence: slower with larger init and smaller decay (Omnigrok, Power)."""
    decay = max(cfg.optim.lr * cfg.optim.weight_decay, 1e-5)
    return 300 + 2.0 * (1 + np.log(max(cfg.model.alpha, 1e-3)) ** 2) / decay


def synthetic_table(configs: Sequence[RunConfig], seed: int = 0,
                    t_grok: Optional[Callable[[RunConfig], float]] = None,
                    acc_width: float = 0.08, smooth_width: float = 0.35, w_c: Optional[float] = None,
                    *, probes: Iterable = ()):
    """One tidy table (run_id, status, config columns, step, metric, value) for ``configs``.

    Accuracy switches with log10-width ``acc_width``; loss, margin and
    probabilities move with the wider ``smooth_width``, as the sharpness
    claim expects. Runs whose planted t_grok exceeds the budget never grok.
    Fixed-norm runs follow the LU picture around the Goldilocks radius ``w_c``
    (default: the geometric middle of the swept fixed norms) and generalise
    without delay within log-distance 0.35 of it.

    ``probes``: probes (or registered names) whose metrics are planted too, by
    each probe's ``plant(cfg, steps, progress, rng)``; ``progress`` holds the
    run's ``fit``, ``gen`` (smooth generalisation progress, 0..1), ``test_acc``
    and ``test_margin_mean`` over ``steps``, and the scalars ``t_fit`` and
    ``t_grok`` (``inf`` for a run that does not generalise). Planting draws
    from its own random stream, so the logged metrics do not depend on which
    probes are planted. A probe without a ``plant`` raises ValueError.
    """
    import pandas as pd
    from scipy.stats import norm

    from ..probes.stage import resolve_probes, plant_probe

    planted = resolve_probes(probes)
    for probe in planted:
        if probe.plant is None:
            raise ValueError(f"probe {probe.name!r} has no plant: synthetic tables cannot carry its metrics")
    rng = np.random.default_rng(seed)
    probe_rng = np.random.default_rng([seed, 1])
    t_grok = t_grok or default_t_grok
    fixed_norms = sorted({c.optim.fixed_norm for c in configs if c.optim.fixed_norm is not None})
    # Planted Goldilocks radius for fixed-norm runs: the middle of the swept norms (log scale).
    if w_c is None:
        w_c = float(np.exp(np.mean(np.log(fixed_norms)))) if fixed_norms else 1.0
    frames = []
    for cfg in configs:
        steps = np.unique(np.r_[0, np.round(np.logspace(0, np.log10(cfg.budget.max_steps), 60))]).astype(int)
        lt = np.log10(np.maximum(steps, 1))
        tf = 100.0 * np.exp(rng.normal(0, 0.05))
        fit = fit_raw = 1 / (1 + np.exp(-(lt - np.log10(tf)) / 0.1))
        if cfg.optim.fixed_norm is None:
            tg = float(t_grok(cfg)) * np.exp(rng.normal(0, 0.05))
            train_final, test_final, generalises = 1e-3, 0.1, True
        else:  # LU: train loss L-shaped, test loss U-shaped in log(norm / w_c); no delay inside the band
            d = np.log(cfg.optim.fixed_norm / w_c)
            tg = 1.5 * tf
            train_final = 3.0 / (1 + np.exp((d + 0.5) / 0.1)) + 1e-4  # the L bends below w_c
            test_final = 0.1 + 2.0 * d * d + rng.normal(0, 0.01)
            generalises = abs(d) < 0.35
            fit = fit * (train_final < 0.5)
        gen = 1 / (1 + np.exp(-(lt - np.log10(tg)) / smooth_width)) * generalises  # smooth underlying progress
        mu = -3 + 6 * gen  # mean test margin moves smoothly
        sigma = 1.0
        test_acc = 1 / (1 + np.exp(-(lt - np.log10(tg)) / acc_width)) * generalises
        test_acc = np.clip(test_acc + rng.normal(0, 0.002, len(steps)), 0, 1)
        norm0 = 10 * cfg.model.alpha
        w = norm0 * (1 + 2 * fit) * (1 - 0.6 * gen) if cfg.optim.fixed_norm is None else \
            np.full(len(steps), 10 * cfg.optim.fixed_norm)
        metrics = {
            "train_acc": fit, "train_loss": train_final + (4 - train_final) * (1 - fit), "test_acc": test_acc,
            "test_loss": (test_final + (4.4 - test_final) * (1 - gen) + 1.5 * fit * (1 - gen))
            if cfg.optim.fixed_norm is None else test_final + (4.4 - test_final) * (1 - fit_raw),
            "test_margin_mean": mu, "test_correct_prob": 0.02 + 0.97 * gen, "train_margin_mean": -3 + 8 * fit,
            "train_correct_prob": 0.02 + 0.97 * fit, "weight_norm": w,
            "test_brier": 1.0 - 0.97 * gen, "train_brier": 1.0 - 0.97 * fit,
            "dist_from_init": np.abs(w - norm0) + 5 * fit,
        }
        for q in MARGIN_QUANTILES:
            metrics[f"test_margin_q{int(round(q * 100)):02d}"] = mu + sigma * norm.ppf(q)
        flat = cfg.flat()
        rows = {name: (steps, values) for name, values in metrics.items()}
        if planted:
            progress = {"fit": fit, "gen": gen, "test_acc": test_acc, "test_margin_mean": mu, "t_fit": float(tf),
                        "t_grok": float(tg) if generalises else float("inf")}
            for probe in planted:
                for name, (at, values) in plant_probe(probe, cfg, steps, progress, probe_rng).items():
                    if name in rows:
                        raise ValueError(f"probe {probe.name!r} plants metric {name!r}, which is already in the "
                                         "synthetic table")
                    rows[name] = (at, values)
        for name, (at, values) in rows.items():
            frames.append(pd.DataFrame({"run_id": cfg.run_id, "status": "complete", **flat,
                                        "step": at, "metric": name, "value": np.asarray(values, float)}))
    return pd.concat(frames, ignore_index=True)
