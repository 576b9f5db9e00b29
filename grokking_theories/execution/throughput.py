"""Measured step rates: what one ensemble step of a shape costs on this machine, kept in a per-machine cache.

Two decisions read them:

* **the GPU ensemble size** (:func:`choose_ensemble_size`): on a GPU, small models are launch-bound, so K
  members in one batched model cost little more than one until the device is busy. K is not a constant:
  K = 1, 2, 4, ... are timed on the device until model-steps/s stop growing (the last doubling gained
  less than ``SATURATION``) or the next doubling would not fit in memory (``MEMORY_SHARE`` of what is
  free, extrapolated from the measured peak), and the smallest K within ``NEAR_BEST`` of the best
  throughput is taken: a member that stops early (it grokked) still costs its share of every step until
  its whole ensemble is done, so a larger K that is barely faster wastes more than it gains.
  On a CPU the sizes are the ones ``benchmarks/bench_training.py`` measured (``CPU_ENSEMBLE_SIZE``).
* **the wall-time estimate** printed before training (:func:`estimate_training`): every ensemble of the
  plan at its full step budget, plus its evaluations, scheduled longest first on the workers. It is an
  upper bound (runs that grok stop early) and says so.

A rate is keyed by the machine (host, CPU or GPU model, torch version) and by what sets a step's cost
(task size, model shape, batch size, loss dtype, K), and cached as JSON in
``$GROKKING_THEORIES_CACHE`` (default ``~/.cache/grokking_theories``) so a laptop measures a shape once.
Measuring takes a few steps of the real trainer: well under a second per shape on a CPU.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Optional, Sequence

from ..config import RunConfig

#: Doubling K stops once it raises model-steps/s by less than this share (the device is busy).
SATURATION = 0.10
#: K is the smallest measured size whose model-steps/s is within this share of the best one.
NEAR_BEST = 0.10
#: Share of the GPU memory free at measurement that an ensemble may be extrapolated to use.
MEMORY_SHARE = 0.8
#: Largest K ever tried on a GPU.
MAX_GPU_ENSEMBLE = 1024
#: Where the per-machine cache lives (a folder); default ~/.cache/grokking_theories.
CACHE_ENV = "GROKKING_THEORIES_CACHE"


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grokking_theories"
    return Path(os.environ.get(CACHE_ENV) or default)


def machine_key(device: str) -> str:
    """What a measured rate belongs to: host, processor (or GPU) model, torch version, device kind."""
    import torch

    if device.startswith("cuda"):
        processor = torch.cuda.get_device_name(torch.device(device))
    else:
        processor = _cpu_model()
    return f"{platform.node()}|{processor}|torch {torch.__version__}|{device}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cost_key(config: RunConfig, members: int) -> str:
    """What sets the cost of one ensemble step: the task's size, the shape key's model and optimiser parts
    (:meth:`RunConfig.shape_key`, so every knob that changes the step loop counts), whether a fixed norm is
    projected, and K. Not the seeds, the budget or the per-member values, which leave a step's cost alone."""
    _, model, optim, _ = config.shape_key()
    what = (config.task.op, config.task.p, config.task.train_frac, model, optim, config.optim.fixed_norm is not None,
            members)
    return hashlib.sha256(repr(what).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepCost:
    """Measured seconds of one ensemble step (``step``) and of one evaluation of every member (``evaluate``),
    with the peak device memory of the ensemble in bytes (0 on a CPU)."""

    step: float
    evaluate: float
    memory: int = 0


class StepRates:
    """The per-machine cache of measured :class:`StepCost`; measures what it lacks (one torch thread on a CPU,
    as the workers train)."""

    def __init__(self, device: str, path: Optional[Path] = None):
        from ..training import parse_device

        self.device = parse_device(device)[0]
        self.path = Path(path) if path is not None else cache_dir() / "step_rates.json"
        self.machine = machine_key(self.device)
        self._all = self._read()
        self.measured = 0  # how many costs this object measured (the rest came from the cache)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # A cache is only a cache: say so and measure again rather than trust or crash on it.
            import warnings
            warnings.warn(f"step-rate cache {self.path} is unreadable ({exc}); measuring again and rewriting it")
            return {}
        return data if isinstance(data, dict) else {}

    def cost(self, config: RunConfig, members: int) -> StepCost:
        """The cost of a ``members``-member ensemble of ``config``'s shape (measured once per machine)."""
        mine = self._all.setdefault(self.machine, {})
        key = cost_key(config, members)
        if key not in mine:
            mine[key] = dataclasses.asdict(measure(config, members, self.device))
            self.measured += 1
            self._write()
        return StepCost(**mine[key])

    def free_memory(self) -> int:
        """Bytes free on the (CUDA) device now."""
        import torch

        return int(torch.cuda.mem_get_info(torch.device(self.device))[0])

    def _write(self) -> None:
        """Save the cache (atomically, under a name of its own: two studies may share the cache); a cache that
        cannot be written costs a re-measurement next time, never the study."""
        import tempfile

        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(self._all, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            import warnings
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            warnings.warn(f"step-rate cache {self.path} cannot be written ({exc}); the rates are measured again "
                          "next time")


@contextlib.contextmanager
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure(config: RunConfig, members: int, device: str, *, min_seconds: float = 0.1,
            min_steps: int = 3, max_steps: int = 50) -> StepCost:
    """Time real steps of a ``members``-member ensemble of ``config`` (after two warm-up steps) until
    ``min_seconds`` and ``min_steps`` are both reached (at most ``max_steps``), and one evaluation."""
    import torch

    from ..training import EnsembleTrainer

    configs = [dataclasses.replace(config, seed=config.seed + k) for k in range(members)]
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with contextlib.nullcontext() if cuda else _one_thread():
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        ens = EnsembleTrainer(configs, device)
        for _ in range(2):
            ens.step()
        sync()
        n, start = 0, time.perf_counter()
        while n < max_steps and (n < min_steps or time.perf_counter() - start < min_seconds):
            ens.step()
            n += 1
            if cuda and n % 5 == 0:
                sync()
        sync()
        step = (time.perf_counter() - start) / n
        start = time.perf_counter()
        ens.evaluate()
        sync()
        evaluate = time.perf_counter() - start
        memory = int(torch.cuda.max_memory_allocated(device)) if cuda else 0
    if cuda:  # the driver measures; the workers that train after it need the memory back
        del ens
        torch.cuda.empty_cache()
    return StepCost(step=step, evaluate=evaluate, memory=memory)


def choose_ensemble_size(config: RunConfig, n_runs: int, rates: StepRates, free_memory: Optional[int] = None,
                         sharing: int = 1) -> int:
    """The GPU ensemble size for ``n_runs`` runs of ``config``'s shape, from measured throughput and memory
    (see the module docstring); never more than ``n_runs``. ``free_memory``: bytes free on the device
    (default: ``rates.free_memory()``, what CUDA reports now), of which each of ``sharing`` worker processes
    training on the same GPU may plan for an equal part."""
    free = (rates.free_memory() if free_memory is None else free_memory) // max(1, sharing)
    limit = min(n_runs, MAX_GPU_ENSEMBLE)
    throughput: dict[int, float] = {}
    k = 1
    while True:
        cost = rates.cost(config, k)
        throughput[k] = k / cost.step
        if k >= limit:
            break
        if len(throughput) >= 2 and throughput[k] < (1 + SATURATION) * throughput[k // 2]:
            break
        if cost.memory * 2 > MEMORY_SHARE * free:
            break
        k = min(2 * k, limit)
    best = max(throughput.values())
    return min(k for k, v in throughput.items() if v >= (1 - NEAR_BEST) * best)


#: Step rates are measured one ensemble at a time; CPU workers training side by side share the memory
#: bandwidth and ran up to 1.34x slower than their rate measured alone (interventions quick study, 2 workers on
#: the 2-core project machine, 2026-11-26: float32-loss and digits ensembles 1.33-1.34x, StableMax 1.12x,
#: plain softmax 1.0x). So a CPU estimate with several workers scales every ensemble's time by this, to stay an
#: upper bound (that study's "at most 6 min" took 6 min 56 s without it).
CPU_SHARED_SLOWDOWN = 1.5


@dataclasses.dataclass(frozen=True, kw_only=True)
class Estimate:
    """A study's estimated training time (an upper bound: every run to its full budget)."""

    seconds: float
    ensembles: int
    workers: int
    device: str
    measured: int  # step costs measured now (the others came from the cache)
    cache: Path

    def text(self) -> str:
        return (f"estimated training time on {self.device} with {self.workers} worker(s): at most "
                f"{format_duration(self.seconds)} ({self.ensembles} ensembles, every run to its full step budget; "
                f"runs that grok stop earlier). Step rates measured on this machine"
                f"{f' ({self.measured} now)' if self.measured else ''}, cached in {self.cache}")


def format_duration(seconds: float) -> str:
    """'40 s', '12 min', 'about 3.4 hours'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} hours"


def ensemble_seconds(group: Sequence[RunConfig], rates: StepRates) -> float:
    """One ensemble's time at its full budget: its steps plus one evaluation per logged step."""
    from ..training.schedule import metric_steps

    first = group[0]
    cost = rates.cost(first, len(group))
    return first.budget.max_steps * cost.step + len(metric_steps(first.budget)) * cost.evaluate


def estimate_training(plan: Sequence[Sequence[RunConfig]], device: str, workers: int,
                      rates: Optional[StepRates] = None) -> Estimate:
    """The time to train ``plan``'s ensembles on ``workers`` workers, in the plan's order (as executors submit
    them), each to the first free worker. On a GPU the workers share one device, so the ensembles' times add
    up (an upper bound; launch-bound ensembles overlap in practice)."""
    import heapq

    rates = rates or StepRates(device)
    times = [ensemble_seconds(g, rates) for g in plan]
    if not device.startswith("cuda") and workers > 1:
        times = [t * CPU_SHARED_SLOWDOWN for t in times]
    if device.startswith("cuda"):
        seconds = sum(times)
    else:
        finish = [0.0] * max(1, workers)  # each worker's finishing time; the next ensemble goes to the first free
        for t in times:
            heapq.heappush(finish, heapq.heappop(finish) + t)
        seconds = max(finish)
    return Estimate(seconds=seconds, ensembles=len(plan), workers=workers, device=rates.device,
                    measured=rates.measured, cache=rates.path)
