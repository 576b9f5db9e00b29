"""What every ensemble model provides, and the factory from a ModelConfig."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..config import ARCHS as _ARCHS
from ..config import ModelConfig, did_you_mean
from ..errors import ConfigError

Params = dict[str, torch.Tensor]


class EnsembleModel:
    """Base class: parameter shapes and init per member, and a batched forward.

    Subclasses define ``param_specs`` (name -> (shape, init kind, fan-in)) and
    ``forward``. ``forward(params, x, cache)`` accepts ``x`` of shape (N, 2)
    (shared by all members, full batch) or (K, N, 2) (one mini-batch per
    member); the dense-input model (N, 64) or (K, N, 64) float pixels. When
    ``cache`` is a dict, named hook points are written into it
    (TransformerLens style) so probes read activations by name.
    """

    hook_points: tuple[str, ...] = ()

    def __init__(self, cfg: ModelConfig, p: int):
        self.cfg = cfg
        self.p = p

    def param_specs(self) -> dict[str, tuple[tuple[int, ...], str, float]]:
        raise NotImplementedError

    def init_member(self, seed: int, alpha: float) -> Params:
        """One member's parameters, drawn from its own generator, scaled by alpha."""
        gen = torch.Generator().manual_seed(int(seed))
        out = {}
        for name, (shape, kind, scale) in self.param_specs().items():
            if kind == "normal":  # N(0, 1) * scale (Nanda's init)
                t = torch.randn(shape, generator=gen) * scale
            elif kind == "uniform":  # U(-scale, scale) (PyTorch's default Linear init)
                t = (torch.rand(shape, generator=gen) * 2 - 1) * scale
            elif kind == "zeros":
                t = torch.zeros(shape)
            else:  # pragma: no cover - a spec typo is a programming error
                raise ValueError(kind)
            out[name] = t * alpha
        return out

    def init_params(self, seeds: Sequence[int], alphas: Sequence[float],
                    device: Optional[torch.device] = None) -> Params:
        members = [self.init_member(s, a) for s, a in zip(seeds, alphas)]
        return {name: torch.stack([m[name] for m in members]).to(device)
                for name in members[0]}

    def decayed_names(self, mode: str) -> list[str]:
        """Tensors that weight decay acts on: "all", or "matrices" (biases excluded)."""
        specs = self.param_specs()
        if mode == "all":
            return list(specs)
        if mode == "matrices":
            return [n for n, (shape, _, _) in specs.items() if len(shape) >= 2]
        raise ConfigError(f"unknown decayed={mode!r}{did_you_mean(mode, ['all', 'matrices'])}")

    def forward(self, params: Params, x: torch.Tensor, cache: Optional[dict] = None) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def gather_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``table[k, idx]`` for a (K, V, ...) table: idx is (N,) shared or (K, N) per member."""
        if idx.dim() == 1:
            return table.index_select(1, idx)
        k = torch.arange(table.shape[0], device=table.device)[:, None]
        return table[k, idx]


ARCHS = _ARCHS  # the config layer's list (grokking_theories.config.ARCHS)


def validate_model(cfg: ModelConfig) -> None:
    """The config layer's model checks (:func:`grokking_theories.config.model_problems`)."""
    from ..config import model_problems

    problems = model_problems(cfg)
    if problems:
        raise ConfigError(problems[0])


def build_model(cfg: ModelConfig, p: int) -> EnsembleModel:
    """The model of ``cfg`` with ``p`` classes (the modulus of a pair task; 10 for the digits)."""
    from .dense import DenseMLP
    from .mlp import EmbeddingMLP
    from .transformer import NandaTransformer

    validate_model(cfg)
    return {"mlp": EmbeddingMLP, "transformer": NandaTransformer, "dense_mlp": DenseMLP}[cfg.arch](cfg, p)


def work_buffer(ws: dict, name: str, shape, like: torch.Tensor) -> torch.Tensor:
    """A reusable work buffer: allocated once per (name, shape, device), not once per step."""
    key = (name, tuple(shape), like.device, like.dtype)
    t = ws.get(key)
    if t is None:
        t = ws[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
    return t


def softmax_cross_entropy_grad_(logits_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-member mean cross-entropy (K,) in float64; ``logits_t`` (K, C, N) becomes its gradient, in place.

    With m the largest logit and q = exp(logits - m): the gradient of class j != y is q_j / (S N),
    S = sum q; of the correct class -(sum_{j != y} q_j) / (S N), a sum of small positive terms rather
    than p_y - 1, so it keeps its precision when p_y rounds to 1 (the softmax collapse the float64 loss
    exists to avoid). The loss of an example is (m - z_y) + log1p(S - 1), S - 1 = sum_{j != y} q_j +
    expm1(z_y - m), evaluated in float64 on (K, N)-sized terms only. Logits are laid out (K, C, N) so
    the reductions run along contiguous memory. ``y`` is (N,) or (K, N).
    """
    K, _, N = logits_t.shape
    y_idx = y.expand(K, N)[:, None, :]
    m = logits_t.amax(1, keepdim=True)
    z_y = logits_t.gather(1, y_idx)
    logits_t.sub_(m).exp_()
    logits_t.scatter_(1, y_idx, 0.0)
    others = logits_t.sum(1, keepdim=True)  # sum_{j != y} q_j, (K, 1, N)
    d = (z_y - m).double()  # <= 0
    o64 = others.double()
    losses = (torch.log1p(o64 + torch.expm1(d)) - d).mean((1, 2))
    r = (1.0 / ((o64 + d.exp()) * N)).float()
    logits_t.mul_(r)
    logits_t.scatter_(1, y_idx, others.mul_(r).neg_())  # now dloss/dlogits^T
    return losses
