"""Circuit progress measures of one run's stored checkpoints (Nanda et al. 2023; Gromov 2023's IPR).

:func:`circuit_measures` turns a run's checkpoints into tidy rows
(step, metric, value), one per checkpoint step and metric. The n
checkpoints are the members of one ensemble, so each measure is computed
for all of them in one batched pass (chunked to bound memory, as in
:mod:`.flips`). Fourier analysis is in :mod:`.fourier`.

What is measured (``E`` is the embedding of the numbers 0..p-1: the MLP's
``[embed_a | embed_b]`` (p, 2w), the transformer's rows 0..p-1 of ``W_E``
(p, d); ``W_L`` is the map from hidden neurons to logits: the MLP's
``W_out`` (w, p), the transformer's ``W_out @ W_U`` (d_mlp, p), read as its
transpose (p, hidden)):

* ``fourier_gini_embed``, ``fourier_ipr_embed``, ``embed_fnorm_kNNN``: Gini
  (Hurley & Rickard), IPR and values of the non-DC frequency norms of E;
  ``fourier_gini_unembed``: Gini of those of W_L^T;
* ``fourier_key_power``: the key frequencies' share of E's non-DC power
  (sum of squared frequency norms);
* ``neuron_single_freq_frac``: fraction of hidden neurons (MLP post-ReLU
  hidden; transformer ``mlp.hook_post``) whose centred activation over the
  p x p grid has more than NEURON_EXPLAINED of its variance in one
  frequency's block (:func:`.fourier.frequency_block_fractions`);
  ``neuron_cluster_kNNN`` (every k): how many of them have k as their best
  frequency (Nanda's neuron clusters);
* ``sq_weight_sum``: sum of squares of every parameter;
* ``restricted_loss_{train,test}``, ``excluded_loss_{train,test}``: Nanda
  et al.'s definitions. The logits of all p x p pairs (p, p, C) are
  decomposed over (a, b); the restricted logits keep the constant term
  (each class's mean over the grid) and, for each key frequency k, the
  components along cos(w_k(a+b)) and sin(w_k(a+b)) (projections onto those
  unit-norm grid directions, which are the (cos cos - sin sin)/sqrt 2 and
  (sin cos + cos sin)/sqrt 2 combinations of the 2-D DFT:
  :func:`.fourier.sum_directions`); the excluded logits are the full logits
  less those key components (constant kept). Each loss is the mean
  float64 cross-entropy over the task's train or test pairs;
* ``cos_coef_kNNN`` (one row per key frequency k, so the rows also name
  the key set) and ``cos_coef_key`` (their mean): coefficient of the
  unit-norm cos(w_k(a+b-c)) in the (p, p, p) logit tensor
  (:func:`.fourier.cos_coefficients`);
* ``n_key_freqs`` and ``key_rule_fallback`` (1 when the fallback below
  chose the key set, else 0): the same value at every step.

Ops. The embedding, neuron and weight measures are defined for every op.
The logit measures read the circuit of a + b: they are computed for
``add`` and, with a - b in place of a + b (cos(w_k(a-b-c)), label c = a - b),
for ``sub``; for other ops they are not produced and
:func:`undefined_measures` says why.

Key frequencies. Fixed once per run, on its final checkpoint, so every
step is measured against the same set: for each hidden neuron, its best
frequency (the one whose block explains most of its variance) and that
share; a neuron is single-frequency when the share exceeds
NEURON_EXPLAINED; a frequency is key when it is the best frequency of at
least ``max(KEY_MIN_NEURONS, ceil(KEY_MIN_NEURON_FRAC * n_neurons))``
single-frequency neurons (the reasons are with the constants in
:mod:`grokking_theories.levels`). When no frequency qualifies (no circuit,
e.g. wd = 0) the key set is the KEY_FALLBACK frequencies of largest final
embedding norm and ``key_rule_fallback`` = 1.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ..levels import KEY_FALLBACK, KEY_MIN_NEURON_FRAC, KEY_MIN_NEURONS, NEURON_EXPLAINED
from .flips import _MAX_PASS_BYTES
from .fourier import (cos_coefficients, frequency_block_fractions, frequency_norms, gini, ipr, key_components,
                      n_frequencies)
from .metrics import cross_entropy, weight_norms
from .stage import Probe, register_probe

__all__ = ["CIRCUIT_METRICS", "FOURIER", "LOGIT_METRICS", "PER_FREQUENCY_PREFIXES", "circuit_measures",
           "key_frequencies", "plant_circuit_measures", "stored_circuit_measures", "undefined_measures"]

#: The measures that read the a + b (or a - b) circuit in the logits: produced for the ops of _SUM_SIGN only.
LOGIT_METRICS = ("restricted_loss_train", "restricted_loss_test", "excluded_loss_train", "excluded_loss_test",
                 "cos_coef_key")
#: Every fixed-name metric of :func:`circuit_measures` (the per-frequency rows are named by PER_FREQUENCY_PREFIXES).
CIRCUIT_METRICS = ("fourier_gini_embed", "fourier_gini_unembed", "fourier_ipr_embed", "fourier_key_power",
                   *LOGIT_METRICS, "sq_weight_sum", "neuron_single_freq_frac", "n_key_freqs", "key_rule_fallback")
#: Per-frequency rows, named f"{prefix}{k:03d}": embedding norm and neuron-cluster size for every k = 1 .. p//2,
#: logit cos coefficient for the key frequencies only (and for add/sub only).
PER_FREQUENCY_PREFIXES = ("embed_fnorm_k", "cos_coef_k", "neuron_cluster_k")

# s(a, b) whose Fourier circuit the logit measures read: a + b for add, a - b for sub.
_SUM_SIGN = {"add": 1, "sub": -1}
_HIDDEN_HOOK = {"mlp": "hook_hidden", "transformer": "mlp.hook_post"}


def _freq_name(prefix: str, k: int) -> str:
    return f"{prefix}{k:03d}"


def undefined_measures(config) -> dict[str, str]:
    """The circuit metrics not produced for this run's op, each with the reason (empty for add and sub).

    The per-key-frequency cos coefficients appear as the prefix family ``"cos_coef_k*"``.
    """
    op = config.task.op
    if op in _SUM_SIGN:
        return {}
    return {name: f"{name} is not defined for op {op!r}: the Fourier circuit of a+b does not apply"
            for name in (*LOGIT_METRICS, "cos_coef_k*")}


def _embedding(arch: str, params, p: int) -> torch.Tensor:
    """E, (K, p, D): the input representation of the numbers 0..p-1."""
    if arch == "mlp":
        return torch.cat([params["embed_a"], params["embed_b"]], dim=-1)
    return params["W_E"][:, :p]


def _unembedding(arch: str, params) -> torch.Tensor:
    """W_L^T, (K, p, hidden): each class's read-out weights from the hidden neurons."""
    if arch == "mlp":
        return params["W_out"].mT
    return (params["W_out"] @ params["W_U"]).mT


