"""The executor interface and the ensemble planner.

An executor takes groups of configs (each group trains as one ensemble) and
yields each group's results as it finishes. It never writes anything: the
driver does, so a killed study loses only the groups still in flight.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Iterator, Sequence

from ..config import RunConfig

# Largest ensemble per architecture on a CPU, from benchmarks/bench_training.py
# (see README "Performance"): the small MLP gains from batching members, the
# transformer does not (8 batched ran at 0.64x of 8 sequential), so it trains alone.
CPU_ENSEMBLE_SIZE = {"mlp": 4, "transformer": 1}
# On a GPU small models are launch-bound and batching is the main lever.
GPU_ENSEMBLE_SIZE = {"mlp": 64, "transformer": 16}


def plan_ensembles(configs: Sequence[RunConfig], device: str = "cpu",
                   max_members: int | None = None) -> list[list[RunConfig]]:
    """Group runs that share a shape into ensembles of at most ``max_members``.

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
    sizes = GPU_ENSEMBLE_SIZE if device.startswith("cuda") else CPU_ENSEMBLE_SIZE
    plan = []
    for members in groups.values():
        arch = members[0].model.arch
        size = max_members or sizes.get(arch, 1)
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
