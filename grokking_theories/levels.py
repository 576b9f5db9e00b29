"""One home for every threshold and level the package decides with.

A rule's text (in the report and the docs) and its code read the same
constant from here, so the two cannot drift. Change a value here and every
rule, figure caption and docs page that quotes it follows.
"""
from __future__ import annotations

#: Family-wise level: one Holm family made of a report's headline verdicts is controlled at this level.
ALPHA = 0.05
#: Level of every confidence interval a verdict reports (two-sided), unless a rule says otherwise.
CONFIDENCE = 1 - ALPHA

#: t_fit: first logged step with train accuracy >= FIT_ACC (Power et al.'s 99 %).
FIT_ACC = 0.99
#: t_grok: first logged step with test accuracy >= GROK_ACC (Power et al.'s 99 %). Every rule that
#: asks "did the run generalise?" uses this one threshold (no second, looser "band" threshold).
GROK_ACC = 0.99
#: t_grok50: first logged step with test accuracy >= HALF_ACC (the midpoint of the transition).
HALF_ACC = 0.5

#: Below this many runs a confidence interval is computed by exact or t / profile-likelihood methods,
#: never the bootstrap (percentile intervals from a handful of runs undercover badly).
MIN_BOOTSTRAP_RUNS = 10

# --- Fourier circuits (Nanda et al. 2023; grokking_theories.probes.circuits) ------------------------

#: A hidden neuron is single-frequency when one frequency's block {const, cos k, sin k}^2 (less the
#: const-const term) explains more than this share of its centred activation variance over the (a, b)
#: grid: Nanda et al.'s 85 % (433 of 512 neurons of their mainline model pass it).
NEURON_EXPLAINED = 0.85
#: C3b: a circuit's embedding concentrates at least this share of its non-DC Fourier power in the key
#: frequencies ("final embedding power concentrated in ~3-6 frequencies", SCIENCE.md section 2 (c)).
KEY_POWER = 0.90
#: Key-frequency rule: a frequency is key when it is the best frequency of at least
#: max(KEY_MIN_NEURONS, ceil(KEY_MIN_NEURON_FRAC * n_neurons)) single-frequency neurons. Two neurons,
#: not one, so a lone neuron that passes NEURON_EXPLAINED by chance does not make a key frequency;
#: 2 % scales the bar with width (a wide random network has more chance passes) while staying far
#: below the smallest cluster Nanda et al. report (44 of 512 neurons, 8.6 %).
KEY_MIN_NEURONS = 2
KEY_MIN_NEURON_FRAC = 0.02
#: When no frequency meets the rule (no circuit, e.g. wd = 0 or at init) the key set is the
#: KEY_FALLBACK frequencies of largest final embedding norm: the median key-set size over Nanda et
#: al.'s four reported seeds (5, 4, 3, 4 frequencies).
KEY_FALLBACK = 4


# --- Compact checkpoints (float16 on disk; grokking_theories.store.checkpoints) ----------------------
#: A probe's continuous value on a compact checkpoint is within this fraction of the metric's scale over
#: the run (its largest |value|) of the value on the float32 checkpoint. Measured on the quick `all`
#: store (benchmarks/checkpoint_precision.py): at most 3.4e-4 for losses, 1.3e-3 for the flip-time
#: summaries (flip times move by whole checkpoints), 2e-4 for Fourier norms and coefficients.
COMPACT_PROBE_RTOL = 2e-3
#: Per-neuron labels (a neuron's best frequency) may change for at most this share of the neurons (one
#: neuron of 256 in the quick `all` store): a neuron whose two best frequencies explain it nearly
#: equally can swap them under float16 rounding.
COMPACT_LABEL_CHANGES = 0.01


def pct(level: float) -> str:
    """A level as rule text writes it: 0.99 -> '0.99', 0.05 -> '0.05'."""
    return f"{level:g}"


# --- Interventions (issue 13; grokking_theories.theories.interventions) -----------------------------
#: I1, I2: "generalises without weight decay" = the run's final test accuracy exceeds that of plain softmax
#: runs without weight decay (same task, seeds and budget) by more than this absolute gain: about half the way
#: from chance to perfect when there are many classes (0.48 of it at p = 31). Explanation 1 expects a gain near
#: 0 (no grokking without decay); Prieto et al. report full generalisation (a gain near 1 - chance).
GENERALISED_GAIN = 0.5
#: I3: a run is in softmax collapse once more than this share of its training examples have a float32
#: loss of exactly zero (Prieto et al.: the share rises to ~100 % before generalisation stalls).
COLLAPSED_SHARE = 0.5
#: I3: ... and it has stalled when its final test accuracy is less than this above its test accuracy at the
#: collapse. A tenth of the range: the stalled pilots' test accuracy wandered 0.03-0.09 around chance
#: (0.032), while runs that go on generalising after a collapse (float64 loss, wd 0.03) gained 0.5-0.9.
STALL_GAIN = 0.1
#: I4: the smallest speed-up of t_grok by Grokfast worth changing the dynamics for (Lee et al. report
#: x43.8 for Grokfast-EMA; a filter that saves less than half the steps is not what users adopt it for).
GROKFAST_SPEEDUP = 2.0
