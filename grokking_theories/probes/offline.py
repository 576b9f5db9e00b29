"""Probes on stored checkpoints: the same metrics as online, recomputed after training.

A run's checkpoints have shape (n_checkpoints, ...) per tensor, which is
exactly an ensemble of n_checkpoints members, so one batched forward pass
evaluates every checkpoint of a run at once.
"""
from __future__ import annotations

from .metrics import evaluate


def checkpoint_metrics(config, checkpoint):
    """Tidy table (step, metric, value) of every logged metric at every checkpoint of one run.

    Parameters
    ----------
    config : RunConfig
        The run's config (rebuilds its task and model).
    checkpoint : dict
        ``{"steps": (n,), "params": {name: (n, ...)}}`` as the trainer and the run store keep it.
        Its first checkpoint must be step 0 (the trainer always keeps it): it is theta_0 for
        ``dist_from_init``.
    """
    import pandas as pd
    import torch

    from ..models import build_model
    from ..tasks import make_task

    steps = checkpoint["steps"].tolist()
    if not steps or steps[0] != 0:
        raise ValueError("the first checkpoint must be step 0 (theta_0)")
    params = {n: t.float() for n, t in checkpoint["params"].items()}
    init = {n: t[:1].expand_as(t) for n, t in params.items()}
    model = build_model(config.model, config.task.p)
    with torch.no_grad():
        values = evaluate(model, params, make_task(config.task), init)
    rows = [(s, name, float(v[i])) for name, v in values.items() for i, s in enumerate(steps)]
    return pd.DataFrame(rows, columns=["step", "metric", "value"]).sort_values(["metric", "step"], ignore_index=True)


def stored_checkpoint_metrics(store, run_id: str):
    """:func:`checkpoint_metrics` of a run in the store (a corrupt checkpoint raises, naming its path)."""
    return checkpoint_metrics(store.config(run_id), store.load_checkpoints(run_id))
