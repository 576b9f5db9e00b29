"""Probes on float16 (compact) checkpoints against the same checkpoints in float32, on real stored runs.

The run store keeps checkpoints in float16 (grokking_theories.store.checkpoints). This measures what that
costs every registered probe: it reads float32 checkpoints (a store written before compact storage, or
any store: float16 files are compared with themselves and show zero), rounds them to float16, runs each
probe on both and prints, per probe metric, the largest difference relative to the metric's scale over
the run (its largest |value|) and the share of values that changed. The tolerances in
grokking_theories/levels.py (COMPACT_PROBE_RTOL, COMPACT_LABEL_CHANGES) are set from this table.

    python benchmarks/checkpoint_precision.py runs/store --per-kind 4
"""
from __future__ import annotations

import argparse
import collections

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="a run store folder with float32 checkpoints")
    parser.add_argument("--per-kind", type=int, default=4,
                        help="runs per (architecture, probes defined) kind, drawn at random (seed 0)")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from grokking_theories.probes.stage import all_probes
    from grokking_theories.store import Checkpoint, RunStore

    torch.set_num_threads(1)
    probes = all_probes()
    diffs = collections.defaultdict(list)  # (probe, metric) -> [(max |diff| / scale, share changed)]
    picked = collections.Counter()
    with RunStore(args.store, readonly=True) as store:
        shas = store.checkpoint_shas()
        for rid in np.random.default_rng(0).permutation(sorted(store.finished_ids())):
            if shas.get(rid) is None:
                continue
            config = store.config(rid)
            defined = [p for p in probes if p.defined_for(config)]
            kind = (config.model.arch, tuple(p.name for p in defined))
            if not defined or picked[kind] >= args.per_kind:
                continue
            picked[kind] += 1
            full = store.checkpoint(rid)
            half = Checkpoint(steps=full.steps, params={n: t.half().float() for n, t in full.params.items()})
            logged = store.metrics_table(run_ids=[rid], probes=False)[["step", "metric", "value"]]
            for probe in defined:
                a, b = probe.compute(config, full, logged), probe.compute(config, half, logged)
                if a is None or len(a) == 0:
                    continue
                both = a.merge(b, on=["step", "metric"], suffixes=("_32", "_16"))
                for metric, g in both.groupby("metric"):
                    scale = max(float(g.value_32.abs().max()), 1e-12)
                    diff = float((g.value_16 - g.value_32).abs().max())
                    changed = float(((g.value_16 != g.value_32) & ~(g.value_16.isna() & g.value_32.isna())).mean())
                    diffs[(probe.name, metric)].append((diff / scale, changed))
    print(f"runs per kind: {dict(picked)}")
    rows = [(probe, metric, len(v), np.nanmax([d for d, _ in v]), np.mean([c for _, c in v]))
            for (probe, metric), v in sorted(diffs.items())]
    table = pd.DataFrame(rows, columns=["probe", "metric", "runs", "max |diff| / scale", "share changed"])
    with pd.option_context("display.max_rows", 500, "display.width", 200):
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2e}"))


if __name__ == "__main__":
    main()
