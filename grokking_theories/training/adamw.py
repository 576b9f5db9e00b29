"""AdamW over an ensemble: every member has its own learning rate and weight decay.

The update is torch.optim.AdamW's (decoupled decay applied first, then the
bias-corrected Adam step); with K = 1 it matches ``torch.optim.AdamW`` with a
``LambdaLR`` warm-up to float tolerance (``tests/test_training.py``). Decay
can pull toward zero (AdamW) or toward the initial weights (Power et al.'s
"decay toward init" ablation). Members outside ``active`` are left exactly
as they are (frozen after divergence or after their stop rule fired).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch


def _per_member(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device)


class EnsembleAdamW:
    def __init__(self, params: dict[str, torch.Tensor], *, lr: Sequence[float], weight_decay: Sequence[float],
                 betas=(0.9, 0.98), eps: float = 1e-8, warmup_steps: int = 0,
                 decayed: Optional[Sequence[str]] = None, decay_target: str = "zero",
                 init: Optional[dict[str, torch.Tensor]] = None):
        self.params = params
        any_t = next(iter(params.values()))
        self.lr = _per_member(lr, any_t)
        self.wd = _per_member(weight_decay, any_t)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.warmup_steps = warmup_steps
        self.decayed = set(params if decayed is None else decayed)
        if decay_target not in ("zero", "init"):
            from ..errors import ConfigError
            raise ConfigError(f"decay_target must be 'zero' or 'init', got {decay_target!r}")
        if decay_target == "init" and init is None:
            raise ValueError("decay_target='init' needs the initial parameters")
        self.anchor = init if decay_target == "init" else None
        self.m = {n: torch.zeros_like(t) for n, t in params.items()}
        self.v = {n: torch.zeros_like(t) for n, t in params.items()}
        self.t = 0

    def lr_now(self) -> torch.Tensor:
        """Learning rate of the coming update: linear warm-up to lr over ``warmup_steps`` updates."""
        if self.warmup_steps > 0:
            return self.lr * min((self.t + 1) / self.warmup_steps, 1.0)
        return self.lr

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], active: Optional[torch.Tensor] = None) -> None:
        lr = self.lr_now()
        self.t += 1
        bc1 = 1 - self.beta1 ** self.t
        bc2_sqrt = (1 - self.beta2 ** self.t) ** 0.5
        for name, p in self.params.items():
            g = grads[name]
            view = (-1,) + (1,) * (p.dim() - 1)
            lr_k = lr.view(view)
            if active is not None:
                old = (p.clone(), self.m[name].clone(), self.v[name].clone())
            if name in self.decayed:
                decay = (lr * self.wd).view(view)
                if self.anchor is None:
                    p.mul_(1 - decay)
                else:
                    p.sub_(decay * (p - self.anchor[name]))
            m, v = self.m[name], self.v[name]
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            p.addcdiv_(m * (lr_k / bc1), denom, value=-1.0)
            if active is not None:
                mask = active.view(view)
                for cur, prev in zip((p, m, v), old):
                    cur.copy_(torch.where(mask, cur, prev))
