"""Training-speed benchmark: every number is a ratio measured side by side in one run.

    python benchmarks/bench_training.py [--threads 1] [--steps 30] [--mlp-steps 300] [--sections abcde]

(a) our transformer training step (EnsembleTrainer.step: last position only,
    per-token K/V tables, the hand-written forward and backward of
    NandaTransformer.loss_and_grad, ensemble AdamW) against a plain
    full-sequence nn.Module of the same model with torch.optim.AdamW, the way
    reference code is written;
(b) the FLOP rate our step achieves (FLOPs counted by torch's FlopCounterMode)
    against a measured fp32 matmul peak on the same threads;
(c) model-steps/s of K-member MLP ensembles against K sequential runs of the
    quick config, which decides the CPU ensemble sizes in execution/base.py;
(d) model-steps/s of our trainer on the quick MLP (EnsembleTrainer.step, the
    study's code path, at K = 1 and at the ensemble size the planner chooses
    on a CPU) against a plain PyTorch loop: one-hot input -> nn.Linear ->
    ReLU -> nn.Linear, cross-entropy on float64 logits, torch.optim.AdamW;
(e) as (c) for the digits task's dense MLP (autograd path), which decides its
    CPU ensemble size.

Timings interleave the contenders (A B A B ...) and report medians, so a
noisy machine slows both alike. No absolute thresholds: read the ratios.
"""
from __future__ import annotations

import argparse
import dataclasses
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

    a, b = torch.randn(PEAK_N, PEAK_N), torch.randn(PEAK_N, PEAK_N)
    # the peak is timed in the same rounds as the two steps (side by side), so load changes hit all three
    med = interleaved({"ours": ours.step, "reference": ref_step, "matmul": lambda: a @ b}, steps)
    with FlopCounterMode(display=False) as counter:
        ours.step()
    flops_ours = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        ref_step()
    flops_ref = counter.get_total_flops()
    return med, flops_ours, flops_ref, len(x), ours.fast_path


#: Size of the square fp32 matmul whose rate is section (b)'s peak.
PEAK_N = 2048


def bench_ensembles(steps: int, sizes=(1, 2, 4, 8), study_name: str = "omnigrok", arch: str = "mlp"):
    """(base config, [(K, batched model-steps/s, sequential model-steps/s)]) for the first free-norm run of
    ``arch`` in the quick ``study_name``."""
    from grokking_theories.studies import load_study
    from grokking_theories.training import EnsembleTrainer

    study = load_study(study_name, "quick")
    base = next(c for c in study.configs if c.optim.fixed_norm is None and c.model.arch == arch)
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