def _grid_forward(model, params, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (K, p, p, C) and hidden activations (K, p, p, H) of every (a, b) pair, float64."""
    grid = torch.cartesian_prod(torch.arange(p), torch.arange(p))  # row a * p + b is (a, b)
    cache: dict = {}
    logits = model.forward(params, grid, cache)
    hidden = cache[_HIDDEN_HOOK[model.cfg.arch]]
    K = logits.shape[0]
    return logits.double().reshape(K, p, p, -1), hidden.double().reshape(K, p, p, -1)


def _neuron_clusters(hidden: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per neuron its best frequency (1-based) and that frequency's share of its variance, (K, H) each, and
    the cluster sizes (K, p//2 + 1): single-frequency neurons per best frequency (column 0 stays 0)."""
    share, best = frequency_block_fractions(hidden, p).max(-2)
    best = best + 1  # row i of the fractions is frequency i + 1
    single = (share > NEURON_EXPLAINED).double()
    clusters = torch.zeros(*best.shape[:-1], n_frequencies(p) + 1, dtype=torch.float64)
    clusters.scatter_add_(-1, best, single)
    return best, share, clusters


def _model_params(model, params) -> dict[str, torch.Tensor]:
    """Params of one model state as a 1-member ensemble (accepts the spec shapes or a leading axis of 1)."""
    out = {}
    for name, (shape, _, _) in model.param_specs().items():
        t = torch.as_tensor(params[name]).float()
        if tuple(t.shape) == tuple(shape):
            t = t[None]
        if tuple(t.shape) != (1, *shape):
            raise ValueError(f"params[{name!r}] must have shape {tuple(shape)} (or (1, ...)), got {tuple(t.shape)}")
        out[name] = t
    return out


def key_frequencies(config, params_final) -> tuple[list[int], dict]:
    """The run's key frequencies by the module's rule, from its final parameters.

    Parameters
    ----------
    config : RunConfig
    params_final : dict of tensors
        One model state: each tensor in the model's own shape, or with a leading axis of length 1.

    Returns
    -------
    keys : list of int
        Sorted key frequencies (1 .. p//2).
    info : dict
        ``best_freq`` (LongTensor (H,)): each hidden neuron's best frequency;
        ``explained`` (float64 (H,)): the share of its variance that
        frequency explains; ``clusters`` ({k: n}): single-frequency neurons
        per best frequency; ``min_cluster``: the neurons a key frequency
        needs; ``fallback``: whether the key set came from the embedding
        norms because no frequency qualified.
    """
    from ..models import build_model

    p = config.task.p
    model = build_model(config.model, p)
    params = _model_params(model, params_final)
    with torch.no_grad():
        _, hidden = _grid_forward(model, params, p)
    best, explained, clusters = (t[0] for t in _neuron_clusters(hidden, p))
    counts = clusters.long()
    n_neurons = hidden.shape[-1]
    min_cluster = max(KEY_MIN_NEURONS, math.ceil(KEY_MIN_NEURON_FRAC * n_neurons))
    keys = [k for k in range(1, n_frequencies(p) + 1) if counts[k] >= min_cluster]
    fallback = not keys
    if fallback:
        norms = frequency_norms(_embedding(config.model.arch, params, p)[0].double(), p)
        by_norm = sorted(range(1, n_frequencies(p) + 1), key=lambda k: (-float(norms[k - 1]), k))
        keys = sorted(by_norm[:KEY_FALLBACK])
    info = {"best_freq": best, "explained": explained, "min_cluster": min_cluster, "fallback": fallback,
            "clusters": {k: int(counts[k]) for k in range(1, n_frequencies(p) + 1) if counts[k] > 0}}
    return keys, info


def _measures(model, task, params, keys: list[int]) -> dict[str, torch.Tensor]:
    """Every per-checkpoint measure of the K members in ``params``: metric -> (K,) float64."""
    p, arch, op = task.p, model.cfg.arch, task.config.op
    key_idx = [k - 1 for k in keys]
    norms = frequency_norms(_embedding(arch, params, p).double(), p)  # (K, p//2)
    power = norms.pow(2)
    out = {
        "fourier_gini_embed": gini(norms),
        "fourier_ipr_embed": ipr(norms),
        "fourier_gini_unembed": gini(frequency_norms(_unembedding(arch, params).double(), p)),
        "fourier_key_power": power[:, key_idx].sum(-1) / power.sum(-1),
        "sq_weight_sum": weight_norms(params)["weight_norm"].pow(2),
    }
    out.update({_freq_name("embed_fnorm_k", k): norms[:, k - 1] for k in range(1, n_frequencies(p) + 1)})
    logits, hidden = _grid_forward(model, params, p)
    clusters = _neuron_clusters(hidden, p)[2]  # (K, p//2 + 1)
    out["neuron_single_freq_frac"] = clusters.sum(-1) / hidden.shape[-1]
    out.update({_freq_name("neuron_cluster_k", k): clusters[:, k] for k in range(1, clusters.shape[-1])})
    if op in _SUM_SIGN:
        out.update(_logit_measures(logits, task, keys, _SUM_SIGN[op]))
    return out


def _logit_measures(logits, task, keys: list[int], sign: int) -> dict[str, torch.Tensor]:
    """Restricted and excluded losses and cos coefficients from grid logits (K, p, p, C)."""
    p = task.p
    key_part = key_components(logits, p, keys, sign=sign)
    versions = {"restricted": logits.mean((-3, -2), keepdim=True) + key_part, "excluded": logits - key_part}
    out = {}
    for version, grid_logits in versions.items():
        flat = grid_logits.flatten(-3, -2)  # (K, p * p, C), row a * p + b
        for split, x, y in (("train", task.train_x, task.train_y), ("test", task.test_x, task.test_y)):
            out[f"{version}_loss_{split}"] = cross_entropy(flat[:, x[:, 0] * p + x[:, 1]], y)
    coefs = cos_coefficients(logits, p, sign=sign)  # (K, p//2), column k - 1 is frequency k
    out["cos_coef_key"] = coefs[:, [k - 1 for k in keys]].mean(-1)
    out.update({_freq_name("cos_coef_k", k): coefs[:, k - 1] for k in keys})
    return out


def _default_chunk(config) -> int:
    """Checkpoints per pass: float64 work arrays of ~6 logit grids and ~4 hidden grids within the memory cap."""
    p = config.task.p
    hidden = config.model.width if config.model.arch == "mlp" else config.model.d_mlp
    per_checkpoint = 8 * p * p * (6 * p + 4 * hidden)
    return max(1, int(_MAX_PASS_BYTES // per_checkpoint))


def circuit_measures(config, checkpoint, *, chunk: Optional[int] = None):
    """Tidy table (step, metric, value) of every circuit measure at every checkpoint of one run.

    Parameters
    ----------
    config : RunConfig
        The run's config (rebuilds its task and model).
    checkpoint : dict
        ``{"steps": (n,), "params": {name: (n, ...)}}`` as the trainer and
        the run store keep it; the last checkpoint fixes the key frequencies.
    chunk : int, optional
        Checkpoints per batched pass (default: as many as keep the work
        arrays under ~512 MiB). Results do not depend on it.

    Returns
    -------
    pandas.DataFrame
        Columns ``step`` (int64), ``metric`` (str), ``value`` (float64),
        sorted by metric then step: the metrics of :data:`CIRCUIT_METRICS`
        (less :func:`undefined_measures`) and the per-frequency rows of
        :data:`PER_FREQUENCY_PREFIXES`, each at every step.
    """
    import pandas as pd

    from ..models import build_model
    from ..tasks import make_task

    steps = torch.as_tensor(checkpoint["steps"]).reshape(-1).tolist()
    if not steps:
        raise ValueError("checkpoint['steps'] is empty: no checkpoint to measure")
    params = {n: torch.as_tensor(t).float() for n, t in checkpoint["params"].items()}
    keys, info = key_frequencies(config, {n: t[-1] for n, t in params.items()})
    task = make_task(config.task)
    model = build_model(config.model, config.task.p)
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1 checkpoint, got {chunk}")
    chunk = chunk or _default_chunk(config)
    columns: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for start in range(0, len(steps), chunk):
            part = {n: t[start:start + chunk] for n, t in params.items()}
            for name, v in _measures(model, task, part, keys).items():
                columns.setdefault(name, []).append(v)
    values = {name: torch.cat(parts).tolist() for name, parts in columns.items()}
    values["n_key_freqs"] = [float(len(keys))] * len(steps)
    values["key_rule_fallback"] = [float(info["fallback"])] * len(steps)
    frame = pd.DataFrame({
        "step": pd.Series([int(s) for s in steps] * len(values), dtype="int64"),
        "metric": pd.Series([name for name in values for _ in steps], dtype="str"),
        "value": pd.Series([v for column in values.values() for v in column], dtype="float64"),
    })
    return frame.sort_values(["metric", "step"], ignore_index=True)


def stored_circuit_measures(store, run_id: str):
    """:func:`circuit_measures` of a run in the store (a corrupt checkpoint raises, naming its path)."""
    return circuit_measures(store.config(run_id), store.load_checkpoints(run_id))


def plant_circuit_measures(cfg, steps, progress, rng) -> dict:
    """Plausible circuit measures for a synthetic run (``check_family``; not a calibration planter).

    A circuit that forms with the smooth generalisation progress ``gen``: the restricted loss falls a little
    ahead of it, the excluded loss rises with it, the spectrum sparsifies onto frequencies 1 and 2 (the
    planted key set), the norm falls. A run that never generalises keeps a dense spectrum.
    """
    gen, fit = np.asarray(progress["gen"], float), np.asarray(progress["fit"], float)
    ahead = np.clip(1.3 * gen, 0.0, 1.0)
    noise = rng.normal(0.0, 0.005, len(steps))
    half = cfg.task.p // 2
    keys = (1, 2)
    out = {
        "fourier_gini_embed": 0.05 + 0.6 * gen + noise, "fourier_gini_unembed": 0.05 + 0.5 * gen + noise,
        "fourier_ipr_embed": 1 / half + (0.5 - 1 / half) * gen, "fourier_key_power": 0.2 + 0.77 * gen,
        "sq_weight_sum": 900.0 * (1 + fit) * (1 - 0.6 * gen), "neuron_single_freq_frac": 0.02 + 0.8 * gen,
        "n_key_freqs": float(len(keys)), "key_rule_fallback": 0.0,
    }
    if not undefined_measures(cfg):
        out.update({"restricted_loss_train": 3.8 * (1 - ahead) + 1e-3, "restricted_loss_test": 3.8 * (1 - ahead) + 1e-3,
                    "excluded_loss_train": 1e-3 + 4.0 * gen + 0.1 * fit, "excluded_loss_test": 4.0 + gen,
                    "cos_coef_key": 0.1 + 30.0 * ahead})
        out.update({_freq_name("cos_coef_k", k): 0.1 + 30.0 * ahead for k in keys})
    for k in range(1, half + 1):
        weight = 1.0 if k in keys else 1 - 0.9 * gen
        out[_freq_name("embed_fnorm_k", k)] = 2.0 * weight + noise
        out[_freq_name("neuron_cluster_k", k)] = (40.0 if k in keys else 0.0) * gen[-1]
    return out


def _compute_fourier(config, checkpoint, logged):
    """The probe's compute: the circuit measures of every checkpoint (``logged`` is not needed)."""
    return circuit_measures(config, checkpoint)


def fourier_defined(config) -> bool:
    """The Fourier measures are about Z_p: defined for the operations mod p, not for composition in S5 nor for
    the digits (images, whose classes are not elements of Z_p and whose model has no token embedding)."""
    return config.task.op not in ("s5", "digits")


#: The circuit measures as a stored probe (the circuits family reads it).
FOURIER = register_probe(Probe(
    name="fourier", version=1,
    metrics=CIRCUIT_METRICS + tuple(f"{prefix}*" for prefix in PER_FREQUENCY_PREFIXES),
    compute=_compute_fourier, plant=plant_circuit_measures, applies=fourier_defined,
    description="Fourier spectrum, key frequencies, restricted/excluded losses, cos coefficients, neuron "
                "frequencies and squared weights of every checkpoint (Nanda et al. 2023)"))
