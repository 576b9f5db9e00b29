"""The GPU path: batched ensembles against sequential runs, and the projected wall time of each paper-scale study.

    python benchmarks/bench_gpu.py [--device cuda] [--sizes 1,4,16,64,256] [--studies all,circuits,...]

(a) model-steps/s of K-member ensembles against K sequential runs (K x one run's time), for the Nanda
    transformer and the MLP of the paper-scale studies (their largest shapes), with the K that
    ``execution/throughput.py`` chooses from measured throughput and memory;
(b) the wall time of each paper-scale study on this device: its plan (the measured K per shape), every
    run at its full budget, the longest ensembles first on one GPU worker. An upper bound: runs that
    grok stop early.

With a GPU both are measured on it. Without one (``--device cpu``, the default where torch sees no
GPU), (a) and (b) are measured on this CPU, and (c) projects an H100 from what can be counted here: the
FLOPs of one member-step and of one evaluation (torch's FlopCounterMode) and the number of kernels one
ensemble step launches (counted by a dispatch mode), under the stated assumptions (H100 SXM float32
peak without TF32, an efficiency, a per-kernel floor). The projection is arithmetic, not a measurement;
the output says which it is.
"""
from __future__ import annotations

import argparse

import torch

#: H100 SXM float32 peak without tensor cores (TF32 is off by default), FLOP/s; NVIDIA's datasheet.
H100_FP32_PEAK = 67e12
#: Share of that peak batched float32 matmuls of these sizes reach (an assumption, stated in the output).
H100_EFFICIENCY = 0.5
#: Seconds per kernel: launch latency plus eager PyTorch's per-op host overhead (an assumption).
KERNEL_FLOOR = 8e-6
#: H100 memory a projected ensemble may use, bytes.
H100_MEMORY = 80e9


def largest_shapes(study_names, scales=("paper", "quick")):
    """For each architecture, a config of the shape with the most step budget across the studies, from the first
    scale that has the architecture (the paper scale is all transformers: its MLP comes from the quick scale)."""
    from collections import defaultdict

    from grokking_theories.studies import load_study

    best = {}
    for scale in scales:
        budget, example = defaultdict(int), {}
        for name in study_names:
            for cfg in load_study(name, scale).configs:
                budget[cfg.shape_key()] += cfg.budget.max_steps
                example[cfg.shape_key()] = cfg
        for key in sorted(budget, key=budget.get, reverse=True):
            best.setdefault(example[key].model.arch, example[key])
    return best


def describe(cfg) -> str:
    m, t = cfg.model, cfg.task
    shape = f"d{m.d_model} h{m.n_heads} mlp{m.d_mlp}" if m.arch == "transformer" else f"width {m.width}"
    return f"{m.arch} ({shape}), {t.op} mod {t.p}, train fraction {t.train_frac:g}"


def bench_ensembles(cfgs: dict, device: str, sizes) -> None:
    from grokking_theories.execution.throughput import StepRates, choose_ensemble_size, measure

    rates = StepRates(device)
    print(f"\n(a) model-steps/s, K-member ensemble vs K sequential runs, on {device} (measured)")
    print(f"{'model':58s} {'K':>5s} {'ensemble':>12s} {'sequential':>12s} {'ratio':>7s}")
    for arch, cfg in cfgs.items():
        one = measure(cfg, 1, device)
        for k in sizes:
            t = measure(cfg, k, device) if k > 1 else one
            ens, seq = k / t.step, 1 / one.step
            print(f"{describe(cfg):58s} {k:5d} {ens:12.1f} {seq:12.1f} {ens / seq:7.2f}")
        if device.startswith("cuda"):
            print(f"{'':58s} chosen K (throughput and memory): {choose_ensemble_size(cfg, 10**6, rates)}")


def project_study_times(study_names, device: str, rates=None, shared_by=4) -> None:
    """(b): each study's plan and its time at full budgets on one worker; with projected rates also on
    ``shared_by`` worker processes sharing the GPU (launch-bound ensembles overlap; the GPU's arithmetic,
    the sum of every ensemble's compute-bound time, cannot)."""
    from grokking_theories.execution import plan_ensembles
    from grokking_theories.execution.throughput import estimate_training, format_duration
    from grokking_theories.studies import load_study

    how = "measured step rates" if rates is None else "projected step rates (section c)"
    print(f"\n(b) paper-scale studies on {device if rates is None else 'one H100 (projected)'}: every run to its "
          f"full budget, {how}")
    for name in study_names:
        configs = load_study(name, "paper").configs
        plan = plan_ensembles(configs, "cuda" if rates is not None else device, rates=rates)
        one = estimate_training(plan, device, 1, rates)
        sizes = sorted({len(g) for g in plan})
        line = (f"  {name:16s} {len(configs):4d} runs in {len(plan):4d} ensembles (K {sizes[0]}-{sizes[-1]}): "
                f"at most {format_duration(one.seconds)} on one worker")
        if rates is not None:
            shared = max(estimate_training(plan, device, shared_by, rates).seconds,
                         sum(rates.compute_seconds(g) for g in plan))
            line += f", {format_duration(shared)} on {shared_by} processes sharing it"
        print(line)


