"""The run store: a writer lock, a SQLite index and checkpoint files, under one root.

Layout of a store rooted at ``root``, one module per file::

    root/index.sqlite            runs, logged metrics, probe rows (WAL mode)    store/index.py, store/schema.py
    root/checkpoints/<id>.pt     parameter checkpoints, one file per run        store/checkpoints.py
    root/store.lock              flock'ed by the one writing driver; its pid    store/lock.py

:class:`RunStore` puts the three together: it validates what callers hand it
(store/rows.py), orders the writes across index and files, and keeps the
public API; the SQL lives in :class:`~grokking_theories.store.index.RunIndex`,
the files in :class:`~grokking_theories.store.checkpoints.CheckpointFiles`.

A run *is* its canonical config (:func:`grokking_theories.config.run_id`), so
studies that ask for the same run share its row, and a driver that is
restarted skips every run in :meth:`RunStore.finished_ids`.

Durability contract of :meth:`RunStore.write_result`: the new checkpoint file
is staged atomically next to the old one *before* the index transaction; the
metric rows, the run's final status and the new checkpoint's sha256 are
committed in one SQLite transaction; then the staged file replaces the old one
(:class:`~grokking_theories.store.checkpoints.CheckpointFiles`). A crash or an
error at any point therefore leaves either the old state or the new state of
the run, its parameters included, never a ``complete`` run without its metric
rows: a failed commit drops the staged file, and a staged file whose commit
happened is read in place of the old one and published by the next writer to
open the store. A checkpoint file damaged by other means is reported as a
:class:`~grokking_theories.errors.CorruptCheckpointError`, never returned.

Probe rows (schema version 2 on): offline measures computed from a run's stored
checkpoint (:mod:`grokking_theories.probes.stage`) are kept in their own
tables, each (run, probe) with the probe version and the checkpoint sha256 it
was computed from (:meth:`RunStore.write_probe`, :meth:`RunStore.probe_state`),
and :meth:`RunStore.metrics_table` returns them with the logged rows in one
tidy table. A retrain (:meth:`RunStore.write_result`) drops them.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import pandas as pd

from ..config import RunConfig, canonical_json
from ..config import run_id as config_run_id
from ..errors import CorruptCheckpointError, StoreError
from .checkpoints import Checkpoint, CheckpointFiles, serialise_checkpoint
from .index import FINISHED_STATUSES, INDEX_NAME, RESULT_STATUSES, ProbeSelection, RunIndex
from .lock import LOCK_NAME, WriterLock
from .rows import METRIC_COLUMNS, dump_summary, metric_columns
from .schema import SCHEMA_VERSION

__all__ = ["FINISHED_STATUSES", "METRIC_COLUMNS", "RESULT_STATUSES", "SCHEMA_VERSION", "RunStore"]


def _now() -> float:
    """Timestamp of the ``updated`` column (a function so tests can make it fail mid-transaction)."""
    return time.time()


class RunStore:
    """Persistent store of runs: configs, statuses, tidy metrics, probe rows and checkpoints.

    Parameters
    ----------
    root : str or os.PathLike
        Store directory. A writer creates it; a read-only store requires it.
    readonly : bool, default False
        Open without the write lock. Any number of read-only stores may read
        while one writer holds the lock (SQLite WAL readers see every commit).
        Write calls raise :class:`StoreError`.

    Raises
    ------
    StoreLockedError
        A writer was asked for while another driver (process, or another
        ``RunStore`` in this process) holds ``<root>/store.lock``.
    StoreError
        ``readonly=True`` and the store does not exist, or ``index.sqlite`` is
        corrupt, unreadable or of an unknown schema version.

    Notes
    -----
    Schema versions (:mod:`grokking_theories.store.schema`): a writer that
    opens an older index (version 1: no probe tables; version 2: no attempt
    counts) migrates it to the current version in one transaction, keeping
    every run and metric row. A read-only store reads an older index as it
    is, without migrating (it cannot write): missing probe tables count as
    empty, so :meth:`probe_state` is ``{}`` and :meth:`metrics_table` has only
    logged rows, and missing attempt counts read 0; :attr:`schema_version`
    says which version was found. A writer that opens the store also finishes
    a checkpoint replacement a dead writer left half done (see the module's
    docstring).

    One writer at a time is enforced with ``fcntl.flock``, which belongs to
    the open file description: a second writer in the same process is refused
    just like one in another process. A forked child shares the parent's
    lock, so do not fork while holding a writer. A ``RunStore`` is not
    thread-safe: use it from the thread that opened it.
    """

    def __init__(self, root, *, readonly: bool = False):
        self.root = Path(root).expanduser().absolute()
        self.readonly = bool(readonly)
        self.index_path = self.root / INDEX_NAME
        self.checkpoint_dir = self.root / "checkpoints"
        self.lock_path = self.root / LOCK_NAME
        # Set before anything can fail: close() (and __del__) must work on a half-opened store.
        self._lock: Optional[WriterLock] = None
        self._index: Optional[RunIndex] = None
        self._files = CheckpointFiles(self.checkpoint_dir)
        if not self.readonly:
            try:
                self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create run store {self.root}: {exc}") from exc
            self._lock = WriterLock(self.root)
        try:
            # _now is looked up at each call, not bound here, so a test that patches this module's _now
            # makes the index fail in the middle of its transaction.
            self._index = RunIndex(self.root, readonly=self.readonly, clock=lambda: _now())
            if not self.readonly:
                self._files.recover(self._index.checkpoint_shas)
        except BaseException:
            self._release_lock()
            raise

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the index and release the write lock (idempotent)."""
        if self._index is not None:
            self._index.close()
        self._release_lock()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self):
        # A forgotten writer must not keep the lock (and block the next driver)
        # for the life of the interpreter.
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "writer"
        return f"RunStore({str(self.root)!r}, {mode})"

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    @property
    def opened_version(self) -> Optional[int]:
        """Schema version of the index as found on opening (a writer has migrated it to SCHEMA_VERSION)."""
        return None if self._index is None else self._index.opened_version

    @property
    def schema_version(self) -> int:
        """Schema version of the index now (a writer always sees SCHEMA_VERSION)."""
        return self._index.schema_version

    # ------------------------------------------------------------------ runs

    def finished_ids(self) -> set[str]:
        """Ids of runs that are never trained again.

        Returns
        -------
        set of str
            Runs whose status is ``'complete'`` or ``'diverged'`` (a diverged
            run is a result, not an error). ``'failed'`` and ``'pending'``
            runs are retried by the next driver.
        """
        return self._index.finished_ids()

    def attempts(self, run_ids=None) -> dict[str, int]:
        """How many results were written for each run, ``{run_id: count}`` (default: every run).

        A finished run is never trained again, so its count stays 1 however often a study is
        interrupted and rerun (the fault-injection suite checks exactly that). A registered run never
        written has 0, as has every run of an index written before schema version 3.

        Raises
        ------
        StoreError
            A requested run id is not in the store.
        """
        return self._index.attempts(run_ids)

    def status(self, run_id: str) -> Optional[str]:
        """Status of one run: 'pending', 'complete', 'diverged', 'failed', or None if unknown."""
        return self._index.status(run_id)

    def register(self, configs: Iterable[RunConfig]) -> None:
        """Record runs as ``'pending'`` unless the store already has them.

        Parameters
        ----------
        configs : iterable of RunConfig
            Runs a study asks for. Runs already present keep their status,
            metrics and checkpoint untouched (a rerun never resets results).
        """
        self._index.require_writer("register")
        runs = []
        for config in configs:
            _check_config(config)
            runs.append((config_run_id(config), canonical_json(config)))
        self._index.register(runs)

    def config(self, run_id: str) -> RunConfig:
        """The RunConfig of a stored run, rebuilt from its canonical JSON.

        Raises
        ------
        StoreError
            The run is not in the store.
        """
        return self._index.config(run_id)

    # ------------------------------------------------------------------ results

    def write_result(
        self,
        config: RunConfig,
        metrics,
        *,
        checkpoint: Union[Checkpoint, dict, None] = None,
        status: str = "complete",
        summary: Optional[dict] = None,
        wall_time: Optional[float] = None,
        device: Optional[str] = None,
    ) -> None:
        """Store the outcome of one run, replacing any earlier attempt.

        Parameters
        ----------
        config : RunConfig
            The run (registered or not; an absent run is inserted).
        metrics : iterable of (int, str, float) or pandas.DataFrame
            Tidy metric rows ``(step, metric, value)``, or a frame with those
            columns. Each ``(step, metric)`` may appear once. NaN values are
            allowed (stored as NULL, read back as NaN).
        checkpoint : Checkpoint or dict, optional
            A :class:`~grokking_theories.store.Checkpoint`, or the trainer's
            ``{"steps": LongTensor (n,), "params": {name: FloatTensor (n, ...)}}``.
            ``None`` records no checkpoint (and drops a stale one).
        status : {'complete', 'diverged', 'failed'}
        summary : dict, optional
            JSON-serialisable per-run summary (numpy/torch scalars allowed).
        wall_time : float, optional
            Seconds of training.
        device : str, optional
            Where it trained.

        Raises
        ------
        ValueError
            Bad status, malformed metric rows or checkpoint, or a duplicate
            ``(step, metric)``; the store is unchanged for the run.
        StoreError
            Read-only store, index failure, or a stored run with the same id
            but a different config (hash collision).

        Notes
        -----
        The new checkpoint is first staged next to the old one, atomically
        (temp file in the same directory, fsync, ``os.replace`` to
        ``<run_id>.pt.pending``). Then one SQLite transaction deletes the run's
        old metric rows and every probe row computed on its old checkpoint
        (``probe_metrics`` and ``probe_runs``), inserts the new metric rows,
        sets status, summary, wall time, device and checkpoint sha256 and
        counts one more attempt; then the staged file replaces the old one. A
        crash never leaves a ``'complete'`` run without its rows, nor probe
        rows of another attempt, nor a run without the parameters its index
        records (see the module's docstring).
        """
        self._index.require_writer("write_result")
        _check_config(config)
        if status not in RESULT_STATUSES:
            raise ValueError(f"status must be one of {RESULT_STATUSES}, got {status!r}")
        rid = config_run_id(config)
        cfg_json = canonical_json(config)
        # Validate and convert every input before touching disk: bad input must change nothing.
        steps, names, values = metric_columns(metrics, rid)
        summary_json = None if summary is None else dump_summary(summary, rid)
        wall_time = None if wall_time is None else float(wall_time)
        device = None if device is None else str(device)
        blob = None if checkpoint is None else serialise_checkpoint(checkpoint, rid)
        # Before the file: a colliding id must not overwrite another run's checkpoint.
        self._index.refuse_other_config(rid, cfg_json)

        # Two phases (CheckpointFiles): the new file is staged next to the old one, the index commits its
        # sha256, then the staged file replaces the old one. A failed commit leaves the old file.
        sha = None if blob is None else self._files.stage(rid, blob)
        try:
            self._index.write_result(rid, cfg_json, status=status, steps=steps, names=names, values=values,
                                     summary_json=summary_json, wall_time=wall_time, device=device,
                                     checkpoint_sha256=sha)
        except BaseException:
            if blob is not None:
                self._settle_staged(rid, sha)
            raise
        if blob is None:
            # The new attempt has no checkpoint; an old file would no longer match any record.
            self._files.remove(rid)
        else:
            self._files.publish(rid)

    def _settle_staged(self, rid: str, sha: str) -> None:
        """After a failed index write: publish the staged file if its commit happened after all (an interrupt
        that came after COMMIT), else drop it. If the index cannot say, leave it: a staged file is read only
        when its sha256 is the recorded one, and the next writer to open the store settles it."""
        try:
            recorded = self._index.checkpoint_sha(rid)
        except StoreError:
            return
        if recorded == sha:
            self._files.publish(rid)
        else:
            self._files.discard(rid)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_path(self, run_id: str) -> Path:
        """Where the checkpoint of ``run_id`` lives (whether or not it exists)."""
        return self._files.path(run_id)

    def checkpoint_shas(self, run_ids=None) -> dict[str, Optional[str]]:
        """Recorded checkpoint sha256 of runs (None: the run kept no checkpoint).

        Parameters
        ----------
        run_ids : iterable of str, optional
            Default: every run of the store.

        Raises
        ------
        StoreError
            A requested run id is not in the store.
        """
        return self._index.checkpoint_shas(run_ids)

    def checkpoint(self, run_id: str) -> Checkpoint:
        """Load a run's checkpoint, verified against its recorded sha256.

        Returns
        -------
        Checkpoint
            ``steps`` (LongTensor ``(n,)``) and ``params`` (``{name: Tensor
            (n, ...)}``), with the run's id and the verified sha256.
            ``ckpt["steps"]`` and ``ckpt["params"]`` work too, as on the dict
            this used to return.

        Raises
        ------
        CorruptCheckpointError
            The file is missing, truncated, unreadable, malformed, or its
            sha256 differs from the recorded one. The message names the file.
            Partial data is never returned.
        StoreError
            Unknown run, or a run stored without a checkpoint.
        """
        expected = self._index.checkpoint_sha(run_id)
        if expected is None:
            raise StoreError(f"run {run_id} in run store {self.root} has no recorded checkpoint")
        try:
            return self._files.read_verified(run_id, expected)
        except CorruptCheckpointError:
            # A reader next to a writer may have read the index just before a commit, or the published file
            # just before a rename: look once more, with the index as it is now, before calling the file bad.
            again = self._index.checkpoint_sha(run_id)
            if again is None:
                raise
            return self._files.read_verified(run_id, again)

    def load_checkpoints(self, run_id: str) -> Checkpoint:
        """:meth:`checkpoint` under its older name, kept for existing callers."""
        return self.checkpoint(run_id)

    # ------------------------------------------------------------------ probes

    def write_probe(self, run_id: str, probe: str, version: int, rows, *,
                    checkpoint_sha256: Optional[str] = None) -> None:
        """Store what one probe computed from one run's checkpoint, replacing its earlier rows.

        Parameters
        ----------
        run_id : str
            A run of the store that has a recorded checkpoint.
        probe : str
            The probe's name (:attr:`grokking_theories.probes.stage.Probe.name`).
        version : int
            The probe's version; recorded with the run's current checkpoint sha256, so that
            :func:`~grokking_theories.probes.stage.run_probes` recomputes only when either changes.
        rows : iterable of (int, str, float) or pandas.DataFrame
            Tidy rows ``(step, metric, value)`` as for :meth:`write_result`; may be empty
            (the probe has nothing to say about this run, and that is recorded too).
        checkpoint_sha256 : str, optional
            The sha256 of the checkpoint the rows were computed from; if given it must still be the
            run's recorded one (else StoreError: the run was retrained meanwhile).

        Raises
        ------
        ValueError
            Malformed rows, a duplicate ``(step, metric)``, or a ``(step, metric)`` the run already
            holds as a logged metric or as a row of another probe (the message names both). Nothing
            is written.
        StoreError
            Read-only store, unknown run, a run without a checkpoint, or a changed checkpoint.

        Notes
        -----
        One transaction: the probe's old rows for the run are deleted, the new ones inserted and
        ``probe_runs`` records (version, checkpoint sha256), or nothing changes.
        """
        self._index.require_writer("write_probe")
        if not isinstance(probe, str) or not probe:
            raise ValueError(f"probe name must be a non-empty str, got {probe!r}")
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)):
            raise ValueError(f"probe {probe!r}: version must be an int, got {version!r}")
        steps, names, values = metric_columns(rows, run_id)
        self._index.write_probe(run_id, probe, int(version), steps=steps, names=names, values=values,
                                checkpoint_sha256=checkpoint_sha256)

    def probe_state(self, run_ids=None) -> dict[tuple[str, str], tuple[int, str]]:
        """What probes have computed: ``(run_id, probe) -> (version, checkpoint sha256)``.

        Parameters
        ----------
        run_ids : iterable of str, optional
            Default: every run. Unknown ids simply have no entries.

        Returns
        -------
        dict
            Empty for a version-1 index opened read-only (it has no probe tables).
        """
        return self._index.probe_state(run_ids)

    # ------------------------------------------------------------------ tables

    def runs_table(self) -> pd.DataFrame:
        """One row per run, sorted by run_id.

        Returns
        -------
        pandas.DataFrame
            Columns ``run_id, status, wall_time, device``, then every flat
            config column (:meth:`RunConfig.flat`), then the summary keys
            prefixed ``summary_`` (missing keys are NaN).
        """
        return self._index.runs_table()

    def metrics_table(self, run_ids=None, metrics=None, *, probes: ProbeSelection = True) -> pd.DataFrame:
        """The tidy long-form metrics table every analysis reads: logged rows plus probe rows.

        Parameters
        ----------
        run_ids : iterable of str, optional
            Runs to include, whatever their status. Default: every finished
            (``'complete'`` or ``'diverged'``) run.
        metrics : iterable of str, optional
            Metric names to include. Default: all.
        probes : bool, str, iterable of str, or mapping of str to int, default True
            Which probe rows (:meth:`write_probe`) join the logged rows.
            ``True``: every probe's; ``False``: none (the logged rows only);
            names: only those probes'; ``{name: version}``: only those probes'
            rows computed by exactly that version (rows of another version
            are left out, as if not computed). Probe rows always belong to
            the run's current checkpoint (a retrain drops them).

        Returns
        -------
        pandas.DataFrame
            Columns ``run_id, status, <flat config columns>, step (int64),
            metric (str), value (float64)``; one row per (run, step, metric),
            sorted by run_id, metric, step. Probe rows look exactly like
            logged ones.

        Raises
        ------
        StoreError
            A requested run id is not in the store, or a (run, step, metric)
            is both a logged row and a probe row, or rows of two probes (the
            message names both).
        """
        return self._index.metrics_table(run_ids, metrics, probes=probes)


def _check_config(config) -> None:
    if not isinstance(config, RunConfig):
        raise TypeError(f"expected a RunConfig, got {type(config).__name__}")
