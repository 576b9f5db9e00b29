"""SQLite-backed run store.

Layout of a store rooted at ``root``::

    root/index.sqlite            runs, logged metrics, probe rows (WAL mode; schema: store/schema.py)
    root/checkpoints/<id>.pt     parameter checkpoints, one file per run (store/checkpoints.py)
    root/store.lock              flock'ed by the one writing driver; holds its pid (store/lock.py)

A run *is* its canonical config (:func:`grokking_theories.config.run_id`), so
studies that ask for the same run share its row, and a driver that is
restarted skips every run in :meth:`RunStore.finished_ids`.

Durability contract of :meth:`RunStore.write_result`: the checkpoint file is
written atomically *before* the index transaction, and the metric rows and
the run's final status are committed in one SQLite transaction. A crash at
any point therefore leaves either the old state or the new state of the run,
never a ``complete`` run without its metric rows. A crash between the
checkpoint rename and the commit leaves a checkpoint whose sha256 does not
match the recorded one; :meth:`RunStore.load_checkpoints` reports that as a
:class:`~grokking_theories.errors.CorruptCheckpointError` instead of silently
returning parameters that belong to another attempt.

Probe rows (schema version 2): offline measures computed from a run's stored
checkpoint (:mod:`grokking_theories.probes.stage`) are kept in their own
tables, each (run, probe) with the probe version and the checkpoint sha256 it
was computed from (:meth:`RunStore.write_probe`, :meth:`RunStore.probe_state`),
and :meth:`RunStore.metrics_table` returns them with the logged rows in one
tidy table. A retrain (:meth:`RunStore.write_result`) drops them.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import pandas as pd

from ..config import RunConfig, canonical_json, from_dict
from ..config import run_id as config_run_id
from ..errors import StoreError
from .checkpoints import atomic_write, read_verified, serialise_checkpoint
from .lock import acquire_lock, release_lock
from .rows import METRIC_COLUMNS, config_frame, dump_summary, metric_columns
from .schema import PROBE_TABLES_VERSION, SCHEMA_VERSION, check_readable, create_or_migrate

__all__ = ["FINISHED_STATUSES", "METRIC_COLUMNS", "RESULT_STATUSES", "SCHEMA_VERSION", "RunStore"]

FINISHED_STATUSES = ("complete", "diverged")
RESULT_STATUSES = ("complete", "diverged", "failed")

_UPSERT_RUN = """
INSERT INTO runs (run_id, config_json, status, summary_json, wall_time, device, checkpoint_sha256, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO UPDATE SET
    status = excluded.status,
    summary_json = excluded.summary_json,
    wall_time = excluded.wall_time,
    device = excluded.device,
    checkpoint_sha256 = excluded.checkpoint_sha256,
    updated = excluded.updated
"""

_UPSERT_PROBE_RUN = """
INSERT INTO probe_runs (run_id, probe, version, checkpoint_sha256, updated) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (run_id, probe) DO UPDATE SET
    version = excluded.version,
    checkpoint_sha256 = excluded.checkpoint_sha256,
    updated = excluded.updated
"""

#: ``probes=`` of :meth:`RunStore.metrics_table`: all, none, these names, or these names at these versions.
ProbeSelection = Union[bool, str, Iterable[str], Mapping[str, int]]


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
    opens a version-1 index (no probe tables) migrates it to version 2 in one
    transaction, keeping every run and metric row. A read-only store reads a
    version-1 index as it is, without migrating (it cannot write): its probe
    tables count as empty, so :meth:`probe_state` is ``{}`` and
    :meth:`metrics_table` has only logged rows; :attr:`schema_version` says
    which version was found.

    One writer at a time is enforced with ``fcntl.flock``, which belongs to
    the open file description: a second writer in the same process is refused
    just like one in another process. A forked child shares the parent's
    lock, so do not fork while holding a writer. A ``RunStore`` is not
    thread-safe: use it from the thread that opened it.
    """

    def __init__(self, root, *, readonly: bool = False):
        self.root = Path(root).expanduser().absolute()
        self.readonly = bool(readonly)
        self.index_path = self.root / "index.sqlite"
        self.checkpoint_dir = self.root / "checkpoints"
        self.lock_path = self.root / "store.lock"
        #: Schema version of the index as found on opening (a writer has migrated it to SCHEMA_VERSION).
        self.opened_version: Optional[int] = None
        self._lock_fd: Optional[int] = None
        self._conn: Optional[sqlite3.Connection] = None
        if self.readonly:
            if not self.index_path.is_file():
                raise StoreError(f"no run store at {self.root} (missing {self.index_path})")
            self._conn = self._connect(readonly=True)
            return
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create run store {self.root}: {exc}") from exc
        self._lock_fd = acquire_lock(self.lock_path, self.root)
        try:
            self._conn = self._connect(readonly=False)
        except BaseException:
            self._release_lock()
            raise

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the index and release the write lock (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
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
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            release_lock(fd)

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        try:
            if readonly:
                uri = self.index_path.as_uri() + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
            else:
                conn = sqlite3.connect(self.index_path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store index {self.index_path}: {exc}") from exc
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so the one-transaction
        # guarantees of write_result do not depend on the sqlite3 module's implicit rules.
        self._conn = conn
        try:
            with self._db("opening the index"):
                # Any query makes SQLite read the header: a non-database file fails here.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if readonly:
                    check_readable(version, self.index_path, readonly=True)
                else:
                    # WAL lets read-only stores (reports, a second terminal) read while we write.
                    conn.execute("PRAGMA journal_mode=WAL")
                    # FULL: a committed run survives power loss; one fsync per run is negligible.
                    conn.execute("PRAGMA synchronous=FULL")
                    version = create_or_migrate(conn, self.index_path)
                self.opened_version = version
        except BaseException:
            self._conn = None
            conn.close()
            raise
        return conn

    @property
    def schema_version(self) -> int:
        """Schema version of the index now (a writer always sees SCHEMA_VERSION)."""
        conn = self._connection()
        with self._db("reading the schema version"):
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    @staticmethod
    def _has_probe_tables(conn: sqlite3.Connection) -> bool:
        # Read inside the caller's snapshot: a reader of a version-1 index sees the probe tables as soon
        # as a writer has migrated it.
        return conn.execute("PRAGMA user_version").fetchone()[0] >= PROBE_TABLES_VERSION

    # ------------------------------------------------------------------ sqlite helpers

    @contextlib.contextmanager
    def _db(self, doing: str) -> Iterator[None]:
        """Turn SQLite failures into StoreError naming the index file."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise  # a constraint on caller data: the caller words the message
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"run store index {self.index_path} failed while {doing}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run store {self.root} is closed")
        return self._conn

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all."""
        conn = self._connection()
        with self._db(doing):
            # IMMEDIATE takes the write lock up front, so the commit cannot fail on a busy upgrade.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def _snapshot(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One read transaction: several SELECTs see the same committed state."""
        conn = self._connection()
        with self._db(doing):
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _query(self, sql: str, params=(), doing: str = "reading") -> list[tuple]:
        conn = self._connection()
        with self._db(doing):
            return conn.execute(sql, params).fetchall()

    def _require_writer(self, what: str) -> None:
        if self.readonly:
            raise StoreError(f"run store {self.root} is open read-only; {what} needs a writer")
        self._connection()

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
        marks = ",".join("?" * len(FINISHED_STATUSES))
        rows = self._query(f"SELECT run_id FROM runs WHERE status IN ({marks})", FINISHED_STATUSES)
        return {r[0] for r in rows}

    def status(self, run_id: str) -> Optional[str]:
        """Status of one run: 'pending', 'complete', 'diverged', 'failed', or None if unknown."""
        rows = self._query("SELECT status FROM runs WHERE run_id = ?", (run_id,))
        return rows[0][0] if rows else None

    def register(self, configs: Iterable[RunConfig]) -> None:
        """Record runs as ``'pending'`` unless the store already has them.

        Parameters
        ----------
        configs : iterable of RunConfig
            Runs a study asks for. Runs already present keep their status,
            metrics and checkpoint untouched (a rerun never resets results).
        """
        self._require_writer("register")
        rows = []
        for config in configs:
            _check_config(config)
            rows.append((config_run_id(config), canonical_json(config)))
        if not rows:
            return
        now = _now()
        with self._transaction("registering runs") as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO runs (run_id, config_json, status, updated) VALUES (?, ?, 'pending', ?)",
                [(rid, cfg, now) for rid, cfg in rows],
            )

    def config(self, run_id: str) -> RunConfig:
        """The RunConfig of a stored run, rebuilt from its canonical JSON.

        Raises
        ------
        StoreError
            The run is not in the store.
        """
        rows = self._query("SELECT config_json FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in run store {self.root}")
        return from_dict(json.loads(rows[0][0]))

    # ------------------------------------------------------------------ results

    def write_result(
        self,
        config: RunConfig,
        metrics,
        *,
        checkpoint: Optional[dict] = None,
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
        checkpoint : dict, optional
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
        The checkpoint is written first, atomically (temp file in the same
        directory, fsync, ``os.replace``). Then one SQLite transaction deletes
        the run's old metric rows and every probe row computed on its old
        checkpoint (``probe_metrics`` and ``probe_runs``), inserts the new
        metric rows and sets status, summary, wall time, device and checkpoint
        sha256, so a crash never leaves a ``'complete'`` run without its rows,
        nor probe rows of another attempt.
        """
        self._require_writer("write_result")
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

        stored = self._query("SELECT config_json FROM runs WHERE run_id = ?", (rid,))
        if stored and stored[0][0] != cfg_json:
            raise StoreError(
                f"run id {rid} in run store {self.root} belongs to a different config; "
                f"stored {stored[0][0]}, given {cfg_json}"
            )

        path = self.checkpoint_path(rid)
        sha = None
        if blob is not None:
            sha = hashlib.sha256(blob).hexdigest()
            atomic_write(path, blob)

        rows = list(zip([rid] * len(names), steps.tolist(), names, values.tolist()))
        try:
            with self._transaction(f"writing the result of run {rid}") as conn:
                conn.execute("DELETE FROM metrics WHERE run_id = ?", (rid,))
                # a retrain invalidates whatever probes computed on the old checkpoint
                conn.execute("DELETE FROM probe_metrics WHERE run_id = ?", (rid,))
                conn.execute("DELETE FROM probe_runs WHERE run_id = ?", (rid,))
                conn.executemany("INSERT INTO metrics (run_id, step, metric, value) VALUES (?, ?, ?, ?)", rows)
                conn.execute(_UPSERT_RUN, (rid, cfg_json, status, summary_json, wall_time, device, sha, _now()))
        except sqlite3.IntegrityError as exc:
            frame = pd.DataFrame({"step": steps, "metric": names})
            dups = frame[frame.duplicated(keep=False)].drop_duplicates().head(3)
            example = ", ".join(f"(step={s}, metric={m!r})" for s, m in zip(dups.step, dups.metric))
            raise ValueError(f"run {rid}: duplicate metric rows {example or ''} ({exc}); nothing was written") from exc

        if blob is None:
            # The new attempt has no checkpoint; an old file would no longer match any record.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def checkpoint_path(self, run_id: str) -> Path:
        """Where the checkpoint of ``run_id`` lives (whether or not it exists)."""
        return self.checkpoint_dir / f"{run_id}.pt"

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
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        if run_ids is None:
            rows = self._query("SELECT run_id, checkpoint_sha256 FROM runs ORDER BY run_id")
            return dict(rows)
        wanted = sorted({str(r) for r in run_ids})
        rows = self._query(
            "SELECT run_id, checkpoint_sha256 FROM runs WHERE run_id IN (SELECT value FROM json_each(?))"
            " ORDER BY run_id",
            (json.dumps(wanted),),
        )
        self._require_known(wanted, {r[0] for r in rows})
        return dict(rows)

    def load_checkpoints(self, run_id: str) -> dict:
        """Load a run's checkpoint, verified against its recorded sha256.

        Returns
        -------
        dict
            ``{"steps": LongTensor (n,), "params": {name: Tensor (n, ...)}}``.

        Raises
        ------
        CorruptCheckpointError
            The file is missing, truncated, unreadable, malformed, or its
            sha256 differs from the recorded one. The message names the file.
            Partial data is never returned.
        StoreError
            Unknown run, or a run stored without a checkpoint.
        """
        rows = self._query("SELECT checkpoint_sha256 FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in run store {self.root}")
        expected = rows[0][0]
        if expected is None:
            raise StoreError(f"run {run_id} in run store {self.root} has no recorded checkpoint")
        return read_verified(self.checkpoint_path(run_id), run_id, expected)

    def _require_known(self, wanted, found) -> None:
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise StoreError(f"run store {self.root} has no run(s) {', '.join(missing[:5])}")

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
        self._require_writer("write_probe")
        if not isinstance(probe, str) or not probe:
            raise ValueError(f"probe name must be a non-empty str, got {probe!r}")
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)):
            raise ValueError(f"probe {probe!r}: version must be an int, got {version!r}")
        version = int(version)
        steps, names, values = metric_columns(rows, run_id)
        data = list(zip([run_id] * len(names), [probe] * len(names), steps.tolist(), names, values.tolist()))
        wanted = sorted(set(names))
        try:
            with self._transaction(f"writing probe {probe!r} of run {run_id}") as conn:
                found = conn.execute("SELECT checkpoint_sha256 FROM runs WHERE run_id = ?", (run_id,)).fetchall()
                if not found:
                    raise StoreError(f"no run {run_id!r} in run store {self.root}")
                sha = found[0][0]
                if sha is None:
                    raise StoreError(f"run {run_id} in run store {self.root} has no recorded checkpoint; "
                                     f"probe {probe!r} has nothing to be computed from")
                if checkpoint_sha256 is not None and checkpoint_sha256 != sha:
                    raise StoreError(f"run {run_id} in run store {self.root}: its checkpoint changed (sha256 "
                                     f"{sha}) since probe {probe!r} read it ({checkpoint_sha256}); nothing written")
                if wanted:
                    self._refuse_clashes(conn, run_id, probe, steps, names, wanted)
                conn.execute("DELETE FROM probe_metrics WHERE run_id = ? AND probe = ?", (run_id, probe))
                conn.executemany(
                    "INSERT INTO probe_metrics (run_id, probe, step, metric, value) VALUES (?, ?, ?, ?, ?)", data)
                conn.execute(_UPSERT_PROBE_RUN, (run_id, probe, version, sha, _now()))
        except sqlite3.IntegrityError as exc:
            frame = pd.DataFrame({"step": steps, "metric": names})
            dups = frame[frame.duplicated(keep=False)].drop_duplicates().head(3)
            example = ", ".join(f"(step={s}, metric={m!r})" for s, m in zip(dups.step, dups.metric))
            raise ValueError(f"run {run_id}, probe {probe!r}: duplicate rows {example} ({exc}); "
                             "nothing was written") from exc

    def _refuse_clashes(self, conn, run_id: str, probe: str, steps, names, wanted) -> None:
        """ValueError if a (step, metric) of the new probe rows is already logged or another probe's."""
        new = set(zip(steps.tolist(), names))
        names_json = json.dumps(wanted)
        logged = conn.execute(
            "SELECT step, metric FROM metrics WHERE run_id = ? AND metric IN (SELECT value FROM json_each(?))",
            (run_id, names_json)).fetchall()
        for step, metric in logged:
            if (step, metric) in new:
                raise ValueError(f"run {run_id}: probe {probe!r} writes metric {metric!r} at step {step}, which "
                                 "the trainer logged for this run; a probe must not shadow a logged metric "
                                 "(rename the probe's metric); nothing was written")
        others = conn.execute(
            "SELECT probe, step, metric FROM probe_metrics WHERE run_id = ? AND probe != ?"
            " AND metric IN (SELECT value FROM json_each(?))", (run_id, probe, names_json)).fetchall()
        for other, step, metric in others:
            if (step, metric) in new:
                raise ValueError(f"run {run_id}: probe {probe!r} writes metric {metric!r} at step {step}, which "
                                 f"probe {other!r} already wrote; two probes must not write the same metric; "
                                 "nothing was written")

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
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        with self._snapshot("reading probe state") as conn:
            if not self._has_probe_tables(conn):
                return {}
            if run_ids is None:
                rows = conn.execute("SELECT run_id, probe, version, checkpoint_sha256 FROM probe_runs").fetchall()
            else:
                rows = conn.execute(
                    "SELECT run_id, probe, version, checkpoint_sha256 FROM probe_runs"
                    " WHERE run_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(sorted({str(r) for r in run_ids})),)).fetchall()
        return {(r[0], r[1]): (int(r[2]), r[3]) for r in sorted(rows)}

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
        rows = self._query(
            "SELECT run_id, status, wall_time, device, config_json, summary_json FROM runs ORDER BY run_id",
            doing="reading runs",
        )
        base = pd.DataFrame(
            {
                "run_id": pd.Series([r[0] for r in rows], dtype="str"),
                "status": pd.Series([r[1] for r in rows], dtype="str"),
                "wall_time": pd.Series([r[2] for r in rows], dtype="float64"),
                "device": pd.Series([r[3] for r in rows], dtype="str"),
            }
        )
        config = config_frame([r[4] for r in rows])
        summaries = [json.loads(r[5]) if r[5] else {} for r in rows]
        keys = sorted({k for s in summaries for k in s})
        summary = pd.DataFrame(
            {f"summary_{k}": [s.get(k, np.nan) for s in summaries] for k in keys}, index=base.index
        )
        # Object columns of plain numbers/NaN become float64 etc.
        summary = summary.infer_objects()
        return pd.concat([base, config, summary], axis=1)

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
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        if isinstance(metrics, str):
            metrics = [metrics]
        probe_names, probe_versions = _probe_selection(probes)
        # Sets are passed as one JSON parameter (json_each): no limit on host parameters.
        metric_filter, metric_params = "", []
        if metrics is not None:
            metric_filter = " AND m.metric IN (SELECT value FROM json_each(?))"
            metric_params = [json.dumps(sorted({str(m) for m in metrics}))]
        probe_filter, probe_params = "", []
        if probe_names is not None:
            probe_filter = " AND m.probe IN (SELECT value FROM json_each(?))"
            probe_params = [json.dumps(sorted(probe_names))]
        probe_sql = ("SELECT m.run_id, m.step, m.metric, m.value, m.probe, pr.version FROM probe_metrics m"
                     " JOIN probe_runs pr ON pr.run_id = m.run_id AND pr.probe = m.probe"
                     " JOIN runs r ON r.run_id = m.run_id AND r.checkpoint_sha256 = pr.checkpoint_sha256")
        probe_rows: list = []
        with self._snapshot("reading metrics") as conn:
            with_probes = probe_names != set() and self._has_probe_tables(conn)
            if run_ids is None:
                marks = ",".join("?" * len(FINISHED_STATUSES))
                runs = conn.execute(
                    f"SELECT run_id, status, config_json FROM runs WHERE status IN ({marks}) ORDER BY run_id",
                    FINISHED_STATUSES,
                ).fetchall()
                data = conn.execute(
                    "SELECT m.run_id, m.step, m.metric, m.value FROM metrics m JOIN runs r ON r.run_id = m.run_id"
                    f" WHERE r.status IN ({marks}){metric_filter} ORDER BY m.run_id, m.metric, m.step",
                    [*FINISHED_STATUSES, *metric_params],
                ).fetchall()
                if with_probes:
                    probe_rows = conn.execute(
                        f"{probe_sql} WHERE r.status IN ({marks}){metric_filter}{probe_filter}",
                        [*FINISHED_STATUSES, *metric_params, *probe_params],
                    ).fetchall()
            else:
                wanted = sorted({str(r) for r in run_ids})
                ids_json = json.dumps(wanted)
                runs = conn.execute(
                    "SELECT run_id, status, config_json FROM runs"
                    " WHERE run_id IN (SELECT value FROM json_each(?)) ORDER BY run_id",
                    (ids_json,),
                ).fetchall()
                self._require_known(wanted, {r[0] for r in runs})
                data = conn.execute(
                    "SELECT m.run_id, m.step, m.metric, m.value FROM metrics m"
                    f" WHERE m.run_id IN (SELECT value FROM json_each(?)){metric_filter}"
                    " ORDER BY m.run_id, m.metric, m.step",
                    [ids_json, *metric_params],
                ).fetchall()
                if with_probes:
                    probe_rows = conn.execute(
                        f"{probe_sql} WHERE m.run_id IN (SELECT value FROM json_each(?)){metric_filter}{probe_filter}",
                        [ids_json, *metric_params, *probe_params],
                    ).fetchall()
        if probe_versions is not None:
            probe_rows = [d for d in probe_rows if probe_versions.get(d[4]) == d[5]]
        if probe_rows:
            _refuse_read_clashes(data, probe_rows)
            data = sorted([d[:4] for d in data] + [d[:4] for d in probe_rows], key=lambda d: (d[0], d[2], d[1]))
        long = pd.DataFrame(
            {
                "run_id": pd.Series([d[0] for d in data], dtype="str"),
                "step": pd.Series([d[1] for d in data], dtype="int64"),
                "metric": pd.Series([d[2] for d in data], dtype="str"),
                # NULL (a stored NaN) -> NaN
                "value": pd.Series([np.nan if d[3] is None else d[3] for d in data], dtype="float64"),
            }
        )
        # Configs are parsed once per run and joined in pandas, not repeated per row in SQL.
        per_run = pd.concat(
            [
                pd.DataFrame(
                    {
                        "run_id": pd.Series([r[0] for r in runs], dtype="str"),
                        "status": pd.Series([r[1] for r in runs], dtype="str"),
                    }
                ),
                config_frame([r[2] for r in runs]),
            ],
            axis=1,
        )
        out = long.merge(per_run, on="run_id", how="left", sort=False, validate="many_to_one")
        columns = list(per_run.columns) + ["step", "metric", "value"]
        return out[columns].reset_index(drop=True)


# ---------------------------------------------------------------------- helpers


def _check_config(config) -> None:
    if not isinstance(config, RunConfig):
        raise TypeError(f"expected a RunConfig, got {type(config).__name__}")


def _probe_selection(probes) -> tuple[Optional[set], Optional[dict]]:
    """(names or None for all, {name: version} or None) of a ``probes=`` argument of metrics_table."""
    if probes is True:
        return None, None
    if probes is False or probes is None:
        return set(), None
    if isinstance(probes, str):
        return {probes}, None
    if isinstance(probes, Mapping):
        versions = {}
        for name, version in probes.items():
            if not isinstance(name, str) or isinstance(version, bool) or not isinstance(version, (int, np.integer)):
                raise TypeError(f"probes= mapping must be probe name -> int version, got {name!r}: {version!r}")
            versions[name] = int(version)
        return set(versions), versions
    names = set()
    for name in probes:
        if not isinstance(name, str):
            raise TypeError(f"probes= must be a bool, probe names or a name -> version mapping; got {name!r}")
        names.add(name)
    return names, None


def _refuse_read_clashes(logged: list, probe_rows: list) -> None:
    """StoreError naming both sources if a (run, step, metric) comes from two places."""
    seen: dict[tuple, str] = {}
    for d in logged:
        seen[(d[0], d[1], d[2])] = "the trainer's logged metrics"
    for d in probe_rows:
        key = (d[0], d[1], d[2])
        if key in seen:
            raise StoreError(f"run {d[0]}, step {d[1]}: metric {d[2]!r} is in both {seen[key]} and the rows of "
                             f"probe {d[4]!r}; the tidy table must have one row per (run, step, metric)")
        seen[key] = f"the rows of probe {d[4]!r}"
