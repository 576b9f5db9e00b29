"""Plain full-sequence PyTorch versions of the models, written the way reference code is.

Used by the tests (our fast forward must equal these) and by the benchmark
(the baseline we are measured against). One member only; parameters are
taken from an ensemble param dict so both compute with identical weights.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class ReferenceTransformer(nn.Module):
    """Full-sequence 1-layer transformer of Nanda et al. (all 3 positions, causal mask)."""

    def __init__(self, params: dict[str, torch.Tensor], member: int = 0):
        super().__init__()
        for name, t in params.items():
            setattr(self, name, nn.Parameter(t[member].detach().clone()))
        self.n_heads = params["W_Q"].shape[1]
        self.p = params["W_U"].shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 2) operands; returns the last position's logits (N, p)."""
        eq = torch.full_like(x[:, :1], self.p)
        tokens = torch.cat([x, eq], dim=1)  # (N, 3)
        resid = self.W_E[tokens] + self.W_pos  # (N, 3, d)
        q = torch.einsum("npd,hde->nhpe", resid, self.W_Q)
        k = torch.einsum("npd,hde->nhpe", resid, self.W_K)
        v = torch.einsum("npd,hde->nhpe", resid, self.W_V)
        scores = torch.einsum("nhqe,nhke->nhqk", q, k) / math.sqrt(q.shape[-1])
        mask = torch.tril(torch.ones(3, 3, dtype=torch.bool))
        scores = scores.masked_fill(~mask, float("-inf"))
        z = torch.einsum("nhqk,nhke->nqhe", torch.softmax(scores, -1), v).flatten(2)
        resid = resid + z @ self.W_O
        resid = resid + torch.relu(resid @ self.W_in + self.b_in) @ self.W_out + self.b_out
        return (resid @ self.W_U)[:, -1]


class ReferenceMLP(nn.Module):
    """one-hot(a) ++ one-hot(b) -> Linear(2p, w) -> ReLU -> Linear(w, p)."""

    def __init__(self, params: dict[str, torch.Tensor], member: int = 0):
        super().__init__()
        p, w = params["embed_a"].shape[1:]
        self.p = p
        self.fc1 = nn.Linear(2 * p, w)
        self.fc2 = nn.Linear(w, p)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.cat([params["embed_a"][member], params["embed_b"][member]]).T)
            self.fc1.bias.copy_(params["b_in"][member])
            self.fc2.weight.copy_(params["W_out"][member].T)
            self.fc2.bias.copy_(params["b_out"][member])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        onehot = torch.cat([nn.functional.one_hot(x[:, 0], self.p), nn.functional.one_hot(x[:, 1], self.p)], 1)
        return self.fc2(torch.relu(self.fc1(onehot.float())))


def reference_dense_mlp(params: dict[str, torch.Tensor], member: int = 0) -> nn.Sequential:
    """Omnigrok's depth-3 MLP as a plain ``nn.Sequential`` (Linear, ReLU, Linear, ReLU, Linear) holding one
    member's weights of a ``dense_mlp`` ensemble (``nn.Linear`` stores (out, in): the transposes)."""
    (d, w), c = params["W_1"].shape[1:], params["W_out"].shape[-1]
    net = nn.Sequential(nn.Linear(d, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, c))
    with torch.no_grad():
        for layer, (W, b) in zip(net[::2], (("W_1", "b_1"), ("W_2", "b_2"), ("W_out", "b_out"))):
            layer.weight.copy_(params[W][member].T)
            layer.bias.copy_(params[b][member])
    return net
