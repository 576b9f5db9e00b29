"""Algorithmic tasks as index tensors: binary operations mod p."""
from .modular import OPS, ModularTask, make_task, n_pairs, train_size

__all__ = ["OPS", "ModularTask", "make_task", "n_pairs", "train_size"]
