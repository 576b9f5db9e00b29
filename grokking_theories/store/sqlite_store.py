"""SQLite-backed run store.

Layout of a store rooted at ``root``::

    root/index.sqlite            runs + metrics (WAL mode)
    root/checkpoints/<id>.pt     parameter checkpoints, one file per run
    root/store.lock              flock'ed by the one writing driver; holds its pid

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
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import os
import sqlite3
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import pandas as pd

from ..config import SECTIONS, RunConfig, canonical_json, from_dict
from ..config import run_id as config_run_id
from ..errors import CorruptCheckpointError, StoreError, StoreLockedError

SCHEMA_VERSION = 1
FINISHED_STATUSES = ("complete", "diverged")
RESULT_STATUSES = ("complete", "diverged", "failed")
METRIC_COLUMNS = ("step", "metric", "value")

_SCHEMA = (
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        config_json TEXT NOT NULL,
        status TEXT NOT NULL,
        summary_json TEXT,
        wall_time REAL,
        device TEXT,
        checkpoint_sha256 TEXT,
        updated REAL
    )""",
    # value may be NULL: SQLite stores NaN (a diverged loss) as NULL; it reads back as NaN.
    "CREATE TABLE metrics (run_id TEXT NOT NULL, step INTEGER NOT NULL, metric TEXT NOT NULL, value REAL)",
    # UNIQUE both serves the (run, metric, step) reads in sorted order and enforces the tidy
    # table's "one row per (run, step, metric)" inside the write transaction.
    "CREATE UNIQUE INDEX metrics_run_metric_step ON metrics (run_id, metric, step)",
    "CREATE INDEX runs_status ON runs (status)",
)

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

# pandas dtype of each config column, from the dataclass annotations, so the
# tidy tables have the same dtypes whatever mix of values a store holds (an
# all-None ``fixed_norm`` column is float64 NaN, not object).
_ANNOTATION_DTYPES = {
    "int": "int64",
    "float": "float64",
    "str": "str",
    "bool": "bool",
    "Optional[float]": "float64",
    "Optional[int]": "Int64",
    "Optional[str]": "str",
}


def _config_dtypes() -> dict[str, str]:
    out: dict[str, str] = {}
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            dtype = _ANNOTATION_DTYPES.get(str(f.type))
            if dtype is not None:
                out[f.name] = dtype
    out["seed"] = "int64"
    return out


def _now() -> float:
    """Timestamp of the ``updated`` column (a function so tests can make it fail mid-transaction)."""
    return time.time()


