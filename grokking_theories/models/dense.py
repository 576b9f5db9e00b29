"""Dense-input MLP: Omnigrok's depth-3 ReLU MLP (Liu, Michaud & Tegmark 2022, App. J), arch ``"dense_mlp"``.

x (64 pixels) -> Linear(64, w) -> ReLU -> Linear(w, w) -> ReLU -> Linear(w, classes), PyTorch's default
``nn.Linear`` init (weights and biases U(+-1/sqrt(fan_in))) times alpha, like every model here. Omnigrok
used width 200 on MNIST; ``width`` sets it. It reads op ``"digits"`` (the config layer pairs the two both
ways). Weights are stored (in, out), so a member's layer is ``x @ W + b`` (``nn.Linear``'s weight is
``W.T``; :func:`grokking_theories.models.reference.reference_dense_mlp` builds that plain model).

It has no hand-written gradient: the trainer takes its autograd path (``EnsembleTrainer.fast_path`` is
False), as for StableMax runs.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..config import DIGITS_PIXELS
from .base import EnsembleModel, Params


class DenseMLP(EnsembleModel):
    """``forward(params, x)`` takes ``x`` (N, n_inputs) shared by all members or (K, N, n_inputs) per member."""

    hook_points = ("hook_pre_1", "hook_hidden_1", "hook_pre_2", "hook_hidden_2", "hook_logits")

    def __init__(self, cfg, p: int, n_inputs: int = DIGITS_PIXELS):
        super().__init__(cfg, p)
        self.n_inputs = n_inputs  # the only dense task, digits, has 64 pixels: no config field is needed

    def param_specs(self):
        d, w, c = self.n_inputs, self.cfg.width, self.p
        bound_in, bound_hidden = d ** -0.5, w ** -0.5  # nn.Linear default: U(+-1/sqrt(fan_in)), biases too
        return {
            "W_1": ((d, w), "uniform", bound_in),
            "b_1": ((w,), "uniform", bound_in),
            "W_2": ((w, w), "uniform", bound_hidden),
            "b_2": ((w,), "uniform", bound_hidden),
            "W_out": ((w, c), "uniform", bound_hidden),
            "b_out": ((c,), "uniform", bound_hidden),
        }

    def forward(self, params: Params, x: torch.Tensor, cache: Optional[dict] = None) -> torch.Tensor:
        # (N, d) @ (K, d, w) broadcasts to (K, N, w); (K, N, d) @ (K, d, w) is a batched product
        x = x.to(params["W_1"].dtype)
        pre_1 = torch.matmul(x, params["W_1"]) + params["b_1"][:, None, :]
        hidden_1 = torch.relu(pre_1)
        pre_2 = torch.baddbmm(params["b_2"][:, None, :], hidden_1, params["W_2"])
        hidden_2 = torch.relu(pre_2)
        logits = torch.baddbmm(params["b_out"][:, None, :], hidden_2, params["W_out"])
        if cache is not None:
            cache.update(hook_pre_1=pre_1, hook_hidden_1=hidden_1, hook_pre_2=pre_2, hook_hidden_2=hidden_2,
                         hook_logits=logits)
        return logits
