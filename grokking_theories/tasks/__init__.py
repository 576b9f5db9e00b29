"""Algorithmic tasks as index tensors: binary operations mod p."""
from .modular import OPS, ModularTask, make_task

__all__ = ["OPS", "ModularTask", "make_task"]
