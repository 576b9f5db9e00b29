"""Handwritten digits (scikit-learn's ``load_digits``): grokking beyond algorithmic data, op ``"digits"``.

Omnigrok (Liu, Michaud & Tegmark 2022, App. J) makes MNIST grok by training a depth-3, width-200 ReLU MLP on
1,000 of its images with the initial weights multiplied by alpha > 1. This is the same experiment on the
data set that ships with scikit-learn (no download): 1,797 8 x 8 grey-scale images of the digits 0-9 (the
UCI optical digits test set), pixel values 0-16. An example's input is its 64 pixels divided by 16, float32
in [0, 1]; its label is its digit, so ``p`` (the number of classes) is 10. The model is arch ``"dense_mlp"``
(:mod:`grokking_theories.models.dense`).

The split is a permutation of the images drawn from ``split_seed`` alone: ``round(train_frac * 1797)``
images train, the rest test, the same for every model seed (as for the pair tasks). Label noise works as
for them (:func:`~grokking_theories.tasks.modular.corrupt_labels`: a wrong digit drawn uniformly from the
other 9, chosen by ``noise_seed``); test labels never change.

scikit-learn is imported when a digits task is first built, not before, and the images are read once per
process.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..config import DIGITS_CLASSES, DIGITS_IMAGES, DIGITS_PIXELS, TaskConfig
from ..errors import ConfigError
from .base import Task
from .modular import corrupt_labels, train_size, validate_task

#: The largest pixel value of ``load_digits`` (4 x 4 blocks of a 32 x 32 bitmap, counted): inputs are pixel / 16.
PIXEL_MAX = 16.0


class DigitsTask(Task):
    """Train and test images of the digits task; ``x`` are (N, 64) float32 pixels in [0, 1], ``y`` (N,) digits."""


@lru_cache(maxsize=1)
def load_images() -> tuple[np.ndarray, np.ndarray]:
    """Every image of ``sklearn.datasets.load_digits`` in its stored order: (1797, 64) float32 pixels / 16 and
    (1797,) int64 digits. Read-only arrays (they are cached for the process)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / PIXEL_MAX
    y = np.asarray(data.target, dtype=np.int64)
    if x.shape != (DIGITS_IMAGES, DIGITS_PIXELS) or sorted(set(y.tolist())) != list(range(DIGITS_CLASSES)):
        raise RuntimeError(f"scikit-learn's load_digits returned {x.shape} images of classes {sorted(set(y.tolist()))}; "
                           f"op 'digits' expects ({DIGITS_IMAGES}, {DIGITS_PIXELS}) of 0..{DIGITS_CLASSES - 1}")
    x = x.astype(np.float32)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def make_digits_task(cfg: TaskConfig) -> DigitsTask:
    """Load the images, split them with ``cfg.split_seed`` and corrupt training labels as ``cfg`` asks."""
    validate_task(cfg)
    if cfg.op != "digits":
        raise ConfigError(f"make_digits_task builds op 'digits', got op={cfg.op!r}")
    x, y = load_images()
    perm = np.random.default_rng(cfg.split_seed).permutation(len(y))
    n_train = train_size(cfg)
    if not 0 < n_train < len(y):
        raise ConfigError(f"train_frac={cfg.train_frac} leaves an empty train or test set of the {len(y)} digits")
    x, y = x[perm], y[perm]  # fancy indexing copies: the cached arrays stay untouched
    train_y, noisy = corrupt_labels(y[:n_train], cfg.p, cfg.label_noise, cfg.noise_seed)
    return DigitsTask(cfg, torch.from_numpy(x[:n_train]), torch.from_numpy(train_y),
                      torch.from_numpy(x[n_train:]), torch.from_numpy(y[n_train:]),
                      None if cfg.label_noise == 0 else torch.from_numpy(noisy))
