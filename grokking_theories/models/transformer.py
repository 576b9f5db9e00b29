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
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .base import EnsembleModel, Params


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