class RunStore:
    """Persistent store of runs: configs, statuses, tidy metrics and checkpoints.

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
        corrupt, unreadable or of another schema version.

    Notes
    -----
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
        self._acquire_lock()
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

    def _acquire_lock(self) -> None:
        # O_RDWR without O_TRUNC: a refused opener must not wipe the holder's pid.
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                with contextlib.suppress(OSError):
                    holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreError(f"cannot lock run store {self.root}: {exc}") from exc
            who = f"pid {holder}" if holder else "pid unknown"
            raise StoreLockedError(
                f"run store {self.root} is in use by another driver ({who}); "
                f"wait for it to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale pid for the next reader of the lock file
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        # The lock file itself stays: unlinking it would let two drivers lock two different inodes.

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
                    self._check_version(version)
                else:
                    # WAL lets read-only stores (reports, a second terminal) read while we write.
                    conn.execute("PRAGMA journal_mode=WAL")
                    # FULL: a committed run survives power loss; one fsync per run is negligible.
                    conn.execute("PRAGMA synchronous=FULL")
                    self._init_schema(conn)
        except BaseException:
            self._conn = None
            conn.close()
            raise
        return conn

    def _check_version(self, version: int) -> None:
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            raise StoreError(f"{self.index_path} is not an initialised run store index")
        raise StoreError(
            f"run store index {self.index_path} has schema version {version}; "
            f"this code reads version {SCHEMA_VERSION}"
        )

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
                if tables:
                    raise StoreError(f"{self.index_path} is an SQLite file but not a run store index")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            else:
                self._check_version(version)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

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
        the run's old metric rows, inserts the new ones and sets status,
        summary, wall time, device and checkpoint sha256, so a crash never
        leaves a ``'complete'`` run without its rows.
        """
        self._require_writer("write_result")
        _check_config(config)
        if status not in RESULT_STATUSES:
            raise ValueError(f"status must be one of {RESULT_STATUSES}, got {status!r}")
        rid = config_run_id(config)
        cfg_json = canonical_json(config)
        # Validate and convert every input before touching disk: bad input must change nothing.
        steps, names, values = _metric_columns(metrics, rid)
        summary_json = None if summary is None else _dump_summary(summary, rid)
        wall_time = None if wall_time is None else float(wall_time)
        device = None if device is None else str(device)
        blob = None if checkpoint is None else _serialise_checkpoint(checkpoint, rid)

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
            _atomic_write(path, blob)

        rows = list(zip([rid] * len(names), steps.tolist(), names, values.tolist()))
        try:
            with self._transaction(f"writing the result of run {rid}") as conn:
                conn.execute("DELETE FROM metrics WHERE run_id = ?", (rid,))
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
        path = self.checkpoint_path(run_id)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise CorruptCheckpointError(f"checkpoint file {path} of run {run_id} is missing") from None
        except OSError as exc:
            raise CorruptCheckpointError(f"checkpoint file {path} of run {run_id} cannot be read: {exc}") from exc
        actual = hashlib.sha256(blob).hexdigest()
        if actual != expected:
            # Never parse bytes known to be wrong; just say what kind of wrong.
            if not zipfile.is_zipfile(io.BytesIO(blob)):
                what = "is truncated or not a torch file (no zip end record)"
            else:
                what = "was modified or replaced after it was recorded"
            raise CorruptCheckpointError(
                f"checkpoint file {path} of run {run_id} {what}: {len(blob)} bytes, "
                f"sha256 {actual} but the store recorded {expected}"
            )
        import torch  # lazily: index-only users (reports, status) need not import torch

        try:
            obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CorruptCheckpointError(
                f"checkpoint file {path} of run {run_id} is unreadable: {type(exc).__name__}: {exc}"
            ) from exc
        problem = _checkpoint_problem(obj)
        if problem:
            raise CorruptCheckpointError(f"checkpoint file {path} of run {run_id} is malformed: {problem}")
        return obj

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
        config = _config_frame([r[4] for r in rows])
        summaries = [json.loads(r[5]) if r[5] else {} for r in rows]
        keys = sorted({k for s in summaries for k in s})
        summary = pd.DataFrame(
            {f"summary_{k}": [s.get(k, np.nan) for s in summaries] for k in keys}, index=base.index
        )
        # Object columns of plain numbers/NaN become float64 etc.
        summary = summary.infer_objects()
        return pd.concat([base, config, summary], axis=1)

    def metrics_table(self, run_ids=None, metrics=None) -> pd.DataFrame:
        """The tidy long-form metrics table every analysis reads.

        Parameters
        ----------
        run_ids : iterable of str, optional
            Runs to include, whatever their status. Default: every finished
            (``'complete'`` or ``'diverged'``) run.
        metrics : iterable of str, optional
            Metric names to include. Default: all.

        Returns
        -------
        pandas.DataFrame
            Columns ``run_id, status, <flat config columns>, step (int64),
            metric (str), value (float64)``; one row per (run, step, metric),
            sorted by run_id, metric, step.

        Raises
        ------
        StoreError
            A requested run id is not in the store.
        """
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        if isinstance(metrics, str):
            metrics = [metrics]
        # Sets are passed as one JSON parameter (json_each): no limit on host parameters.
        metric_filter, metric_params = "", []
        if metrics is not None:
            metric_filter = " AND m.metric IN (SELECT value FROM json_each(?))"
            metric_params = [json.dumps(sorted({str(m) for m in metrics}))]
        with self._snapshot("reading metrics") as conn:
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
            else:
                wanted = sorted({str(r) for r in run_ids})
                ids_json = json.dumps(wanted)
                runs = conn.execute(
                    "SELECT run_id, status, config_json FROM runs"
                    " WHERE run_id IN (SELECT value FROM json_each(?)) ORDER BY run_id",
                    (ids_json,),
                ).fetchall()
                missing = sorted(set(wanted) - {r[0] for r in runs})
                if missing:
                    raise StoreError(f"run store {self.root} has no run(s) {', '.join(missing[:5])}")
                data = conn.execute(
                    "SELECT m.run_id, m.step, m.metric, m.value FROM metrics m"
                    f" WHERE m.run_id IN (SELECT value FROM json_each(?)){metric_filter}"
                    " ORDER BY m.run_id, m.metric, m.step",
                    [ids_json, *metric_params],
                ).fetchall()
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
                _config_frame([r[2] for r in runs]),
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


def _config_frame(config_jsons: list[str]) -> pd.DataFrame:
    """Flat config columns for a list of stored config JSON strings, with stable dtypes."""
    flats = [from_dict(json.loads(c)).flat() for c in config_jsons]
    names = list(RunConfig().flat())
    frame = pd.DataFrame({name: [f[name] for f in flats] for name in names})
    for name, dtype in _config_dtypes().items():
        if name in frame:
            frame[name] = frame[name].astype(dtype)
    return frame


