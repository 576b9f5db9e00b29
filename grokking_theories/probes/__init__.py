"""Probes: what is measured on a model state, as pure functions of (params, task).

The trainer calls them online on its metric schedule; analyses call them
offline on stored checkpoints. :mod:`.fourier` is the Fourier analysis on Z_p
(pure math); :mod:`.circuits` computes Nanda et al.'s circuit progress
measures from a run's checkpoints.
"""
from .circuits import (CIRCUIT_METRICS, LOGIT_METRICS, PER_FREQUENCY_PREFIXES, circuit_measures, key_frequencies,
                       stored_circuit_measures, undefined_measures)
from .fourier import (basis_frequencies, basis_labels, cos_coefficients, fft2d, fourier_basis,
                      frequency_block_fractions, frequency_norms, gini, ifft2d, ipr, key_components, n_frequencies,
                      null_gini, sum_directions)
from .metrics import (MARGIN_QUANTILES, classification_metrics, cross_entropy, evaluate,
                      weight_norms)
from .offline import checkpoint_metrics, stored_checkpoint_metrics

__all__ = ["CIRCUIT_METRICS", "LOGIT_METRICS", "MARGIN_QUANTILES", "PER_FREQUENCY_PREFIXES", "basis_frequencies",
           "basis_labels", "checkpoint_metrics", "circuit_measures", "classification_metrics", "cos_coefficients",
           "cross_entropy", "evaluate", "fft2d", "fourier_basis", "frequency_block_fractions", "frequency_norms",
           "gini", "ifft2d", "ipr", "key_components", "key_frequencies", "n_frequencies", "null_gini",
           "stored_checkpoint_metrics", "stored_circuit_measures", "sum_directions", "undefined_measures",
           "weight_norms"]
