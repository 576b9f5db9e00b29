"""AdamW over an ensemble: every member has its own learning rate and weight decay.

The update is torch.optim.AdamW's (decoupled decay applied first, then the
bias-corrected Adam step); with K = 1 it matches ``torch.optim.AdamW`` with a
``LambdaLR`` warm-up to float tolerance (``tests/test_training.py``). Decay
can pull toward zero (AdamW) or toward the initial weights (Power et al.'s
"decay toward init" ablation). Members outside ``active`` are left exactly
as they are (frozen after divergence or after their stop rule fired).

Two ways to leave them alone, one result: by default the frozen members' rows
are saved and put back after the update (``torch.nonzero`` finds them: a host
synchronisation, free on a CPU); with ``sync_free=True`` (the trainer's choice
on a GPU) their gradient is zeroed and their learning rate, decay and moment
coefficients are multiplied by 0 or 1, so the update is the same arithmetic
with no host synchronisation. Multiplying by 0 leaves a frozen member exactly
as it was (its moments and weights are finite, the eps in the denominator
keeps every quotient finite), which ``tests/test_training.py`` checks. (The
masked gradient is the one (K, P) tensor that path allocates per step.)

All parameters live in one (K, P) buffer (:class:`~.flat.FlatParams`), so a
step is a fixed handful of element-wise operations on that buffer, with
preallocated temporaries: no per-parameter loop, no per-step allocation of
parameter-sized tensors.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .flat import FlatParams


def _per_member(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device)


class EnsembleAdamW:
    def __init__(self, params: FlatParams, *, lr: Sequence[float], weight_decay: Sequence[float],
                 betas=(0.9, 0.98), eps: float = 1e-8, warmup_steps: int = 0,
                 decayed: Optional[Sequence[str]] = None, decay_target: str = "zero",
                 init: Optional[dict[str, torch.Tensor]] = None, sync_free: bool = False):
        self.params = params
        self.sync_free = sync_free
        flat = self.flat = params.data
        self.lr = _per_member(lr, flat)
        self.wd = _per_member(weight_decay, flat)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.warmup_steps = warmup_steps
        self.decayed = set(params.shapes if decayed is None else decayed)
        unknown = self.decayed - set(params.shapes)
        if unknown:
            raise ValueError(f"decayed names {sorted(unknown)} are not parameters")
        # None: every column decays; else a (P,) 0/1 mask of the decayed columns
        self.decay_mask = None if self.decayed == set(params.shapes) else params.column_mask(self.decayed)
        if decay_target not in ("zero", "init"):
            from ..errors import ConfigError
            raise ConfigError(f"decay_target must be 'zero' or 'init', got {decay_target!r}")
        if decay_target == "init" and init is None:
            raise ValueError("decay_target='init' needs the initial parameters")
        self.anchor = params.flatten(init) if decay_target == "init" else None
        self.m = torch.zeros_like(flat)
        self.v = torch.zeros_like(flat)
        self._denom = torch.empty_like(flat)
        self._update = torch.empty_like(flat)
        self.t = 0

    def lr_now(self) -> torch.Tensor:
        """Learning rate of the coming update: linear warm-up to lr over ``warmup_steps`` updates."""
        if self.warmup_steps > 0:
            return self.lr * min((self.t + 1) / self.warmup_steps, 1.0)
        return self.lr

    @torch.no_grad()
    def step(self, grad: torch.Tensor, active: Optional[torch.Tensor] = None) -> None:
        """One update from the (K, P) gradient ``grad``; members where ``active`` is False keep their state."""
        lr = self.lr_now()
        self.t += 1
        bc1 = 1 - self.beta1 ** self.t
        bc2_sqrt = (1 - self.beta2 ** self.t) ** 0.5
        p, m, v = self.flat, self.m, self.v
        frozen = None
        m_weight, beta2 = 1 - self.beta1, self.beta2
        if active is not None and self.sync_free:
            # Frozen members: zero gradient (theirs may be NaN), zero learning rate (so zero decay and step),
            # moments kept (weight 0 for m, factor 1 for v). Active members get the usual coefficients.
            live = active.to(p.dtype)[:, None]
            grad = torch.where(active[:, None], grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
            lr = lr * live[:, 0]
            m_weight = m_weight * live
            beta2 = torch.where(live > 0, live * self.beta2, torch.ones_like(live))
        elif active is not None:
            frozen = torch.nonzero(~active).flatten()
            old = [t.index_select(0, frozen) for t in (p, m, v)]
        decay = (lr * self.wd)[:, None]
        if self.decay_mask is not None:
            decay = decay * self.decay_mask
        if self.anchor is None:
            p.mul_(1 - decay)
        else:
            p.sub_(decay * (p - self.anchor))
        m.lerp_(grad, m_weight)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - self.beta2)
        denom = torch.sqrt(v, out=self._denom).div_(bc2_sqrt).add_(self.eps)
        p.addcdiv_(torch.mul(m, (lr / bc1)[:, None], out=self._update), denom, value=-1.0)
        if frozen is not None:
            for cur, prev in zip((p, m, v), old):
                cur.index_copy_(0, frozen, prev)
