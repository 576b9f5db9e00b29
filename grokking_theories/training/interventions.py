"""Interventions on the loss and the gradient that the explanations disagree about (issue 13, first part).

Each works on an ensemble's tensors, one row per member, so it slots into the trainer's step:

* :func:`stablemax_cross_entropy` — Prieto et al. (2025): softmax's ``exp`` replaced by
  ``s(x) = x + 1`` for ``x >= 0`` and ``1 / (1 - x)`` for ``x < 0``. Probabilities are
  ``s(z_i) / sum_j s(z_j)``; ``s`` grows linearly, so a confident prediction's loss does not
  round to exactly 0 in float32 (softmax collapse) and its gradient keeps flowing.
* :func:`orthogonal_gradient` — Prieto et al.'s ⊥Grad: in each parameter tensor of each member, the
  gradient's component along the weights is removed (the direction that only scales the logits up,
  "naive loss minimisation"), and what is left is rescaled to the gradient's norm.
* :class:`GrokfastEMA` and :class:`GrokfastMA` — Lee et al. (2024): the gradient plus ``lamb`` times
  its low-pass filtered history (an exponential moving average with factor ``alpha``, or the mean of
  the last ``window`` gradients once that many have been seen), per member.

They are known-answer tested (``tests/test_interventions.py``: StableMax against its formula and a
float32 collapse case, ⊥Grad's update orthogonal to each tensor with the gradient's norm, the filters
against a hand computation). A run asks for them with ``optim.loss_fn = "stablemax"``,
``optim.orthograd = true`` and ``optim.grokfast = "ema"`` / ``"ma"`` (with ``grokfast_alpha``,
``grokfast_lamb``, ``grokfast_window``); at their defaults these fields stay out of the run's hash, so
older runs keep their ids. The predictions that use them (I1-I4) are the ``interventions`` family
(:mod:`grokking_theories.theories.interventions`), whose runs are the study ``interventions``.
"""
from __future__ import annotations

from collections import deque
from typing import Mapping, Sequence

import torch

#: Guards the divisions of ⊥Grad (Prieto et al.'s reference uses the same 1e-30).
ORTHO_EPS = 1e-30


def stablemax(logits: torch.Tensor) -> torch.Tensor:
    """``s(x)``: ``x + 1`` for ``x >= 0``, ``1 / (1 - x)`` for ``x < 0`` (positive, continuous, slope 1 at 0)."""
    return torch.where(logits >= 0, logits + 1, 1 / (1 - torch.clamp(logits, max=0)))


def log_stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Log-probabilities under StableMax: ``log s(z_i) - log sum_j s(z_j)``."""
    s = stablemax(logits)
    return torch.log(s) - torch.log(s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """Mean StableMax cross-entropy per member, (K,), computed in ``dtype`` (the shape contract of
    :func:`grokking_theories.probes.cross_entropy`: logits (K, N, C), labels (N,) or (K, N))."""
    logp = log_stablemax(logits.to(dtype))
    labels = labels.expand(logits.shape[:-1]) if labels.dim() < logits.dim() - 1 else labels
    return -logp.gather(-1, labels[..., None]).squeeze(-1).mean(-1)


@torch.no_grad()
def orthogonal_gradient(weights: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor]) -> dict:
    """⊥Grad per member and parameter tensor: ``g - (w.g / w.w) w``, rescaled to ``|g|``.

    ``weights`` and ``grads`` map names to (K, ...) tensors; returns new (K, ...) gradients. A tensor whose
    weights are all zero keeps its gradient (there is no direction to remove).
    """
    out = {}
    for name, g in grads.items():
        w = weights[name].reshape(g.shape[0], -1)
        flat = g.reshape(g.shape[0], -1)
        along = (w * flat).sum(1, keepdim=True) / ((w * w).sum(1, keepdim=True) + ORTHO_EPS)
        orth = flat - along * w
        scale = flat.norm(dim=1, keepdim=True) / (orth.norm(dim=1, keepdim=True) + ORTHO_EPS)
        out[name] = (orth * scale).reshape(g.shape)
    return out


class GrokfastEMA:
    """Grokfast-EMA on a (K, P) gradient: ``h <- alpha_k h + (1 - alpha_k) g``, then ``g + lamb_k h``.

    ``h`` starts at the first gradient (as in Lee et al.'s reference), so the first filtered gradient is
    ``(1 + lamb) g``. ``alpha`` and ``lamb`` are per member.
    """

    def __init__(self, alpha: Sequence[float], lamb: Sequence[float]):
        self.alpha, self.lamb = list(alpha), list(lamb)
        self.h = None

    @torch.no_grad()
    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        alpha = torch.as_tensor(self.alpha, dtype=grad.dtype, device=grad.device)[:, None]
        lamb = torch.as_tensor(self.lamb, dtype=grad.dtype, device=grad.device)[:, None]
        self.h = grad.clone() if self.h is None else self.h * alpha + grad * (1 - alpha)
        return grad + self.h * lamb


class GrokfastMA:
    """Grokfast-MA on a (K, P) gradient: ``g + lamb_k * mean(last window gradients)``, applied once ``window``
    gradients have been seen (before that the gradient passes unchanged, Lee et al.'s warm-up)."""

    def __init__(self, window: int, lamb: Sequence[float]):
        if window < 1:
            raise ValueError(f"Grokfast-MA window must be >= 1, got {window}")
        self.lamb = list(lamb)
        self.history: deque = deque(maxlen=window)

    @torch.no_grad()
    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        self.history.append(grad.clone())
        if len(self.history) < self.history.maxlen:
            return grad
        lamb = torch.as_tensor(self.lamb, dtype=grad.dtype, device=grad.device)[:, None]
        return grad + torch.stack(tuple(self.history)).mean(0) * lamb
