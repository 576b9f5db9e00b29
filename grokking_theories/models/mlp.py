"""Embedding MLP: embeddings of a and b -> hidden width w -> ReLU -> p logits.

Equivalent to one-hot(a) ++ one-hot(b) -> Linear(2p, w) -> ReLU -> Linear(w, p)
with PyTorch's default init, but it gathers rows instead of multiplying by
one-hots. ``embed_a`` / ``embed_b`` are the per-operand input weights: the
"embeddings" that Fourier probes read. Width is the double-descent knob.
"""
from __future__ import annotations

from typing import Optional

import torch

from .base import EnsembleModel, Params


class EmbeddingMLP(EnsembleModel):
    hook_points = ("hook_pre", "hook_hidden", "hook_logits")

    def param_specs(self):
        p, w = self.p, self.cfg.width
        bound_in, bound_out = (2 * p) ** -0.5, w ** -0.5  # nn.Linear default: U(+-1/sqrt(fan_in))
        return {
            "embed_a": ((p, w), "uniform", bound_in),
            "embed_b": ((p, w), "uniform", bound_in),
            "b_in": ((w,), "uniform", bound_in),
            "W_out": ((w, p), "uniform", bound_out),
            "b_out": ((p,), "uniform", bound_out),
        }

    def forward(self, params: Params, x: torch.Tensor, cache: Optional[dict] = None) -> torch.Tensor:
        a, b = x[..., 0], x[..., 1]
        pre = self.gather_rows(params["embed_a"], a) + self.gather_rows(params["embed_b"], b)
        pre = pre + params["b_in"][:, None, :]
        hidden = torch.relu(pre)
        logits = torch.baddbmm(params["b_out"][:, None, :], hidden, params["W_out"])
        if cache is not None:
            cache.update(hook_pre=pre, hook_hidden=hidden, hook_logits=logits)
        return logits
