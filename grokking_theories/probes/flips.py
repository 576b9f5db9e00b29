"""Per-example flip times, recomputed offline from a run's stored checkpoints (prediction M2).

Accuracy is the fraction of test examples whose correct-logit margin is
positive. Whether its jump is an artifact of that threshold is a question
about the *individual* margins: do they drift smoothly through 0 together
with the whole population (then each example crosses 0 as slowly as the
population sweeps past it), or does each example flip on its own, abruptly?
This module measures, for every test example,

* its **flip time**: the first checkpoint step from which its margin is
  positive at every later checkpoint (never -> censored), and the
  interpolated time of that last zero crossing;
* its **crossing width**: the time its margin takes to go from ``-delta`` to
  ``+delta`` around that flip (linear interpolation between checkpoints),
  with ``delta = DELTA_FRAC`` x the inter-quartile range of all test
  margins at the first checkpoint where half the test examples are correct.

and summarises one run as tidy rows (:data:`OFFLINE_METRICS`). The summary
is the registered probe ``flips`` (:data:`FLIPS`, see
:mod:`grokking_theories.probes.stage`): computed once per run and checkpoint
by :func:`~grokking_theories.probes.stage.run_probes` and kept in the run
store, whose ``metrics_table`` then carries its rows.

Reference value. If every margin is a common smooth drift plus a fixed
per-example offset, ``m_i(t) = mu(t) + e_i``, an example crosses 0 when
``mu`` passes ``-e_i``: the flip times spread over ``IQR(e) / mu'`` and each
crossing takes ``2 delta / mu'``, so the median crossing width over the IQR
of flip times is ``2 delta / IQR(e) = 2 * DELTA_FRAC`` (0.5) whatever the
speed of ``mu``. Examples that flip one by one, abruptly, give a ratio far
below it. (A fast *common* drift also gives 0.5: whether the population as a
whole jumps is prediction M3's question, not this one's.)

Resolution. Checkpoints are the time grid: a crossing faster than the
checkpoint spacing is measured as at most about half that spacing, which
biases the ratio *toward* the smooth-drift value. The sharpness study keeps
128 checkpoints per run for that reason (see ``docs/sharpness.md``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from ..levels import GROK_ACC, HALF_ACC
from .stage import Probe, register_probe

__all__ = ["DELTA_FRAC", "FLIPS", "OFFLINE_METRICS", "Flips", "checkpoint_margins", "compute_flips", "flip_times",
           "example_flips", "summarise_flips", "flip_summary", "flip_rows", "plant_flips"]

#: delta, the half-height of the band a margin must cross, as a fraction of the IQR of the test margins at
#: the first checkpoint where half the test examples are correct.
DELTA_FRAC = 0.25

#: The per-run summary metrics (one row each, at the run's last checkpoint step). Not logged by the trainer:
#: the probe ``flips`` (:data:`FLIPS`) computes them from stored checkpoints.
OFFLINE_METRICS = (
    "flip_iqr_rel",          # IQR of the flip times of the examples that flip / t_grok
    "flip_median_rel",       # median flip time / t_grok
    "flip_cross_width_rel",  # median crossing width / IQR of the flip times (M2's statistic)
    "flip_censored_frac",    # fraction of test examples whose margin is <= 0 at the last checkpoint
    "flip_width_frac",       # fraction of flipping examples with a defined crossing width
    "flip_delta",            # delta (logit units)
)

#: Rough cap (bytes) on the activations of one batched forward pass; more checkpoints are evaluated in chunks.
_MAX_PASS_BYTES = 512 * 2**20


def _floats_per_example(model_cfg, p: int) -> int:
    """Rough float32 activations per example and checkpoint of one forward pass (logits plus hidden layers)."""
    if model_cfg.arch == "mlp":
        return p + 2 * model_cfg.width
    if model_cfg.arch == "dense_mlp":  # two hidden layers, each before and after its ReLU
        return p + 4 * model_cfg.width
    return p + 3 * (model_cfg.d_mlp + 4 * model_cfg.d_model)


@dataclass(frozen=True)
class Flips:
    """Per-example flip times and crossing widths of one run.

    Attributes
    ----------
    steps : ndarray (n_checkpoints,)
        Checkpoint steps.
    flip_step : ndarray (n_examples,)
        First checkpoint step from which the margin stays > 0 to the last
        checkpoint; NaN when censored (margin <= 0 at the last checkpoint).
        Equals ``steps[0]`` for an example that is never wrong.
    flip_time : ndarray
        Linear interpolation of the last zero crossing between the checkpoint
        before ``flip_step`` and ``flip_step``; NaN when censored or never wrong.
    censored : ndarray of bool
        Margin <= 0 at the last checkpoint: the example has not (stably) flipped.
    never_negative : ndarray of bool
        Margin > 0 at every checkpoint, including the first: there is no flip to time.
    cross_lo, cross_hi : ndarray
        Interpolated time the margin last rises through ``-delta`` before the
        flip, and first reaches ``+delta`` from the flip on; NaN when it never does.
    cross_width : ndarray
        ``cross_hi - cross_lo`` (NaN when either is undefined).
    delta : float
        Half-height of the band (logit units); NaN when no checkpoint has half the examples correct.
    margin_scale : float
        IQR of the margins at ``t_half``.
    t_half : float
        First checkpoint step where the fraction of examples with margin > 0 is >= HALF_ACC (NaN if none).
    accuracy : ndarray (n_checkpoints,)
        Fraction of examples with margin > 0 at each checkpoint.
    """

    steps: np.ndarray
    flip_step: np.ndarray
    flip_time: np.ndarray
    censored: np.ndarray
    never_negative: np.ndarray
    cross_lo: np.ndarray
    cross_hi: np.ndarray
    cross_width: np.ndarray
    delta: float
    margin_scale: float
    t_half: float
    accuracy: np.ndarray

    def to_frame(self):
        """One row per test example (``example`` = its index in the task's test split)."""
        import pandas as pd

        return pd.DataFrame({"example": np.arange(len(self.flip_step)), "flip_step": self.flip_step,
                             "flip_time": self.flip_time, "censored": self.censored,
                             "never_negative": self.never_negative, "cross_lo": self.cross_lo,
                             "cross_hi": self.cross_hi, "cross_width": self.cross_width})


def checkpoint_margins(config, checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """Correct-logit margins of every test example at every checkpoint of one run.

    Parameters
    ----------
    config : RunConfig
        The run's config (rebuilds its task and model).
    checkpoint : dict
        ``{"steps": (n,), "params": {name: (n, ...)}}`` as the trainer and the run store keep it.

    Returns
    -------
    steps : ndarray (n,) float64
    margins : ndarray (n, n_test) float64
        Correct logit minus the largest other logit. The checkpoints are the
        members of one ensemble, so one batched forward pass evaluates them
        all (in chunks only when its activations would exceed ~512 MiB: the
        quick-scale MLP's 128 checkpoints take one pass).
    """
    import torch

    from ..models import build_model
    from ..tasks import make_task

    steps = np.asarray(checkpoint["steps"].tolist() if hasattr(checkpoint["steps"], "tolist")
                       else checkpoint["steps"], dtype=float)
    if steps.ndim != 1 or steps.size == 0:
        raise ValueError("checkpoint['steps'] must be a non-empty 1-D sequence")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("checkpoint steps must be strictly increasing")
    params = {n: torch.as_tensor(t).float() for n, t in checkpoint["params"].items()}
    task = make_task(config.task)
    model = build_model(config.model, config.task.p)
    n_test = int(task.test_x.shape[0])
    chunk = max(1, int(_MAX_PASS_BYTES // (4 * n_test * _floats_per_example(config.model, config.task.p))))
    labels = task.test_y
    out = []
    with torch.no_grad():
        for start in range(0, len(steps), chunk):
            part = {n: t[start:start + chunk] for n, t in params.items()}
            logits = model.forward(part, task.test_x)
            lab = labels.expand(logits.shape[:-1])[..., None]
            correct = logits.gather(-1, lab).squeeze(-1)
            others = logits.scatter(-1, lab, float("-inf"))
            out.append((correct - others.amax(-1)).double().cpu().numpy())
    return steps, np.concatenate(out, axis=0)


def _interp_time(s0, s1, m0, m1, level):
    """Time at which the line through (s0, m0), (s1, m1) reaches ``level`` (m0 < level <= m1 assumed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return s0 + (s1 - s0) * (level - m0) / (m1 - m0)


def flip_times(steps, margins, *, delta: Optional[float] = None, delta_frac: float = DELTA_FRAC) -> Flips:
    """Flip time and crossing width of every example from a (checkpoints x examples) margin matrix.

    Parameters
    ----------
    steps : array_like (n,)
        Checkpoint steps, strictly increasing.
    margins : array_like (n, n_examples)
        Margin of each example at each checkpoint (> 0: correct).
    delta : float, optional
        Half-height of the crossing band. Default: ``delta_frac`` x the IQR of
        the margins at the first checkpoint with at least HALF_ACC of the examples correct.
    delta_frac : float

    Returns
    -------
    Flips
    """
    s = np.asarray(steps, dtype=float)
    m = np.asarray(margins, dtype=float)
    if m.ndim != 2 or m.shape[0] != s.size:
        raise ValueError(f"margins must be (n_checkpoints, n_examples) with n_checkpoints = {s.size}, got {m.shape}")
    if s.size == 0 or np.any(np.diff(s) <= 0):
        raise ValueError("steps must be non-empty and strictly increasing")
    n, n_ex = m.shape
    pos = m > 0
    accuracy = pos.mean(axis=1) if n_ex else np.full(n, np.nan)
    # stays positive from checkpoint j to the end
    stays = np.logical_and.accumulate(pos[::-1], axis=0)[::-1]
    censored = ~pos[-1] if n_ex else np.zeros(0, bool)
    f = np.where(censored, -1, np.argmax(stays, axis=0))
    never_negative = f == 0
    flips = f >= 1
    cols = np.arange(n_ex)
    nan = np.full(n_ex, np.nan)
    flip_step = np.where(censored, np.nan, s[np.clip(f, 0, n - 1)])
    flip_time = nan.copy()
    fi = np.clip(f, 1, n - 1)
    ft = _interp_time(s[fi - 1], s[fi], m[fi - 1, cols], m[fi, cols], 0.0)
    flip_time[flips] = ft[flips]

    half = np.nonzero(accuracy >= HALF_ACC)[0]
    t_half = float(s[half[0]]) if half.size else float("nan")
    scale = float(np.subtract(*np.percentile(m[half[0]], [75, 25]))) if half.size and n_ex else float("nan")
    if delta is None:
        delta = delta_frac * scale
    delta = float(delta)

    cross_lo, cross_hi = nan.copy(), nan.copy()
    if np.isfinite(delta) and delta > 0 and flips.any():
        idx = np.arange(n)[:, None]
        # last checkpoint before the flip with margin <= -delta
        below = (m <= -delta) & (idx < f[None, :])
        has_lo = below.any(axis=0) & flips
        j = n - 1 - np.argmax(below[::-1], axis=0)
        j1 = np.clip(j + 1, 0, n - 1)
        lo = _interp_time(s[j], s[j1], m[j, cols], m[j1, cols], -delta)
        cross_lo[has_lo] = lo[has_lo]
        # first checkpoint from the flip on with margin >= +delta
        above = (m >= delta) & (idx >= f[None, :])
        has_hi = above.any(axis=0) & flips
        k = np.argmax(above, axis=0)
        k0 = np.clip(k - 1, 0, n - 1)
        hi = _interp_time(s[k0], s[k], m[k0, cols], m[k, cols], delta)
        cross_hi[has_hi] = hi[has_hi]
    return Flips(steps=s, flip_step=flip_step, flip_time=flip_time, censored=censored,
                 never_negative=never_negative, cross_lo=cross_lo, cross_hi=cross_hi,
                 cross_width=cross_hi - cross_lo, delta=delta, margin_scale=scale, t_half=t_half,
                 accuracy=accuracy)


def example_flips(config, checkpoint, *, delta_frac: float = DELTA_FRAC) -> Flips:
    """:func:`flip_times` of one run, from its config and checkpoint dict (a pure function of the two)."""
    steps, margins = checkpoint_margins(config, checkpoint)
    return flip_times(steps, margins, delta_frac=delta_frac)


def summarise_flips(flips: Flips, t_grok: Optional[float] = None) -> dict[str, float]:
    """The per-run summary (:data:`OFFLINE_METRICS` -> value) of one run's :class:`Flips`.

    ``t_grok`` is the run's first logged step with test accuracy >= GROK_ACC;
    None: the first *checkpoint* with at least GROK_ACC of the test examples
    correct (coarser). NaN where a summary is undefined (no flipping
    example, an IQR of 0, a run that never groks for the ``_rel`` to t_grok).
    """
    if t_grok is None:
        reached = np.nonzero(flips.accuracy >= GROK_ACC)[0]
        t_grok = float(flips.steps[reached[0]]) if reached.size else float("nan")
    t_grok = float(t_grok) if t_grok is not None and np.isfinite(t_grok) and t_grok > 0 else float("nan")
    times = flips.flip_time[np.isfinite(flips.flip_time)]
    n_flip = times.size
    if n_flip:
        q25, q50, q75 = np.percentile(times, [25, 50, 75])
        iqr = float(q75 - q25)
    else:
        q50, iqr = float("nan"), float("nan")
    widths = flips.cross_width[np.isfinite(flips.cross_width)]
    med_width = float(np.median(widths)) if widths.size else float("nan")
    n_ex = len(flips.censored)
    return {
        "flip_iqr_rel": iqr / t_grok,
        "flip_median_rel": float(q50) / t_grok,
        "flip_cross_width_rel": med_width / iqr if iqr > 0 else float("nan"),
        "flip_censored_frac": float(np.mean(flips.censored)) if n_ex else float("nan"),
        "flip_width_frac": widths.size / n_flip if n_flip else float("nan"),
        "flip_delta": float(flips.delta),
    }


def flip_summary(config, checkpoint, t_grok: Optional[float] = None):
    """Tidy rows (step, metric, value) of one run's flip summary; step = the last checkpoint step."""
    import pandas as pd

    flips = example_flips(config, checkpoint)
    summary = summarise_flips(flips, t_grok)
    last = int(flips.steps[-1])
    return pd.DataFrame({"step": pd.Series([last] * len(summary), dtype="int64"),
                         "metric": pd.Series(list(summary), dtype="str"),
                         "value": pd.Series(list(summary.values()), dtype="float64")})


def t_grok_from_logged(logged) -> float:
    """First logged step with test accuracy >= GROK_ACC in tidy rows (step, metric, value); NaN if none."""
    acc = logged[logged["metric"] == "test_acc"]
    hit = acc.loc[acc["value"] >= GROK_ACC, "step"]
    return float(hit.min()) if len(hit) else float("nan")


def compute_flips(config, checkpoint, logged):
    """The ``flips`` probe: :func:`flip_summary` of one run, t_grok read from its logged ``test_acc``."""
    return flip_summary(config, checkpoint, t_grok=t_grok_from_logged(logged))


#: Spread of the per-example margin offsets the synthetic tables plant (test margins ~ N(mu(t), 1)).
_PLANT_MARGIN_IQR = 1.349


def plant_flips(cfg, steps, progress, rng) -> dict[str, float]:
    """What synthetic tables plant for ``flips``: the summary of a common smooth drift of the margins.

    The synthetic runs move every test margin with the population (mean margin
    ``-3 + 6 gen``, fixed per-example offsets), so each example flips when the
    smooth progress ``gen`` sweeps past it: the flip times' quartiles are where
    ``gen`` passes 0.25, 0.5 and 0.75 (log-time interpolation), the crossing
    width over the IQR is the drift value ``2 * DELTA_FRAC`` (times a little
    noise), and the examples still wrong at the end are ``1 - test_acc``.
    A run that never generalises has undefined (NaN) flip times.
    """
    steps = np.asarray(steps, float)
    gen = np.asarray(progress["gen"], float)
    test_acc = np.asarray(progress["test_acc"], float)
    t_grok = float(progress["t_grok"])
    t_grok = t_grok if np.isfinite(t_grok) and t_grok > 0 else float("nan")
    lt = np.log10(np.maximum(steps, 1.0))

    def reach(level: float) -> float:
        above = np.nonzero(gen >= level)[0]
        if not above.size:
            return float("nan")
        j = above[0]
        if j == 0 or gen[j] == gen[j - 1]:
            return float(steps[j])
        frac = (level - gen[j - 1]) / (gen[j] - gen[j - 1])
        return float(10 ** (lt[j - 1] + frac * (lt[j] - lt[j - 1])))

    q25, q50, q75 = reach(0.25), reach(0.5), reach(0.75)
    flips = np.isfinite(q75)
    return {
        "flip_iqr_rel": (q75 - q25) / t_grok,
        "flip_median_rel": q50 / t_grok,
        "flip_cross_width_rel": 2 * DELTA_FRAC * 10 ** rng.normal(0, 0.05) if flips else float("nan"),
        "flip_censored_frac": float(np.clip(1 - test_acc[-1], 0, 1)),
        "flip_width_frac": float(np.clip(0.95 + rng.normal(0, 0.01), 0, 1)) if flips else float("nan"),
        "flip_delta": DELTA_FRAC * _PLANT_MARGIN_IQR,
    }


#: The per-example flip summary as a stored probe (prediction M2 of the sharpness family reads it).
FLIPS = register_probe(Probe(
    name="flips", version=1, metrics=OFFLINE_METRICS, compute=compute_flips, plant=plant_flips,
    description="per-example flip times and crossing widths of the test margins, summarised per run "
                "(one row per metric at the last checkpoint step)"))


def flip_rows(store, run_ids: Iterable[str]):
    """The flip summary of stored runs as tidy rows, computed now and not stored.

    The report reads the stored rows of the ``flips`` probe instead
    (:func:`~grokking_theories.probes.stage.run_probes`, then
    ``store.metrics_table``); this function computes the same rows with the
    probe's own ``compute`` on any store, read-only included.

    Parameters
    ----------
    store : RunStore
        Read from: each run's config, its checkpoint (sha256-verified) and its
        logged ``test_acc`` (for t_grok, the first logged step with test
        accuracy >= GROK_ACC).
    run_ids : iterable of str
        Runs to summarise. Runs stored without a checkpoint are skipped with
        a warning (no rows); a corrupt checkpoint raises
        :class:`~grokking_theories.errors.CorruptCheckpointError` naming its file.

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id, status, <flat config columns>, step, metric, value``
        with the dtypes of :meth:`RunStore.metrics_table`, one row per run and
        metric of :data:`OFFLINE_METRICS`, at ``step`` = the run's last
        checkpoint step. ``pd.concat([store.metrics_table(ids, probes=False), flip_rows(store, ids)])``
        is the table prediction M2 reads.
    """
    import pandas as pd

    from ..config import RunConfig
    from ..errors import StoreError

    ids = list(dict.fromkeys(str(r) for r in run_ids))
    config_cols = list(RunConfig().flat())
    columns = ["run_id", "status", *config_cols, "step", "metric", "value"]
    if not ids:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    runs = store.runs_table()
    runs = runs[runs["run_id"].isin(ids)].set_index("run_id")
    unknown = [r for r in ids if r not in runs.index]
    if unknown:
        raise StoreError(f"run store {store.root} has no run(s) {', '.join(unknown[:5])}")
    acc = store.metrics_table(run_ids=ids, metrics=["test_acc"], probes=False)
    frames = []
    for rid in ids:
        try:
            checkpoint = store.load_checkpoints(rid)
        except StoreError as exc:
            if "no recorded checkpoint" not in str(exc):
                raise
            warnings.warn(f"flip_rows: run {rid} has no checkpoint; no flip rows for it", stacklevel=2)
            continue
        logged = acc.loc[acc["run_id"] == rid, ["step", "metric", "value"]]
        part = FLIPS.compute(store.config(rid), checkpoint, logged).reset_index(drop=True)
        meta = runs.loc[[rid], ["status", *config_cols]].reset_index()
        part = meta.loc[meta.index.repeat(len(part))].reset_index(drop=True).join(part)
        frames.append(part[columns])
    if not frames:
        return runs.iloc[:0].reset_index().reindex(columns=columns)
    return pd.concat(frames, ignore_index=True)
