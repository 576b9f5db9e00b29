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
from typing import Callable

import numpy as np
import torch

from ..config import DIGITS_IMAGES, PAIR_OPS, TaskConfig
from ..errors import ConfigError
from .base import Task


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
assert tuple(LABELS) == PAIR_OPS  # every pair op has its labels; op "digits" is built in tasks/digits.py
# Ops whose structure (a field's inverse, or the group used by the known circuits) needs p prime.
NEEDS_PRIME = {"div", "mul"}


class ModularTask(Task):
    """Train and test examples of a pair task; ``x`` are (N, 2) operand indices, ``y`` (N,) labels."""


def validate_task(cfg: TaskConfig) -> None:
    """The config layer's task checks (:func:`grokking_theories.config.task_problems`)."""
    from ..config import task_problems

    problems = task_problems(cfg)
    if problems:
        raise ConfigError(problems[0])


def n_pairs(op: str, p: int) -> int:
    """Number of examples of an op mod p: every pair (a, b), less b = 0 for ``div``."""
    return p * (p - 1) if op == "div" else p * p


def n_examples(op: str, p: int) -> int:
    """Number of examples of a task: its pairs (:func:`n_pairs`), or the 1,797 images of op ``digits``."""
    return DIGITS_IMAGES if op == "digits" else n_pairs(op, p)


def train_size(cfg: TaskConfig) -> int:
    """Number of training examples of a task: round(train_frac x examples), as every task splits."""
    return int(round(cfg.train_frac * n_examples(cfg.op, cfg.p)))


def make_pair_task(cfg: TaskConfig) -> ModularTask:
    """Generate every pair, label it and split it with ``cfg.split_seed`` (the ops of ``PAIR_OPS``)."""
    validate_task(cfg)
    if cfg.op not in LABELS:
        raise ConfigError(f"op {cfg.op!r} is not a task on token pairs (grokking_theories.tasks.make_task "
                          f"builds every op)")
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
