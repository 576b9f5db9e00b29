"""Training-speed benchmark: every number is a ratio measured side by side in one run.

    python benchmarks/bench_training.py [--threads 1] [--steps 30] [--quick]

(a) our transformer training step (last position only, per-token K/V tables,
    ensemble AdamW) against a plain full-sequence nn.Module of the same model
    with torch.optim.AdamW, the way reference code is written;
(b) the FLOP rate our step achieves (FLOPs counted by torch's FlopCounterMode)
    against a measured fp32 matmul peak on the same threads;
(c) model-steps/s of K-member MLP ensembles against K sequential runs of the
    quick config, which decides the CPU ensemble sizes in execution/base.py.

Timings interleave the contenders (A B A B ...) and report medians, so a
noisy machine slows both alike. No absolute thresholds: read the ratios.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def interleaved(contenders: dict, reps: int, rounds: int = 5) -> dict[str, float]:
    """Median seconds per call of each contender, alternating them in rounds."""
    samples = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in contenders.items():
            samples[name] += timed(fn, max(1, reps // rounds))
    return {name: statistics.median(v) for name, v in samples.items()}


def transformer_config(p: int, frac: float):
    from grokking_theories.config import make_run_config
    return make_run_config(dict(op="add", p=p, train_frac=frac, arch="transformer", lr=1e-3, weight_decay=1.0,
                                max_steps=10**6, log_points=0, log_every=0, checkpoints=0))


def bench_transformer(steps: int, p: int, frac: float):
    from torch.utils.flop_counter import FlopCounterMode

    from grokking_theories.models.reference import ReferenceTransformer
    from grokking_theories.training import EnsembleTrainer

    cfg = transformer_config(p, frac)
    ours = EnsembleTrainer([cfg])
    ref = ReferenceTransformer({n: t.detach() for n, t in ours.params.items()})
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    x, y = ours.task.train_x, ours.task.train_y

    def ref_step():
        loss = torch.nn.functional.cross_entropy(ref(x).double(), y)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()

    med = interleaved({"ours": ours.step, "reference": ref_step}, steps)
    with FlopCounterMode(display=False) as counter:
        ours.step()
    flops_ours = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        ref_step()
    flops_ref = counter.get_total_flops()
    return med, flops_ours, flops_ref, len(x)


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(timed(lambda: a @ b, reps))
    return 2 * n ** 3 / best / 1e9


def bench_ensembles(steps: int, sizes=(1, 2, 4, 8)):
    from grokking_theories.studies import load_study
    from grokking_theories.training import EnsembleTrainer

    study = load_study("omnigrok", "quick")
    base = next(c for c in study.configs if c.optim.fixed_norm is None)
    import dataclasses
    rows = []
    for k in sizes:
        members = [dataclasses.replace(base, seed=s) for s in range(k)]
        batched = EnsembleTrainer(members)
        singles = [EnsembleTrainer([m]) for m in members]

        def sequential():
            for s in singles:
                s.step()
        med = interleaved({"batched": batched.step, "sequential": sequential}, steps)
        rows.append((k, k / med["batched"], k / med["sequential"]))
    return base, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as each worker uses)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per contender")
    parser.add_argument("--p", type=int, default=97, help="modulus of the transformer task (PERFORMANCE.md: 97)")
    parser.add_argument("--frac", type=float, default=0.3, help="train fraction of the transformer task")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)\n")

    med, f_ours, f_ref, n = bench_transformer(args.steps, args.p, args.frac)
    peak = matmul_peak()
    rate = f_ours / med["ours"] / 1e9
    print(f"(a) Nanda transformer, a+b mod {args.p}, {n} training pairs, full batch")
    print(f"    reference (full sequence, torch.optim.AdamW): {med['reference'] * 1e3:8.1f} ms/step"
          f"  {f_ref / 1e9:6.2f} GFLOP/step")
    print(f"    ours (last position, K/V tables, AdamW):      {med['ours'] * 1e3:8.1f} ms/step"
          f"  {f_ours / 1e9:6.2f} GFLOP/step")
    print(f"    speed-up: {med['reference'] / med['ours']:.2f}x  (target >= 3x)")
    print(f"(b) fp32 matmul peak (2048^3): {peak:.1f} GFLOP/s; our step achieves {rate:.1f} GFLOP/s "
          f"= {100 * rate / peak:.0f} % of peak (target >= 60 %)")
    base, rows = bench_ensembles(args.steps)
    print(f"(c) MLP ensembles, quick omnigrok config (p={base.task.p}, width={base.model.width}, full batch)")
    print("    K   batched model-steps/s   sequential model-steps/s   ratio")
    for k, b, s in rows:
        print(f"    {k:<3d} {b:21.1f}   {s:24.1f}   {b / s:5.2f}x")


if __name__ == "__main__":
    main()