class ProjectedRates:
    """H100 step costs projected from FLOPs and kernel counts measured here (section c): the same interface as
    :class:`~grokking_theories.execution.throughput.StepRates`, so the planner and the estimate use it as is."""

    device = "cuda (projected H100)"
    measured = 0
    path = "(not cached: projected)"

    def __init__(self):
        self._counts = {}

    def counts(self, cfg):
        """(FLOPs of one member-step, kernels of one ensemble step, FLOPs and kernels of one evaluation)."""
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import FlopCounterMode

        from grokking_theories.training import EnsembleTrainer

        key = (cfg.shape_key(),)
        if key in self._counts:
            return self._counts[key]

        class Kernels(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.n = 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                self.n += 1
                return func(*args, **(kwargs or {}))

        torch.set_num_threads(1)
        ens = EnsembleTrainer([cfg], "cpu")
        ens.step()  # warm: the first step allocates
        flops, kernels = FlopCounterMode(display=False), Kernels()
        with flops, kernels:
            ens.step()
        eval_flops, eval_kernels = FlopCounterMode(display=False), Kernels()
        with eval_flops, eval_kernels, torch.no_grad():
            ens.evaluate()
        out = (flops.get_total_flops(), kernels.n, eval_flops.get_total_flops(), eval_kernels.n)
        self._counts[key] = out
        return out

    def cost(self, cfg, k):
        from grokking_theories.execution.throughput import StepCost

        flops, kernels, eval_flops, eval_kernels = self.counts(cfg)
        rate = H100_EFFICIENCY * H100_FP32_PEAK
        return StepCost(step=max(kernels * KERNEL_FLOOR, k * flops / rate),
                        evaluate=max(eval_kernels * KERNEL_FLOOR, k * eval_flops / rate), memory=0)

    def free_memory(self) -> int:
        return int(H100_MEMORY)

    def compute_seconds(self, group) -> float:
        """The compute-bound part of an ensemble's time at its full budget (what processes sharing a GPU
        cannot overlap)."""
        from grokking_theories.training.schedule import metric_steps

        flops, _, eval_flops, _ = self.counts(group[0])
        rate = H100_EFFICIENCY * H100_FP32_PEAK
        budget = group[0].budget
        return len(group) * (budget.max_steps * flops + len(metric_steps(budget)) * eval_flops) / rate


def project_h100(cfgs: dict, study_names) -> None:
    rates = ProjectedRates()
    print("\n(c) H100 projection (computed, not measured): step time = max(kernels x "
          f"{KERNEL_FLOOR * 1e6:.0f} us, K x FLOPs / ({H100_EFFICIENCY:.0%} of {H100_FP32_PEAK / 1e12:.0f} TFLOP/s "
          "float32)); FLOPs and kernels counted here on one step")
    from grokking_theories.execution.throughput import choose_ensemble_size

    for arch, cfg in cfgs.items():
        flops, kernels, eval_flops, eval_kernels = rates.counts(cfg)
        k = choose_ensemble_size(cfg, 10**6, rates)
        t = rates.cost(cfg, k).step
        print(f"  {describe(cfg)}: {flops / 1e9:.2f} GFLOP per member-step, {kernels} kernels per step; "
              f"K {k}: {k / t:,.0f} model-steps/s (one run alone: {1 / rates.cost(cfg, 1).step:,.0f})")
    project_study_times(study_names, "cuda", rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="1,4,16,64", help="ensemble sizes K to time in (a)")
    parser.add_argument("--studies", default="all,weight_decay,circuits,omnigrok,double_descent,sharpness",
                        help="paper-scale studies to project in (b) (comma-separated)")
    parser.add_argument("--skip-measured", action="store_true",
                        help="without a GPU: only the projection (c); (a) and (b) on a CPU take minutes")
    args = parser.parse_args()
    names = args.studies.split(",")
    sizes = [int(k) for k in args.sizes.split(",")]
    cfgs = largest_shapes(names)
    gpu = args.device.startswith("cuda")
    print(f"device: {torch.cuda.get_device_name() if gpu else 'CPU (no GPU measured)'}; torch {torch.__version__}")
    if gpu or not args.skip_measured:
        bench_ensembles(cfgs, args.device, sizes)
        project_study_times(names, args.device)
    if not gpu:
        project_h100(cfgs, names)


if __name__ == "__main__":
    main()
