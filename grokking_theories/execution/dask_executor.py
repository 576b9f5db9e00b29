"""Dask executor: the same ensembles and the same pure worker function, trained on a Dask cluster.

Without a scheduler address it starts a ``distributed.LocalCluster`` on this
machine (loopback only, no dashboard, one single-threaded worker process per
``--workers``) and shuts it down when the study is done. With an address
(``--scheduler tcp://HOST:8786``) it connects to a cluster someone else runs
(``dask scheduler`` plus ``dask worker``, or ``dask-jobqueue`` on SLURM) and
closes only its own connection.

What makes this safe is what makes the local pool safe: a task is
:func:`~grokking_theories.execution.base.train_group`, which writes nothing,
and the driver alone writes the store as results come back. When a worker dies
mid-ensemble, Dask's scheduler runs the task again on another worker from
scratch (up to ``allowed_failures`` times, then ``KilledWorker``, reported
here as a RuntimeError); finished ensembles are already in the store, so a
rerun of the study trains only what is missing.

Distributed is imported inside the class, so the package and ``--help`` stay
fast on machines without Dask.
"""
from __future__ import annotations

import queue
import sys
import uuid
from typing import Callable, Iterator, Optional, Sequence

from ..errors import ConfigError, GrokkingError
from .base import Executor, train_group
from .local import StepReporter

#: Seconds to try to reach a scheduler given by address. A scheduler on the same network answers in
#: well under a second; a wrong host or a closed port should fail the study quickly, not after Dask's
#: default 30 s.
CONNECT_TIMEOUT = 10.0

#: How long the driver waits for a progress message before it looks for finished ensembles again.
POLL_SECONDS = 0.25


def _train_on_worker(fn, group, device: str, index: int, topic: Optional[str]) -> list:
    """What every Dask task runs: one torch thread, progress sent as events on ``topic``, then ``fn``.

    One thread per task is the policy of the local pool too (execution/local.py says why); setting it here
    covers workers we did not start (a remote ``dask worker``) as well as ours.
    """
    import torch

    torch.set_num_threads(1)
    reporter = StepReporter(_EventSink(topic), index) if topic is not None else None
    return fn(group, device, reporter)


class _EventSink:
    """The worker end of the progress channel: ``put((group index, steps))`` logs an event on ``topic``.

    ``Worker.log_event`` is fire-and-forget (batched to the scheduler, which forwards it to the subscribed
    driver), so a training step never waits on the network; StepReporter already throttles to one message
    per 0.5 s per ensemble. Only the topic travels with the task; the worker is looked up where it runs.
    """

    def __init__(self, topic: str):
        self.topic = topic

    def put(self, item) -> None:
        from distributed import get_worker

        get_worker().log_event(self.topic, list(item))


