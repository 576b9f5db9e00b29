"""Local executor: a spawn process pool, one torch thread per worker.

One thread per process is the robust default on a small CPU: under load from
a second process, two OpenMP threads collapse (PERFORMANCE.md: a training-size
matmul fell from 160 to 23 GFLOP/s) while one thread keeps ~90. If a worker
dies (killed, out of memory), the pool is rebuilt and the groups that were in
flight are submitted again, up to ``max_restarts`` times. Workers report
their steps through a queue, so the driver's progress bar moves with the
training, not only when an ensemble finishes.
"""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Optional, Sequence

from .base import Executor, train_group


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)


class StepReporter:
    """Counts training steps and sends ``(group index, steps)`` to a queue at most every ``interval`` s."""

    def __init__(self, sink, index: int, interval: float = 0.5):
        self.sink, self.index, self.interval = sink, index, interval
        self.pending, self.last = 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.pending += n
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.sink.put((self.index, self.pending))
            self.pending, self.last = 0, time.monotonic()


class _CallbackSink:
    """In-process stand-in for the queue: hands progress straight to the driver's callback."""

    def __init__(self, callback):
        self.callback = callback

    def put(self, item) -> None:
        self.callback(*item)


class LocalExecutor(Executor):
    def __init__(self, workers: int = 1, max_restarts: int = 3, fn=None):
        if workers < 1:
            from ..errors import ConfigError
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.max_restarts = max_restarts
        self.fn = fn or train_group  # module-level, so spawned workers can import it

    def run(self, groups: Sequence, device: str,
            on_progress: Optional[Callable[[int, int], None]] = None) -> Iterator[list]:
        """Yield ``(group index, results)`` as each group finishes; ``on_progress(group index, steps)`` meanwhile."""
        groups = list(groups)
        if self.workers == 1 or len(groups) == 1:
            _init_worker()  # in-process: same one-thread policy, no pickling
            for i, group in enumerate(groups):
                reporter = StepReporter(_CallbackSink(on_progress), i) if on_progress else None
                yield i, self.fn(group, device, reporter)
            return
        pending = list(range(len(groups)))
        restarts = 0
        manager = mp.get_context("spawn").Manager() if on_progress else None
        sink = manager.Queue() if manager else None

        def drain():
            while sink is not None:
                try:
                    on_progress(*sink.get_nowait())
                except queue_module.Empty:
                    return

        while pending:
            pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
            try:
                futures = {pool.submit(self.fn, groups[i], device, StepReporter(sink, i) if sink else None): i
                           for i in pending}
                while futures:
                    done, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                    drain()
                    for fut in done:
                        i = futures.pop(fut)
                        result = fut.result()  # BrokenProcessPool surfaces here
                        pending.remove(i)
                        yield i, result
            except BrokenProcessPool:
                restarts += 1
                if restarts > self.max_restarts:
                    raise RuntimeError(f"worker processes died {restarts} times; {len(pending)} ensembles "
                                       "left untrained (finished runs are saved; rerun to resume)") from None
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
        if manager is not None:
            manager.shutdown()
