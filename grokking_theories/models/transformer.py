"""The 1-layer transformer of Nanda et al. (2023), ensemble-first.

Architecture as in their ``transformers.py``: input "a b =" (vocab p + 1,
'=' is token p), learned token and position embeddings, one attention layer
(``n_heads`` x ``d_model // n_heads``, causal), a ReLU MLP with biases, no
LayerNorm, untied unembedding, no biases in embed/attention/unembed. Init:
W_E, W_pos, W_Q/K/V/O, W_in, W_out ~ N(0, 1/d_model); W_U ~ N(0, 1/d_vocab);
MLP biases 0. The '=' output class is dropped, as in their analysis code, so
W_U has p columns (its init still uses d_vocab = p + 1).

Only the last position's logits are read, so only that position is
computed. Its query depends on the '=' token alone, and each key/value of
positions 0 and 1 depends on one token, so keys and values are computed once
per (position, vocabulary entry) and gathered per example. The logits and
gradients equal the full-sequence model's to float precision
(``tests/test_models.py`` checks it against :mod:`.reference`).

:meth:`NandaTransformer.loss_and_grad` is the training step's forward and
backward written by hand (no autograd), with the same contract as
:meth:`.mlp.EmbeddingMLP.loss_and_grad`: the mean cross-entropy with its value
in float64 and its gradient, equal to autograd's on the float64 loss to
float32 precision (``tests/test_models.py``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .base import EnsembleModel, Params, softmax_cross_entropy_grad_
from .base import work_buffer as _buffer


class NandaTransformer(EnsembleModel):
    hook_points = ("hook_embed", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
                   "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_resid_post", "hook_logits")

    @property
    def d_head(self) -> int:
        return self.cfg.d_model // self.cfg.n_heads

    def param_specs(self):
        d, h, m, p = self.cfg.d_model, self.cfg.n_heads, self.cfg.d_mlp, self.p
        dh, s = self.d_head, d ** -0.5
        return {
            "W_E": ((p + 1, d), "normal", s),
            "W_pos": ((3, d), "normal", s),
            "W_Q": ((h, d, dh), "normal", s),
            "W_K": ((h, d, dh), "normal", s),
            "W_V": ((h, d, dh), "normal", s),
            "W_O": ((h * dh, d), "normal", s),
            "W_in": ((d, m), "normal", s),
            "b_in": ((m,), "zeros", 0.0),
            "W_out": ((m, d), "normal", s),
            "b_out": ((d,), "zeros", 0.0),
            "W_U": ((d, p), "normal", (p + 1) ** -0.5),
        }

    def forward(self, params: Params, x: torch.Tensor, cache: Optional[dict] = None) -> torch.Tensor:
        p = self.p
        W_E, W_pos = params["W_E"], params["W_pos"]
        # Residual stream entries that do not depend on the example: token tables for
        # positions 0 and 1 (K, p, d) and the '=' position (K, d).
        tok = W_E[:, :p]
        res0 = tok + W_pos[:, 0:1]
        res1 = tok + W_pos[:, 1:2]
        res2 = W_E[:, p] + W_pos[:, 2]
        W_Q, W_K, W_V = params["W_Q"], params["W_K"], params["W_V"]
        q = torch.einsum("kd,khde->khe", res2, W_Q)  # (K, H, dh): the only query that is read
        k_tab = torch.einsum("kvd,khde->khve", torch.stack([res0, res1], 1).flatten(1, 2), W_K)
        v_tab = torch.einsum("kvd,khde->khve", torch.stack([res0, res1], 1).flatten(1, 2), W_V)
        k2 = torch.einsum("kd,khde->khe", res2, W_K)
        v2 = torch.einsum("kd,khde->khe", res2, W_V)
        scale = 1.0 / math.sqrt(self.d_head)
        s_tab = torch.einsum("khe,khve->khv", q, k_tab) * scale  # (K, H, 2p) scores per (pos, token)
        s2 = torch.einsum("khe,khe->kh", q, k2) * scale  # (K, H)

        a, b = x[..., 0], x[..., 1]
        if a.dim() == 1:
            sa, sb = s_tab[:, :, a], s_tab[:, :, b + p]  # (K, H, N)
            va, vb = v_tab[:, :, a], v_tab[:, :, b + p]  # (K, H, N, dh)
        else:
            kk = torch.arange(x.shape[0], device=x.device)[:, None, None]
            hh = torch.arange(s_tab.shape[1], device=x.device)[None, :, None]
            sa, sb = s_tab[kk, hh, a[:, None, :]], s_tab[kk, hh, (b + p)[:, None, :]]
            va, vb = v_tab[kk, hh, a[:, None, :]], v_tab[kk, hh, (b + p)[:, None, :]]
        scores = torch.stack([sa, sb, s2[:, :, None].expand_as(sa)], dim=-1)  # (K, H, N, 3)
        pattern = torch.softmax(scores, dim=-1)
        z = pattern[..., 0:1] * va + pattern[..., 1:2] * vb + pattern[..., 2:3] * v2[:, :, None, :]
        z_flat = z.permute(0, 2, 1, 3).flatten(2)  # (K, N, H * dh), heads concatenated as in W_O
        attn_out = torch.bmm(z_flat, params["W_O"])
        resid_mid = attn_out + res2[:, None, :]
        pre = torch.baddbmm(params["b_in"][:, None, :], resid_mid, params["W_in"])
        post = torch.relu(pre)
        resid_post = torch.baddbmm(params["b_out"][:, None, :], post, params["W_out"]) + resid_mid
        logits = torch.bmm(resid_post, params["W_U"])
        if cache is not None:
            cache.update({
                "hook_embed": tok, "attn.hook_pattern": pattern, "attn.hook_z": z,
                "hook_attn_out": attn_out, "hook_resid_mid": resid_mid, "mlp.hook_pre": pre,
                "mlp.hook_post": post, "hook_resid_post": resid_post, "hook_logits": logits,
            })
        return logits

    @torch.no_grad()
    def loss_and_grad(self, params: Params, x: torch.Tensor, y: torch.Tensor, grads: Params,
                      ws: Optional[dict] = None) -> torch.Tensor:
        """Per-member mean cross-entropy (K,) in float64; its gradient is written into ``grads``.

        Same contract as :meth:`.mlp.EmbeddingMLP.loss_and_grad` (``x`` (N, 2)
        or (K, N, 2), ``y`` (N,) or (K, N), ``grads`` views shaped like the
        parameters, ``ws`` work buffers kept between calls), and the same
        float64 softmax gradient. The forward is :meth:`forward`'s, on a
        residual table of R = 2p + 1 rows per member (token at position 0,
        token at position 1, the '=' position): queries, keys, values and
        attention scores are computed per row, then gathered per example.
        Backward, per example and head: the softmax over the 3 attended
        positions gives score gradients dS_j = P_j (dP_j - sum_i P_i dP_i)
        with dP_j = dz . v_j; score and value gradients are summed back into
        the row tables by ``index_add_``, and from the tables through
        W_Q / W_K / W_V into the residual table, hence W_E and W_pos. The
        (N, d_mlp)-sized activations and their gradients live in reused
        buffers and every large product is one ``bmm`` with ``out=``.
        """
        ws = {} if ws is None else ws
        W_E, W_pos, W_Q, W_K, W_V, W_O, W_in, b_in, W_out, b_out, W_U = (params[n] for n in (
            "W_E", "W_pos", "W_Q", "W_K", "W_V", "W_O", "W_in", "b_in", "W_out", "b_out", "W_U"))
        K, H, d, dh = W_Q.shape
        p, hd, m = self.p, H * dh, W_in.shape[2]
        R, eq = 2 * p + 1, 2 * p  # rows of the residual table; row of the '=' position
        scale = 1.0 / math.sqrt(dh)
        a, b = x[..., 0], x[..., 1]
        N = a.shape[-1]
        if a.dim() == 1:
            a, b = a.expand(K, N), b.expand(K, N)
        base = torch.arange(K, device=a.device)[:, None] * R
        rows_a = (base + a).flatten()  # rows of the (K * R, ...) tables
        rows_b = (base + b + p).flatten()

        # ---- forward: per-row tables (small) ----
        res = _buffer(ws, "res", (K, R, d), W_E)  # residual stream entries [a rows; b rows; '=']
        torch.add(W_E[:, :p], W_pos[:, 0:1], out=res[:, :p])
        torch.add(W_E[:, :p], W_pos[:, 1:2], out=res[:, p:eq])
        torch.add(W_E[:, p], W_pos[:, 2], out=res[:, eq])
        res2 = res[:, eq]  # (K, d)
        # W_Q, W_K, W_V as (K, d, H * dh), heads concatenated as in W_O; q, keys, values per row
        Wq, Wk, Wv = (w.permute(0, 2, 1, 3).reshape(K, d, hd) for w in (W_Q, W_K, W_V))
        q = torch.bmm(res2[:, None], Wq)  # (K, 1, H * dh): the only query that is read
        k_rows = torch.bmm(res, Wk)  # (K, R, H * dh)
        v_rows = torch.bmm(res, Wv).view(K * R, hd)
        q4, k4 = q.view(K, 1, H, dh), k_rows.view(K, R, H, dh)
        s_rows = torch.mul(k4, q4).sum(-1).mul_(scale).view(K * R, H)  # attention score of each row, per head
        v2 = v_rows.view(K, R, H, dh)[:, eq][:, None]  # (K, 1, H, dh)

        # ---- forward: attention of the last position over the 3 positions ----
        pat = _buffer(ws, "pattern", (3, K, N, H), W_E)  # scores, then softmax over dim 0
        torch.index_select(s_rows, 0, rows_a, out=pat[0].view(K * N, H))
        torch.index_select(s_rows, 0, rows_b, out=pat[1].view(K * N, H))
        pat[2] = s_rows.view(K, R, H)[:, eq][:, None]
        pat.sub_(pat.amax(0, keepdim=True)).exp_()
        pat.div_(pat.sum(0, keepdim=True))
        va = _buffer(ws, "va", (K, N, hd), W_E)
        vb = _buffer(ws, "vb", (K, N, hd), W_E)
        torch.index_select(v_rows, 0, rows_a, out=va.view(K * N, hd))
        torch.index_select(v_rows, 0, rows_b, out=vb.view(K * N, hd))
        va4, vb4 = va.view(K, N, H, dh), vb.view(K, N, H, dh)
        z = _buffer(ws, "z", (K, N, hd), W_E)
        z4 = z.view(K, N, H, dh)
        torch.mul(va4, pat[0, ..., None], out=z4)
        z4.addcmul_(vb4, pat[1, ..., None]).addcmul_(v2, pat[2, ..., None])

        # ---- forward: W_O, MLP, unembedding ----
        mid = _buffer(ws, "resid_mid", (K, N, d), W_E)
        torch.baddbmm(res2[:, None, :], z, W_O, out=mid)
        post = _buffer(ws, "post", (K, N, m), W_E)
        torch.baddbmm(b_in[:, None, :], mid, W_in, out=post).relu_()
        resp = _buffer(ws, "resid_post", (K, N, d), W_E)
        torch.baddbmm(mid, post, W_out, out=resp).add_(b_out[:, None, :])
        lg = _buffer(ws, "logits_t", (K, p, N), W_E)  # logits^T: softmax reductions vectorise along N
        torch.bmm(W_U.mT, resp.mT, out=lg)

        # ---- float64 loss and the softmax gradient, in place in lg (as EmbeddingMLP) ----
        losses = softmax_cross_entropy_grad_(lg, y)  # lg is now dloss/dlogits^T

        # ---- backward: unembedding, MLP, W_O ----
        _bmm_into(grads["W_U"], resp.mT, lg.mT, ws, "dW_U")
        dres = _buffer(ws, "dres", (K, N, d), W_E)
        torch.bmm(lg.mT, W_U.mT, out=dres)  # d resid_post
        torch.sum(dres, 1, out=grads["b_out"])
        _bmm_into(grads["W_out"], post.mT, dres, ws, "dW_out")
        dpre = _buffer(ws, "dpre", (K, N, m), W_E)
        torch.bmm(dres, W_out.mT, out=dpre)
        torch.ops.aten.threshold_backward.grad_input(dpre, post, 0, grad_input=dpre)  # relu': post > 0
        torch.sum(dpre, 1, out=grads["b_in"])
        _bmm_into(grads["W_in"], mid.mT, dpre, ws, "dW_in")
        dmid = _buffer(ws, "dmid", (K, N, d), W_E)
        torch.baddbmm(dres, dpre, W_in.mT, out=dmid)  # d resid_mid: the skip path plus the MLP's input gradient
        _bmm_into(grads["W_O"], z.mT, dmid, ws, "dW_O")
        dres2 = dmid.sum(1)  # (K, d): resid_mid's skip path from the '=' residual
        dz = _buffer(ws, "dz", (K, N, hd), W_E)
        torch.bmm(dmid, W_O.mT, out=dz)
        dz4 = dz.view(K, N, H, dh)

        # ---- backward: attention (pattern and values), into the per-row tables ----
        tmp = _buffer(ws, "tmp", (K, N, hd), W_E)
        tmp4 = tmp.view(K, N, H, dh)
        dS = _buffer(ws, "dS", (3, K, N, H), W_E)
        for j, v in enumerate((va4, vb4, v2)):  # dP_j = dz . v_j per head
            torch.mul(dz4, v, out=tmp4)
            torch.sum(tmp4, -1, out=dS[j])
        dS.sub_((dS * pat).sum(0, keepdim=True)).mul_(pat)  # softmax backward: P_j (dP_j - sum_i P_i dP_i)
        dv_rows = _buffer(ws, "dv_rows", (K * R, hd), W_E).zero_()
        for j, rows in ((0, rows_a), (1, rows_b)):
            torch.mul(dz4, pat[j, ..., None], out=tmp4)
            dv_rows.index_add_(0, rows, tmp.view(K * N, hd))
        torch.mul(dz4, pat[2, ..., None], out=tmp4)
        torch.sum(tmp4, 1, out=dv_rows.view(K, R, H, dh)[:, eq])
        ds_rows = _buffer(ws, "ds_rows", (K * R, H), W_E).zero_()
        ds_rows.index_add_(0, rows_a, dS[0].view(K * N, H))
        ds_rows.index_add_(0, rows_b, dS[1].view(K * N, H))
        torch.sum(dS[2], 1, out=ds_rows.view(K, R, H)[:, eq])

        # ---- backward: tables -> W_Q, W_K, W_V -> residual table -> W_E, W_pos ----
        ds = ds_rows.view(K, R, H, 1).mul(scale)  # gradient of q . k_r per row and head
        dq = torch.mul(ds, k4).sum(1).view(K, 1, hd)
        dk = torch.mul(ds, q4).view(K, R, hd)
        dv = dv_rows.view(K, R, hd)
        grads["W_Q"].copy_((res2[:, :, None] * dq).view(K, d, H, dh).transpose(1, 2))
        grads["W_K"].copy_(torch.bmm(res.mT, dk).view(K, d, H, dh).transpose(1, 2))
        grads["W_V"].copy_(torch.bmm(res.mT, dv).view(K, d, H, dh).transpose(1, 2))
        dres_tab = torch.bmm(dk, Wk.mT).baddbmm_(dv, Wv.mT)  # (K, R, d)
        dres2 += dres_tab[:, eq] + torch.bmm(dq, Wq.mT)[:, 0]
        torch.add(dres_tab[:, :p], dres_tab[:, p:eq], out=grads["W_E"][:, :p])
        grads["W_E"][:, p] = dres2
        torch.sum(dres_tab[:, :p], 1, out=grads["W_pos"][:, 0])
        torch.sum(dres_tab[:, p:eq], 1, out=grads["W_pos"][:, 1])
        grads["W_pos"][:, 2] = dres2
        return losses


def _bmm_into(g: torch.Tensor, a: torch.Tensor, b: torch.Tensor, ws: dict, name: str) -> None:
    """``g = a @ b`` (batched): straight into ``g`` where it is contiguous, else through a work buffer."""
    if g.is_contiguous():
        torch.bmm(a, b, out=g)
    else:
        g.copy_(torch.bmm(a, b, out=_buffer(ws, name, g.shape, g)))