class DaskExecutor(Executor):
    """Trains ensembles as Dask tasks; yields ``(group index, results)`` in completion order.

    Parameters
    ----------
    workers : int
        Worker processes of the LocalCluster started when ``scheduler`` is None (ignored otherwise: a
        remote cluster has the workers it has).
    scheduler : str, optional
        Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
    fn : callable, optional
        The worker function, ``fn(group, device, reporter) -> list[RunResult]`` (default
        :func:`~grokking_theories.execution.base.train_group`). It must be importable by module and name
        on every worker; tests swap in one that kills its worker.
    allowed_failures : int
        How many workers a task may lose before the study stops with an error, for the LocalCluster started
        here. A remote scheduler uses its own setting (``distributed.scheduler.allowed-failures``, default 3).
    connect_timeout : float, optional
        Seconds to try to reach ``scheduler`` (default :data:`CONNECT_TIMEOUT`).

    Progress: workers send their step counts as Dask events (``Worker.log_event``), which the scheduler
    forwards to this client (``Client.subscribe_topic``). They only move the progress bar: results come
    back as task results, and the driver tops the bar up when an ensemble finishes, so a lost event costs
    nothing but a bar that moves in jumps.
    """

    def __init__(self, workers: int = 1, scheduler: Optional[str] = None, *, fn=None, allowed_failures: int = 3,
                 connect_timeout: Optional[float] = None):
        try:
            import distributed
        except ImportError:
            raise ConfigError("--executor dask needs Dask's distributed scheduler, which is not installed: "
                              "pip install 'grokking_theories[dask]'") from None
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.fn = fn or train_group  # module-level, so workers can import it
        self.scheduler = scheduler
        self.cluster = None
        if scheduler is None:
            # Loopback only, and no dashboard. The scheduler still serves its small HTTP API (health,
            # metrics): on a free port, so that two studies on one machine never compete for Dask's 8787.
            self.cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                scheduler_kwargs={"allowed_failures": allowed_failures, "dashboard": False,
                                  "dashboard_address": "127.0.0.1:0"})
            try:
                self.client = distributed.Client(self.cluster, set_as_default=False)
            except BaseException:
                self.cluster.close()
                raise
        else:
            self.client = _connect(distributed, scheduler, connect_timeout or CONNECT_TIMEOUT)
            if not self.client.nthreads():
                print(f"the Dask scheduler at {scheduler} has no workers yet; the study waits for them "
                      f"(start some with: dask worker {scheduler} --nthreads 1)", file=sys.stderr, flush=True)

    def run(self, groups: Sequence, device: str,
            on_progress: Optional[Callable[[int, int], None]] = None) -> Iterator[tuple[int, list]]:
        """Yield ``(group index, results)`` as each group finishes; ``on_progress(group index, steps)`` meanwhile."""
        from distributed import as_completed

        groups = list(groups)
        progress: queue.SimpleQueue = queue.SimpleQueue()
        topic = None
        if on_progress is not None:
            # A topic of our own: other drivers on the same scheduler never see our events, nor we theirs.
            # The handler runs on the client's event-loop thread; the queue hands events to this thread.
            topic = f"grokking-progress-{uuid.uuid4().hex}"
            self.client.subscribe_topic(topic, lambda event: progress.put(event[1]))
        # The plan comes longest first; the priority keeps that order on the cluster, so that a long ensemble
        # is not started last while the other workers idle (see plan_ensembles).
        futures = {}
        try:
            for i, group in enumerate(groups):
                futures[self.client.submit(_train_on_worker, self.fn, group, device, i, topic, pure=False,
                                           priority=len(groups) - i)] = i
            finished = as_completed(futures, loop=self.client.loop)  # our client's loop: it is not the default
            while not finished.is_empty():
                _forward(progress, on_progress, wait=POLL_SECONDS)
                for future in finished.next_batch(block=on_progress is None):
                    index = futures.pop(future)
                    result = _result(future, index, left=len(futures))
                    _forward(progress, on_progress, wait=0)  # its last steps before its completion
                    yield index, result
        finally:
            # Stopped early (an error, Ctrl-C, the caller broke off): give up the groups not yielded. A task
            # already running finishes on its worker and its result is dropped; nothing was written for it.
            # When close() came first (the caller's own cleanup), closing the client already released them.
            if self.client.status == "running":
                if futures:
                    self.client.cancel(list(futures))
                if topic is not None:
                    self.client.unsubscribe_topic(topic)

    def close(self) -> None:
        """Close the connection, and the LocalCluster if this executor started it (a remote one keeps running)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _connect(distributed, address: str, timeout: float):
    """A client of the scheduler at ``address``, or an error that names the address and says what to check."""
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except ValueError as exc:  # no port, unknown scheme: the text itself is wrong
        raise ConfigError(f"--scheduler {address!r} is not a Dask scheduler address ({exc}); "
                          "it looks like tcp://HOST:8786") from None
    except Exception as exc:  # OSError when nothing answers in time; anything when something else answers
        raise GrokkingError(f"could not connect to the Dask scheduler at {address} within {timeout:g} s "
                            f"({type(exc).__name__}: {exc}); is `dask scheduler` running there, and is the "
                            "port reachable from this machine?") from None


def _result(future, index: int, left: int) -> list:
    """The group's results; a group that lost too many workers stops the study with what to do next."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        raise RuntimeError(f"workers died {exc.allowed_failures + 1} times while training ensemble {index}; "
                           f"{left + 1} ensembles left untrained (finished runs are saved; rerun to resume)") from exc
    except Exception as exc:
        # train_group turns a training error into a 'failed' run, so an error here is the cluster's: a task
        # that a worker could not unpickle, a lost scheduler connection.
        exc.add_note(f"ensemble {index} did not come back from the Dask cluster; every worker needs "
                     "grokking_theories (at the driver's version) and the module of the worker function; "
                     "finished runs are saved, rerun to resume")
        raise


def _forward(progress: queue.SimpleQueue, on_progress, wait: float) -> None:
    """Hand the progress events that arrived to ``on_progress``, waiting up to ``wait`` s for the first."""
    if on_progress is None:
        return
    try:
        item = progress.get(timeout=wait) if wait > 0 else progress.get_nowait()
    except queue.Empty:
        return
    while True:
        on_progress(*item)
        try:
            item = progress.get_nowait()
        except queue.Empty:
            return
