"""Local executor: a spawn process pool, one torch thread per worker.

One thread per process is the robust default on a small CPU: under load from
a second process, two OpenMP threads collapse (PERFORMANCE.md: a training-size
matmul fell from 160 to 23 GFLOP/s) while one thread keeps ~90. If a worker
dies (killed, out of memory), the pool is rebuilt and the groups that were in
flight are submitted again, up to ``max_restarts`` times.
"""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator, Sequence

from .base import Executor


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)


def _train_group(group, device):
    from ..training import train_ensemble
    return train_ensemble(group, device)


class LocalExecutor(Executor):
    def __init__(self, workers: int = 1, max_restarts: int = 3, fn=None):
        if workers < 1:
            from ..errors import ConfigError
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.max_restarts = max_restarts
        self.fn = fn or _train_group  # module-level, so spawned workers can import it

    def run(self, groups: Sequence, device: str) -> Iterator[list]:
        groups = list(groups)
        if self.workers == 1 or len(groups) == 1:
            _init_worker()  # in-process: same one-thread policy, no pickling
            for group in groups:
                yield self.fn(group, device)
            return
        pending = list(range(len(groups)))
        restarts = 0
        while pending:
            pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
            try:
                futures = {pool.submit(self.fn, groups[i], device): i for i in pending}
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i = futures.pop(fut)
                        result = fut.result()  # BrokenProcessPool surfaces here
                        pending.remove(i)
                        yield result
            except BrokenProcessPool:
                restarts += 1
                if restarts > self.max_restarts:
                    raise RuntimeError(f"worker processes died {restarts} times; {len(pending)} ensembles "
                                       "left untrained (finished runs are saved; rerun to resume)") from None
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
