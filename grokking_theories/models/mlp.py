"""Embedding MLP: embeddings of a and b -> hidden width w -> ReLU -> p logits.

Equivalent to one-hot(a) ++ one-hot(b) -> Linear(2p, w) -> ReLU -> Linear(w, p)
with PyTorch's default init, but it gathers rows instead of multiplying by
one-hots. ``embed_a`` / ``embed_b`` are the per-operand input weights: the
"embeddings" that Fourier probes read. Width is the double-descent knob.

:meth:`EmbeddingMLP.loss_and_grad` is the training step's forward and
backward written by hand (no autograd): the mean cross-entropy with its value
in float64 and its gradient, which equals autograd's on the float64 loss to
float32 precision (``tests/test_models.py``).
"""
from __future__ import annotations

from typing import Optional

import torch

from .base import EnsembleModel, Params, softmax_cross_entropy_grad_
from .base import work_buffer as _buffer


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

    @torch.no_grad()
    def loss_and_grad(self, params: Params, x: torch.Tensor, y: torch.Tensor, grads: Params,
                      ws: Optional[dict] = None) -> torch.Tensor:
        """Per-member mean cross-entropy (K,) in float64; its gradient is written into ``grads``.

        ``x`` is (N, 2) shared by all members or (K, N, 2) per member, ``y`` (N,)
        or (K, N); ``grads`` holds one tensor per parameter, shaped like it (it
        may be a view, e.g. of a flat buffer); ``ws`` keeps work buffers between
        calls. The loss is ``-log softmax(logits)[y]`` as autograd computes it
        on float64 logits; with m the largest logit and q = exp(logits - m):

        - the gradient of class j != y is q_j / (S N), S = sum q; of the correct
          class -(sum_{j != y} q_j) / (S N), a sum of small positive terms rather
          than p_y - 1, so it keeps its precision when p_y rounds to 1 (the
          softmax collapse that the float64 loss exists to avoid);
        - the loss of an example is (m - z_y) + log1p(S - 1), S - 1 =
          sum_{j != y} q_j + expm1(z_y - m), evaluated in float64.

        Only (K, N)-sized terms are float64; the (K, p, N) exponentials are
        float32, which is what autograd's float64 gradient becomes once cast
        back to the float32 logits. Logits are laid out (K, p, N) so that the
        softmax reductions run along contiguous memory.
        """
        ws = {} if ws is None else ws
        Ea, Eb, b_in, W, b_out = (params[n] for n in ("embed_a", "embed_b", "b_in", "W_out", "b_out"))
        K, w, p = W.shape
        a, b = x[..., 0], x[..., 1]
        N = a.shape[-1]
        if a.dim() == 1:
            a, b = a.expand(K, N), b.expand(K, N)
        # rows of a (K, 2p, w) table [embed_a + b_in; embed_b], flattened to (K * 2p, w)
        rows_a = (torch.arange(K, device=a.device)[:, None] * (2 * p) + a).flatten()
        rows_b = rows_a - a.flatten() + b.flatten() + p
        # forward: h = relu(Ea[a] + Eb[b] + b_in) (K, N, w); logits^T = W^T h^T + b_out (K, p, N)
        table = _buffer(ws, "table", (K, 2 * p, w), W)
        torch.add(Ea, b_in[:, None, :], out=table[:, :p])
        table[:, p:] = Eb
        flat_table = table.view(K * 2 * p, w)
        h = _buffer(ws, "h", (K, N, w), W)
        h_b = _buffer(ws, "h_b", (K, N, w), W)
        torch.index_select(flat_table, 0, rows_a, out=h.view(K * N, w))
        torch.index_select(flat_table, 0, rows_b, out=h_b.view(K * N, w))
        h.add_(h_b).relu_()
        q = _buffer(ws, "q", (K, p, N), W)
        torch.bmm(W.mT, h.mT, out=q).add_(b_out[:, :, None])
        losses = softmax_cross_entropy_grad_(q, y)  # q is now dloss/dlogits^T
        # backward
        grads["b_out"].copy_(q.sum(2))
        dW_t = _buffer(ws, "dW_t", (K, p, w), W)
        torch.bmm(q, h, out=dW_t)
        grads["W_out"].copy_(dW_t.mT)
        dh = _buffer(ws, "dh", (K, N, w), W)
        torch.bmm(q.mT, W.mT, out=dh)
        torch.ops.aten.threshold_backward.grad_input(dh, h, 0, grad_input=dh)  # relu': h > 0
        table.zero_()
        flat_dh = dh.view(K * N, w)
        flat_table.index_add_(0, rows_a, flat_dh)
        flat_table.index_add_(0, rows_b, flat_dh)
        grads["embed_a"].copy_(table[:, :p])
        grads["embed_b"].copy_(table[:, p:])
        torch.sum(table[:, :p], 1, out=grads["b_in"])  # every example adds its dh to one row of embed_a
        return losses
