"""What every task is: train and test tensors with their labels, and the number of classes."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..config import TaskConfig


@dataclass(frozen=True)
class Task:
    """Train and test examples of one task; ``y`` are (N,) class indices, ``x`` whatever the task's model reads.

    The trainer and the probes read only these fields, so they read every task alike.
    """

    config: TaskConfig
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    train_noisy: torch.Tensor | None = None  # (N_train,) bool: which training answers label noise changed

    @property
    def p(self) -> int:
        return self.config.p

    @property
    def n_classes(self) -> int:
        return self.config.p

    def to(self, device) -> "Task":
        moved = {f: getattr(self, f).to(device) for f in ("train_x", "train_y", "test_x", "test_y")}
        noisy = None if self.train_noisy is None else self.train_noisy.to(device)
        return dataclasses.replace(self, **moved, train_noisy=noisy)
