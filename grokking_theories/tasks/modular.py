"""Binary operations mod p (Power et al. 2022, App. A.1.1), and composition in S5, as index tensors.

Every pair (a, b) with a, b in 0..p-1 is an example (for ``div``, b != 0); the
label is ``op(a, b) mod p``. The split is a permutation drawn from its own
seed, so the same split serves every model seed (as in Power et al., whose
split seed is fixed while run seeds vary).

Label noise (Nakkiran et al. 2019) replaces a fraction of the *training*
answers by a wrong answer drawn uniformly from the other p - 1 classes; which
examples and which wrong answers come from ``noise_seed`` alone, so the same
noise serves every model seed. Test labels are never changed: test loss and
accuracy always measure the true operation.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..config import OPS, TaskConfig
from ..errors import ConfigError


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n ** 0.5) + 1))


def s5_table() -> np.ndarray:
    """(120, 120) composition table of S5: entry [a, b] is the index of ``sigma_a o sigma_b`` (apply b, then a),
    the permutations of (0, 1, 2, 3, 4) numbered in lexicographic order (index 0 is the identity)."""
    perms = list(itertools.permutations(range(5)))
    index = {perm: i for i, perm in enumerate(perms)}
    return np.array([[index[tuple(pa[pb[k]] for k in range(5))] for pb in perms] for pa in perms], dtype=np.int64)


def _s5(a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    return s5_table()[a, b]


def _div(a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    # a / b = a * b^(p-2) mod p (Fermat); needs p prime and b != 0.
    return a * np.array([pow(int(x), p - 2, p) for x in b], dtype=np.int64) % p


LABELS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": _div,
    "x2_plus_y2": lambda a, b, p: (a * a + b * b) % p,
    "x2_plus_xy_plus_y2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "x3_plus_xy": lambda a, b, p: (a * a * a + a * b) % p,
    "s5": _s5,  # not mod p: composition in the symmetric group S5 (p = 120), Power et al.'s non-abelian task
}
assert tuple(LABELS) == OPS
# Ops whose structure (a field's inverse, or the group used by the known circuits) needs p prime.
NEEDS_PRIME = {"div", "mul"}


@dataclass(frozen=True)
class ModularTask:
    """Train and test examples of one task; ``x`` are (N, 2) operand indices, ``y`` (N,) labels."""

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

    def to(self, device) -> "ModularTask":
        noisy = None if self.train_noisy is None else self.train_noisy.to(device)
        return ModularTask(self.config, *(t.to(device) for t in
                                          (self.train_x, self.train_y, self.test_x, self.test_y)), noisy)


def validate_task(cfg: TaskConfig) -> None:
    """The config layer's task checks (:func:`grokking_theories.config.task_problems`)."""
    from ..config import task_problems

    problems = task_problems(cfg)
    if problems:
        raise ConfigError(problems[0])


def n_pairs(op: str, p: int) -> int:
    """Number of examples of an op mod p: every pair (a, b), less b = 0 for ``div``."""
    return p * (p - 1) if op == "div" else p * p


def train_size(cfg: TaskConfig) -> int:
    """Number of training examples of a task: round(train_frac x pairs), as :func:`make_task` splits."""
    return int(round(cfg.train_frac * n_pairs(cfg.op, cfg.p)))


def make_task(cfg: TaskConfig) -> ModularTask:
    """Generate every pair, label it and split it with ``cfg.split_seed``."""
    validate_task(cfg)
    p = cfg.p
    a, b = np.meshgrid(np.arange(p, dtype=np.int64), np.arange(p, dtype=np.int64), indexing="ij")
    a, b = a.ravel(), b.ravel()
    if cfg.op == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
    y = LABELS[cfg.op](a, b, p)
    perm = np.random.default_rng(cfg.split_seed).permutation(len(a))
    n_train = train_size(cfg)
    if not 0 < n_train < len(a):
        raise ConfigError(f"train_frac={cfg.train_frac} leaves an empty train or test set for p={p}")
    x = torch.from_numpy(np.stack([a, b], axis=1)[perm])
    y = y[perm]
    train_y, noisy = corrupt_labels(y[:n_train], p, cfg.label_noise, cfg.noise_seed)
    return ModularTask(cfg, x[:n_train], torch.from_numpy(train_y), x[n_train:], torch.from_numpy(y[n_train:]),
                       None if cfg.label_noise == 0 else torch.from_numpy(noisy))


def corrupt_labels(y: np.ndarray, p: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace round(fraction * len(y)) labels, chosen by ``seed``, with a uniformly drawn wrong label.

    A wrong label is ``(y + s) mod p`` with s uniform on 1..p-1, so it is never the true one and every
    wrong class is equally likely. Returns the new labels and the (len(y),) mask of changed ones.
    """
    rng = np.random.default_rng(seed)
    n_noisy = int(round(fraction * len(y)))
    noisy = np.zeros(len(y), dtype=bool)
    noisy[rng.permutation(len(y))[:n_noisy]] = True
    out = y.copy()
    out[noisy] = (y[noisy] + rng.integers(1, p, size=n_noisy)) % p
    return out, noisy
