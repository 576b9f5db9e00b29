"""Losses, accuracies, margins, correct-class probabilities and weight norms.

Every function takes ensemble tensors (leading member dimension K) and
returns one value per member, so one call serves K runs.
"""
from __future__ import annotations

from typing import Optional

import torch

MARGIN_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """Mean cross-entropy per member, (K,), computed in ``dtype``.

    float64 by default: in float32 the loss of confidently-correct examples
    rounds to exactly 0 (softmax collapse, Prieto et al. 2025), which can
    masquerade as "no grokking without weight decay".
    """
    logp = torch.log_softmax(logits.to(dtype), dim=-1)
    labels = labels.expand(logits.shape[:-1]) if labels.dim() < logits.dim() - 1 else labels
    return -logp.gather(-1, labels[..., None]).squeeze(-1).mean(-1)


@torch.no_grad()
def brier_score(logp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over examples of ``sum_c (p_c - y_c)**2``, (K,), from log-probabilities ``logp`` (K, N, C).

    Computed in float64 as ``q**2 + sum_{c != y} p_c**2`` per example, with
    ``q = sum_{c != y} p_c`` (= 1 - p_y without the cancellation that
    ``1 - p_y`` suffers when p_y rounds to 1), so the score never dips
    below 0 and keeps its relative precision on confidently correct examples.
    """
    probs = logp.double().exp()
    others = probs.scatter(-1, labels[..., None], 0.0)
    return (others.sum(-1).pow(2) + others.pow(2).sum(-1)).mean(-1)


@torch.no_grad()
def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """Loss, accuracy, correct-logit margin (mean and quantiles), mean correct-class probability and Brier score.

    The margin is the correct logit minus the largest other logit: accuracy
    is exactly the fraction of examples with margin > 0, so margins are the
    continuous quantity behind the step function (the `sharpness` family).

    The Brier score ``{prefix}_brier`` is the mean over examples of
    ``sum_c (p_c - y_c)**2`` (p the softmax probabilities, y the one-hot
    label), in float64: 0 for a confident correct answer, 2 for a confident
    wrong one. It is the linear per-example metric Schaeffer et al. (2023)
    contrast with accuracy.
    """
    labels = labels.expand(logits.shape[:-1])
    logp = torch.log_softmax(logits.double(), dim=-1)
    correct_logp = logp.gather(-1, labels[..., None]).squeeze(-1)
    correct = logits.gather(-1, labels[..., None]).squeeze(-1)
    others = logits.scatter(-1, labels[..., None], float("-inf"))
    margin = correct - others.amax(-1)
    out = {
        f"{prefix}_loss": -correct_logp.mean(-1),
        f"{prefix}_acc": (margin > 0).double().mean(-1),
        f"{prefix}_margin_mean": margin.double().mean(-1),
        f"{prefix}_correct_prob": correct_logp.exp().mean(-1),
        f"{prefix}_brier": brier_score(logp, labels),
    }
    qs = torch.quantile(margin.float(), torch.tensor(MARGIN_QUANTILES, device=margin.device), dim=-1)
    for q, row in zip(MARGIN_QUANTILES, qs):
        out[f"{prefix}_margin_q{int(round(q * 100)):02d}"] = row
    return out


@torch.no_grad()
def weight_norms(params: dict[str, torch.Tensor], init: Optional[dict[str, torch.Tensor]] = None
                 ) -> dict[str, torch.Tensor]:
    """Total L2 norm, per-tensor norms and, given the init, the distance ||theta - theta_0||."""
    sq = {name: t.double().pow(2).flatten(1).sum(1) for name, t in params.items()}
    out = {"weight_norm": torch.stack(list(sq.values())).sum(0).sqrt()}
    out.update({f"norm_{name}": v.sqrt() for name, v in sq.items()})
    if init is not None:
        d = sum((params[n].double() - init[n].double()).pow(2).flatten(1).sum(1) for n in params)
        out["dist_from_init"] = d.sqrt()
    return out


@torch.no_grad()
def evaluate(model, params, task, init=None) -> dict[str, torch.Tensor]:
    """Every logged metric of the K members on the task's train and test split."""
    out = classification_metrics(model.forward(params, task.train_x), task.train_y, "train")
    out.update(classification_metrics(model.forward(params, task.test_x), task.test_y, "test"))
    out.update(weight_norms(params, init))
    return out
