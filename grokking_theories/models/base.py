"""What every ensemble model provides, and the factory from a ModelConfig."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..config import ModelConfig, did_you_mean
from ..errors import ConfigError

Params = dict[str, torch.Tensor]


class EnsembleModel:
    """Base class: parameter shapes and init per member, and a batched forward.

    Subclasses define ``param_specs`` (name -> (shape, init kind, fan-in)) and
    ``forward``. ``forward(params, x, cache)`` accepts ``x`` of shape (N, 2)
    (shared by all members, full batch) or (K, N, 2) (one mini-batch per
    member). When ``cache`` is a dict, named hook points are written into it
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


ARCHS = ("mlp", "transformer")


def validate_model(cfg: ModelConfig) -> None:
    """The config layer's model checks (:func:`grokking_theories.config.model_problems`)."""
    from ..config import model_problems

    problems = model_problems(cfg)
    if problems:
        raise ConfigError(problems[0])


def build_model(cfg: ModelConfig, p: int) -> EnsembleModel:
    from .mlp import EmbeddingMLP
    from .transformer import NandaTransformer

    validate_model(cfg)
    return {"mlp": EmbeddingMLP, "transformer": NandaTransformer}[cfg.arch](cfg, p)
