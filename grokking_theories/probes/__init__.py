"""Probes: what is measured on a model state, as pure functions of (params, task).

The trainer calls them online on its metric schedule; analyses call them
offline on stored checkpoints. Later families add Fourier probes here.
"""
from .metrics import (MARGIN_QUANTILES, classification_metrics, cross_entropy, evaluate,
                      weight_norms)
from .offline import checkpoint_metrics, stored_checkpoint_metrics

__all__ = ["MARGIN_QUANTILES", "checkpoint_metrics", "classification_metrics", "cross_entropy", "evaluate",
           "stored_checkpoint_metrics", "weight_norms"]
