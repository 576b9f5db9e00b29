"""Softmax collapse (Prieto et al. 2025), measured offline on a run's stored checkpoints.

An example's cross-entropy gradient with respect to its logits is ``softmax(z) - onehot(y)``. In float32,
once the correct logit leads every other by enough (about 17 plus the log of the number of classes), the
log-sum-exp of the logits rounds to the correct logit: the example's loss is exactly 0, the correct
class's gradient ``p_y - 1`` is exactly 0, and what is left (the other classes' probabilities) lies below
float32's resolution at 1. The example has stopped teaching the model anything. Prieto et al. argue that this *softmax collapse*
is what stalls training without weight decay (their StableMax and ⊥Grad avoid it), which is issue 13's
prediction P2: runs without weight decay under plain softmax collapse before they stall.

The probe evaluates every checkpoint in float32, as a float32 training loop would (the package trains
with a float64 loss by default precisely so that collapse cannot fake "no grokking"), and records, per
checkpoint, the share of training examples whose float32 loss is exactly zero: ``collapse_train_frac``
(Prieto et al.'s measure; the test examples, mostly wrong before generalisation, are not evaluated: in
``study all`` the probe runs on every run, and they would double its cost for a number no rule reads). A StableMax run is measured on its own loss (StableMax's
float32 cross-entropy), which is what would or would not stop teaching it.
"""
from __future__ import annotations

import numpy as np

from .stage import Probe, register_probe

COLLAPSE_METRICS = ("collapse_train_frac",)

#: Rough cap (bytes) on the logits of one batched forward pass; more checkpoints are evaluated in chunks.
_MAX_PASS_BYTES = 256 * 2**20


def collapsed(logits, labels, loss_fn: str = "softmax"):
    """(..., N) bool: whether each example's float32 cross-entropy loss is exactly zero (softmax collapse;
    ``logits`` (..., N, C) are cast to float32; ``labels`` (N,)). ``loss_fn``: the run's output function,
    ``"softmax"`` or ``"stablemax"`` (whose loss is measured the same way: it is the run's own loss that
    collapses or not)."""
    import torch

    from ..training.interventions import log_stablemax

    log_probs = log_stablemax if loss_fn == "stablemax" else torch.log_softmax
    logp = log_probs(logits.float(), dim=-1)
    return logp.gather(-1, labels.expand(logp.shape[:-1])[..., None]).squeeze(-1) == 0


def collapse_shares(config, checkpoint):
    """Tidy rows ``(step, metric, value)``: the collapsed share of the training examples at every checkpoint."""
    import pandas as pd
    import torch

    from ..models import build_model
    from ..tasks import make_task

    steps = [int(s) for s in checkpoint["steps"].tolist()]
    params = {n: torch.as_tensor(t).float() for n, t in checkpoint["params"].items()}
    task = make_task(config.task)
    model = build_model(config.model, config.task.p)
    rows = []
    with torch.no_grad():
        for split, x, y in (("train", task.train_x, task.train_y),):
            chunk = max(1, int(_MAX_PASS_BYTES // (4 * x.shape[0] * config.task.p * 4)))
            shares = []
            for start in range(0, len(steps), chunk):
                part = {n: t[start:start + chunk] for n, t in params.items()}
                shares.append(collapsed(model.forward(part, x), y, config.optim.loss_fn).double().mean(-1).numpy())
            for step, share in zip(steps, np.concatenate(shares)):
                rows.append((step, f"collapse_{split}_frac", float(share)))
    return pd.DataFrame(rows, columns=["step", "metric", "value"])


def plant_collapse(cfg, steps, progress, rng) -> dict:
    """What synthetic tables plant for ``collapse``: a plain softmax run without weight decay collapses on the
    examples it has fitted and not generalised from (share = fit x (1 - gen)); StableMax, ⊥Grad and weight decay
    keep the margins finite (share 0).

    A simplification for the conformance checks: real runs with a little decay can collapse too (the quick
    pilots at wd 0.03 reached 0.97-0.99, and Grokfast at wd 0.1 raised the share by 0.85); I3's calibration
    planter (:mod:`grokking_theories.theories.interventions`) plants its own curves."""
    o = cfg.optim
    fit, gen = np.asarray(progress["fit"], float), np.asarray(progress["gen"], float)
    prone = o.weight_decay == 0 and o.loss_fn == "softmax" and not o.orthograd
    share = fit * (1 - gen) if prone else np.zeros_like(fit)
    return {"collapse_train_frac": share}


def _compute(config, checkpoint, logged):
    return collapse_shares(config, checkpoint)


#: Softmax collapse as a stored probe (read by the interventions family's I3 and I4). Version 2: a StableMax
#: run's own loss is measured (version 1 measured softmax's on every run), training examples only.
COLLAPSE = register_probe(Probe(
    name="collapse", version=2, metrics=COLLAPSE_METRICS, compute=_compute, plant=plant_collapse,
    description="share of training examples whose float32 cross-entropy loss is exactly zero "
                "(softmax collapse, Prieto et al. 2025), at every checkpoint"))
