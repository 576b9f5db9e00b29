"""The executor interface and the ensemble planner.

An executor takes groups of configs (each group trains as one ensemble) and
yields each group's results as it finishes. It never writes anything: the
driver does, so a killed study loses only the groups still in flight.
"""
from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Iterator, Sequence

from ..config import RunConfig

#: The executors ``--executor`` names: a local process pool, or a Dask cluster (local or remote).
EXECUTORS = ("local", "dask")

# Largest ensemble per architecture on a CPU, from benchmarks/bench_training.py
# (see README "Performance"): the small MLP gains from batching members, the
# transformer does not (8 batched ran at 0.64x of 8 sequential), so it trains alone.
# On a GPU, small models are launch-bound and batching is the main lever: there K is measured
# per shape on the device itself (execution/throughput.py: choose_ensemble_size).
# The digits task's dense MLP (autograd path) gains less: 4 members of width 200 on 200 images ran 1.19x
# faster batched than one after another (600 steps, one thread, 2026-11-26; benchmarks/bench_training.py (e)).
CPU_ENSEMBLE_SIZE = {"mlp": 4, "transformer": 1, "dense_mlp": 4}


def plan_ensembles(configs: Sequence[RunConfig], device: str = "cpu",
                   max_members: int | None = None, rates=None, workers: int = 1) -> list[list[RunConfig]]:
    """Group runs that share a shape into ensembles of at most ``max_members``.

    Without ``max_members``, the size is :data:`CPU_ENSEMBLE_SIZE` of the architecture on a CPU and, on
    a GPU, the size :func:`~grokking_theories.execution.throughput.choose_ensemble_size` measures for
    the shape (``rates``: a :class:`~grokking_theories.execution.throughput.StepRates` to measure with;
    ``workers`` processes sharing the GPU each plan for an equal part of its memory).

    Members are sorted by weight decay and init scale within a shape so that
    runs which stop at similar times train together (a stopped member still
    costs its share of every step until the whole ensemble is done).

    The ensembles come longest first (by the sum of their members' step
    budgets, a rough cost: runs stop early and shapes differ; the sort is
    stable): with several workers, a long ensemble started last would leave
    the other workers idle at the end (longest-processing-time-first
    scheduling).
    """
    groups: dict[tuple, list[RunConfig]] = defaultdict(list)
    for cfg in configs:
        groups[cfg.shape_key()].append(cfg)
    cuda = device.startswith("cuda")
    if cuda and max_members is None and rates is None:
        from .throughput import StepRates
        rates = StepRates(device)
    plan = []
    for members in groups.values():
        arch = members[0].model.arch
        if max_members:
            size = max_members
        elif cuda:
            from .throughput import choose_ensemble_size
            size = choose_ensemble_size(members[0], len(members), rates, sharing=workers)
        else:
            size = CPU_ENSEMBLE_SIZE.get(arch, 1)
        members = sorted(members, key=lambda c: (c.optim.fixed_norm is not None, c.optim.weight_decay,
                                                 c.optim.lr, c.model.alpha, c.optim.fixed_norm or 0.0, c.seed))
        plan.extend(members[i:i + size] for i in range(0, len(members), size))
    return sorted(plan, key=lambda group: -sum(c.budget.max_steps for c in group))


class Executor(ABC):
    """Trains ensembles; yields ``(group index, list[RunResult])`` per group, in completion order.

    ``on_progress(group_index, steps)``, when given, is called in the driver
    as a group takes training steps (for progress bars); it must never be
    needed for correctness.
    """

    @abstractmethod
    def run(self, groups: Sequence[Sequence[RunConfig]], device: str, on_progress=None) -> Iterator[list]:
        ...

    def close(self) -> None:
        pass


def train_group(group: Sequence[RunConfig], device: str, reporter=None) -> list:
    """The pure worker function every executor runs: an ensemble's configs in, one RunResult each out.

    It writes nothing, so a worker lost mid-ensemble costs only a retrain from scratch. A run whose training
    raises comes back as a ``'failed'`` RunResult carrying its traceback (the store records it; the next
    study run retries it) instead of aborting the sweep. When an ensemble of several raises, each member is
    trained again alone, so one bad config costs its batch-mates a retrain, never their results.
    """
    from ..training import RunResult, train_ensemble

    error = None
    try:
        results = train_ensemble(group, device, on_step=reporter)
    except Exception:
        error = traceback.format_exc()
    # Outside the except block: its traceback would keep the failed ensemble (its parameters, moments and
    # work buffers, on a GPU too) alive while the members are retried.
    if error is not None:
        _release_device_memory(device)
        if len(group) > 1:
            results = [r for cfg in group for r in train_group([cfg], device, reporter)]
        else:
            results = [RunResult.failed(group[0], error, device)]
    if reporter is not None:
        reporter.flush()
    return results


def _release_device_memory(device: str) -> None:
    """Give a failed ensemble's cached GPU memory back before its members are retried one by one."""
    if str(device).startswith("cuda"):
        import gc

        import torch
        gc.collect()
        torch.cuda.empty_cache()


def make_executor(kind: str = "local", *, workers: int = 1, scheduler: str | None = None) -> "Executor":
    """The executor ``--executor KIND`` names: ``local`` (a process pool of ``workers``) or ``dask``
    (the scheduler at ``scheduler``, else a LocalCluster of ``workers`` one-thread worker processes)."""
    from ..errors import ConfigError

    if kind not in EXECUTORS:
        raise ConfigError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    if scheduler is not None and kind != "dask":
        raise ConfigError("--scheduler is an address of a Dask scheduler: it needs --executor dask")
    if kind == "local":
        from .local import LocalExecutor
        return LocalExecutor(workers)
    from .dask_executor import DaskExecutor
    return DaskExecutor(workers=workers, scheduler=scheduler)
