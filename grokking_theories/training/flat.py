"""The parameters of K members packed into one (K, P) buffer, with named views.

Every parameter tensor of the ensemble is a view (K, ...) of a column block
of one buffer, so AdamW, the fixed-norm projection and gradient bookkeeping
run as a handful of operations on one tensor instead of one set per
parameter. Views share the buffer's memory: writing the buffer writes them.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import torch

Params = dict[str, torch.Tensor]


class FlatParams:
    def __init__(self, params: Params):
        first = next(iter(params.values()))
        self.K = first.shape[0]
        self.shapes = {n: tuple(t.shape[1:]) for n, t in params.items()}
        self.slices, start = {}, 0
        for name, shape in self.shapes.items():
            self.slices[name] = slice(start, start + math.prod(shape))
            start += math.prod(shape)
        self.size = start
        self.data = self.flatten(params)
        self.views = self.unflatten(self.data)

    def flatten(self, tensors: Params) -> torch.Tensor:
        """A new (K, P) tensor holding ``tensors`` (named and shaped like the parameters)."""
        return torch.cat([tensors[n].detach().reshape(self.K, -1) for n in self.shapes], dim=1)

    def unflatten(self, flat: torch.Tensor) -> Params:
        """Named (K, ...) views of a (K, P) tensor laid out like the parameters."""
        return {n: flat[:, self.slices[n]].view((self.K,) + shape) for n, shape in self.shapes.items()}

    def column_mask(self, names: Iterable[str], like: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(P,) float mask: 1 on the columns of the named tensors, 0 elsewhere."""
        like = self.data if like is None else like
        mask = torch.zeros(self.size, dtype=like.dtype, device=like.device)
        for name in names:
            mask[self.slices[name]] = 1
        return mask