class PlainMLPLoop:
    """The idiomatic PyTorch training loop for the quick MLP: the baseline of section (d).

    one-hot(a) ++ one-hot(b) (2p) -> nn.Linear(2p, width) -> ReLU -> nn.Linear(width, p),
    cross-entropy computed in float64 (as our trainer does), torch.optim.AdamW, full batch.
    """

    def __init__(self, cfg, x, y):
        p, width, o = cfg.task.p, cfg.model.width, cfg.optim
        torch.manual_seed(cfg.seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(2 * p, width), torch.nn.ReLU(), torch.nn.Linear(width, p))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay,
                                     betas=(o.beta1, o.beta2), eps=o.eps)
        self.x = torch.cat([torch.nn.functional.one_hot(x[:, 0], p), torch.nn.functional.one_hot(x[:, 1], p)],
                           dim=1).float()
        self.y = y

    def step(self) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(self.model(self.x).double(), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss


def bench_mlp_vs_plain(steps: int):
    """Model-steps/s of the plain loop, of our trainer at K = 1 and at the planner's CPU ensemble size."""
    from grokking_theories.config import make_run_config
    from grokking_theories.execution import plan_ensembles
    from grokking_theories.training import EnsembleTrainer

    # the quick MLP of the omnigrok and weight_decay studies, and the ensemble size the planner
    # gives such runs on a CPU (execution/base.py)
    base = make_run_config(dict(op="add", p=59, train_frac=0.5, arch="mlp", width=128, lr=1e-2, weight_decay=1.0,
                                max_steps=10**6, log_points=0, log_every=0, checkpoints=0))
    k_plan = max(len(g) for g in plan_ensembles([dataclasses.replace(base, seed=s) for s in range(64)], "cpu"))
    ours_1 = EnsembleTrainer([base])
    ours_k = EnsembleTrainer([dataclasses.replace(base, seed=s) for s in range(k_plan)])
    plain = PlainMLPLoop(base, ours_1.task.train_x, ours_1.task.train_y)
    med = interleaved({"plain": plain.step, "ours_1": ours_1.step, "ours_k": ours_k.step}, steps, rounds=10)
    rate = {"plain": 1 / med["plain"], "ours_1": 1 / med["ours_1"], "ours_k": k_plan / med["ours_k"]}
    return base, k_plan, ours_1.fast_path, len(ours_1.task.train_x), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as each worker uses)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per contender")
    parser.add_argument("--mlp-steps", type=int, default=300, help="timed steps per contender in (d)")
    parser.add_argument("--sections", default="abcde", help="which sections to run (default abcde)")
    parser.add_argument("--p", type=int, default=97, help="modulus of the transformer task (PERFORMANCE.md: 97)")
    parser.add_argument("--frac", type=float, default=0.3, help="train fraction of the transformer task")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)\n")

    if "a" in args.sections or "b" in args.sections:
        med, f_ours, f_ref, n, fast = bench_transformer(args.steps, args.p, args.frac)
        peak = 2 * PEAK_N ** 3 / med["matmul"] / 1e9
        rate = f_ours / med["ours"] / 1e9
        print(f"(a) Nanda transformer, a+b mod {args.p}, {n} training pairs, full batch")
        print(f"    reference (full sequence, torch.optim.AdamW): {med['reference'] * 1e3:8.1f} ms/step"
              f"  {f_ref / 1e9:6.2f} GFLOP/step")
        path = "hand-written gradient" if fast else "autograd"
        print(f"    ours (last position, K/V tables, AdamW):      {med['ours'] * 1e3:8.1f} ms/step"
              f"  {f_ours / 1e9:6.2f} GFLOP/step  ({path})")
        print(f"    speed-up: {med['reference'] / med['ours']:.2f}x  (target >= 5x)")
        print(f"(b) fp32 matmul peak ({PEAK_N}^3, timed in the same rounds): {peak:.1f} GFLOP/s; our step achieves {rate:.1f} GFLOP/s "
              f"= {100 * rate / peak:.0f} % of peak (target >= 60 %)")
    for section, study_name, arch, what in (("c", "omnigrok", "mlp", "MLP ensembles, quick omnigrok config"),
                                            ("e", "interventions", "dense_mlp",
                                             "digits dense-MLP ensembles, quick interventions config")):
        if section not in args.sections:
            continue
        base, rows = bench_ensembles(args.steps, study_name=study_name, arch=arch)
        print(f"({section}) {what} (p={base.task.p}, width={base.model.width}, full batch)")
        print("    K   batched model-steps/s   sequential model-steps/s   ratio")
        for k, b, s in rows:
            print(f"    {k:<3d} {b:21.1f}   {s:24.1f}   {b / s:5.2f}x")
    if "d" in args.sections:
        base, k_plan, fast, n, rate = bench_mlp_vs_plain(args.mlp_steps)
        o = base.optim
        print(f"(d) quick MLP against a plain PyTorch loop (a+b mod {base.task.p}, {n} training pairs, "
              f"width {base.model.width}, full batch, AdamW lr {o.lr:g}, wd {o.weight_decay:g})")
        path = "hand-written gradient" if fast else "autograd"
        rows = [("plain loop (one-hot nn.Linear, float64 cross-entropy, torch.optim.AdamW)", rate["plain"], ""),
                (f"ours, K=1 (EnsembleTrainer.step, {path})", rate["ours_1"],
                 f"{rate['ours_1'] / rate['plain']:.2f}x"),
                (f"ours, K={k_plan} (the planner's CPU ensemble size)", rate["ours_k"],
                 f"{rate['ours_k'] / rate['plain']:.2f}x")]
        for name, r, ratio in rows:
            print(f"    {name:<74s} {r:7.1f} model-steps/s  {ratio}")
        print(f"    ratio at the planner's size: {rate['ours_k'] / rate['plain']:.2f}x  (target >= 1.5x)")


if __name__ == "__main__":
    main()
