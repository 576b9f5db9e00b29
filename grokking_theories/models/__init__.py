"""Ensemble-first models: every parameter carries a leading member dimension K.

A model is a small object with ``init_params`` (one generator per member, so a
member's weights depend on its own seed only) and a pure ``forward(params, x)``
returning logits of shape (K, N, p). K runs of one shape train as one batched
model; K = 1 is an ordinary run.
"""
from .base import EnsembleModel, build_model
from .dense import DenseMLP
from .mlp import EmbeddingMLP
from .transformer import NandaTransformer

__all__ = ["EnsembleModel", "build_model", "DenseMLP", "EmbeddingMLP", "NandaTransformer"]