def _metric_columns(metrics, rid: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Validate metric rows and return (steps int64, names, values float64)."""
    if isinstance(metrics, pd.DataFrame):
        missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
        if missing:
            raise ValueError(f"run {rid}: metrics frame lacks column(s) {missing}; needs {list(METRIC_COLUMNS)}")
        steps_raw = metrics["step"].to_numpy()
        names = metrics["metric"].tolist()
        values_raw = metrics["value"].to_numpy()
    else:
        rows = list(metrics)
        for row in rows:
            if len(row) != 3:
                raise ValueError(f"run {rid}: metric rows must be (step, metric, value), got {row!r}")
        steps_raw = np.asarray([r[0] for r in rows])
        names = [r[1] for r in rows]
        values_raw = [r[2] for r in rows]
    if len(names) == 0:
        return np.zeros(0, dtype=np.int64), [], np.zeros(0, dtype=np.float64)

    bad_names = [n for n in names if not isinstance(n, str)]
    if bad_names:
        raise ValueError(f"run {rid}: metric names must be str, got {bad_names[0]!r}")
    steps_raw = np.asarray(steps_raw)
    if steps_raw.dtype.kind in "iu":
        steps = steps_raw.astype(np.int64)
    else:
        try:
            as_float = steps_raw.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"run {rid}: metric steps must be integers ({exc})") from exc
        if steps_raw.dtype.kind == "b" or not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise ValueError(f"run {rid}: metric steps must be integers, got dtype {steps_raw.dtype}")
        steps = as_float.astype(np.int64)
    raw = np.asarray(values_raw)
    # Reject text outright: numpy would silently parse "0.5", hiding a column mix-up.
    if raw.dtype.kind in "US" or (raw.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in raw.ravel())):
        raise ValueError(f"run {rid}: metric values must be numeric, got text")
    try:
        values = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run {rid}: metric values must be numeric ({exc})") from exc
    if values.shape != (len(names),) or steps.shape != (len(names),):
        raise ValueError(f"run {rid}: metric steps, names and values must be 1-d and of equal length")
    return steps, names, values


def _json_default(obj: Any):
    # numpy and torch scalars are what summaries are usually made of.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "numel", lambda: 0)() == 1:
        return item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dump_summary(summary: dict, rid: str) -> str:
    if not isinstance(summary, dict):
        raise ValueError(f"run {rid}: summary must be a dict, got {type(summary).__name__}")
    try:
        return json.dumps(summary, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run {rid}: summary is not JSON serialisable: {exc}") from exc


def _checkpoint_problem(obj) -> Optional[str]:
    """Why ``obj`` is not a valid checkpoint dict, or None."""
    import torch

    if not isinstance(obj, dict) or set(obj) != {"steps", "params"}:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        return f"expected a dict with keys 'steps' and 'params', got {keys}"
    steps, params = obj["steps"], obj["params"]
    if not isinstance(steps, torch.Tensor) or steps.ndim != 1 or steps.dtype != torch.int64:
        return "'steps' must be a 1-d int64 tensor"
    if not isinstance(params, dict):
        return "'params' must be a dict of tensors"
    n = steps.shape[0]
    for name, tensor in params.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            return f"params entry {name!r} is not a named tensor"
        if not tensor.is_floating_point():
            return f"params[{name!r}] has dtype {tensor.dtype}, expected floating point"
        if tensor.ndim < 1 or tensor.shape[0] != n:
            return f"params[{name!r}] has shape {tuple(tensor.shape)}, expected leading dim {n} (one per step)"
    return None


def _serialise_checkpoint(checkpoint, rid: str) -> bytes:
    import torch

    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("steps"), torch.Tensor):
        raise ValueError(f"run {rid}: checkpoint must be {{'steps': LongTensor, 'params': {{name: tensor}}}}")
    steps = checkpoint["steps"]
    if steps.dtype.is_floating_point or steps.dtype.is_complex or steps.dtype == torch.bool:
        raise ValueError(f"run {rid}: checkpoint 'steps' must be an integer tensor, got {steps.dtype}")
    params = checkpoint.get("params")
    if not isinstance(params, dict):
        raise ValueError(f"run {rid}: checkpoint 'params' must be a dict of tensors")
    # detach/cpu/contiguous/clone: a slice of an ensemble tensor would otherwise drag the
    # whole shared storage (every member) into this run's file.
    clean = {
        "steps": steps.detach().to("cpu", torch.int64).contiguous().clone(),
        "params": {
            name: (t.detach().cpu().contiguous().clone() if isinstance(t, torch.Tensor) else t)
            for name, t in params.items()
        },
    }
    extra = set(checkpoint) - {"steps", "params"}
    if extra:
        raise ValueError(f"run {rid}: unexpected checkpoint keys {sorted(extra)}")
    problem = _checkpoint_problem(clean)
    if problem:
        raise ValueError(f"run {rid}: bad checkpoint: {problem}")
    buf = io.BytesIO()
    torch.save(clean, buf)
    return buf.getvalue()


def _atomic_write(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` so that readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # fsync the directory so the rename itself survives a crash.
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
