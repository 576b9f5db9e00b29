"""The SQLite index of a run store: ``<root>/index.sqlite``.

:class:`RunIndex` holds the one connection and every query: the ``runs``
table (one row per run: canonical config, status, summary, checkpoint
sha256), the logged metric rows, and the probe rows (schema:
:mod:`grokking_theories.store.schema`). It knows nothing of checkpoint files
or of the writer lock; :class:`~grokking_theories.store.RunStore` puts the
three together and validates what callers hand it, so the index takes
clean columns.

Transactions are explicit (``isolation_level=None``; ``BEGIN IMMEDIATE`` ...
``COMMIT``): each write method is one transaction, so a failure anywhere
inside leaves the index as it was. Reads that run several SELECTs do so in
one read transaction, so they see one committed state even while a writer
commits. SQLite errors become :class:`~grokking_theories.errors.StoreError`
naming the index file, and saying what to do when the cause is one a user can
act on (a full disk, a damaged file); integrity errors (a duplicate row)
become ValueError naming the rows.

Every result written counts one attempt of its run (``runs.attempts``, schema
version 3), in the same transaction: a killed study that is rerun must never
train a finished run again, and the count is how the fault suite
(:mod:`grokking_theories.testing.faults`) proves it did not.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

import numpy as np
import pandas as pd

from ..config import RunConfig, from_dict
from ..errors import StoreError
from .rows import config_frame
from .schema import ATTEMPTS_VERSION, PROBE_TABLES_VERSION, check_readable, create_or_migrate

__all__ = ["FINISHED_STATUSES", "INDEX_NAME", "RESULT_STATUSES", "ProbeSelection", "RunIndex"]

#: Name of the index file inside a store's root.
INDEX_NAME = "index.sqlite"

#: Statuses of runs that are never trained again (a diverged run is a result, not an error).
FINISHED_STATUSES = ("complete", "diverged")
#: Statuses a result can be written with.
RESULT_STATUSES = ("complete", "diverged", "failed")

#: ``probes=`` of :meth:`RunStore.metrics_table`: all, none, these names, or these names at these versions.
ProbeSelection = Union[bool, str, Iterable[str], Mapping[str, int]]

# attempts: a run's first result is attempt 1, each later one (a retry of a failed run, a retrain) adds one.
_UPSERT_RUN = """
INSERT INTO runs (run_id, config_json, status, summary_json, wall_time, device, checkpoint_sha256, updated,
                  attempts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)
ON CONFLICT (run_id) DO UPDATE SET
    status = excluded.status,
    summary_json = excluded.summary_json,
    wall_time = excluded.wall_time,
    device = excluded.device,
    checkpoint_sha256 = excluded.checkpoint_sha256,
    updated = excluded.updated,
    attempts = runs.attempts + 1
"""

_UPSERT_PROBE_RUN = """
INSERT INTO probe_runs (run_id, probe, version, checkpoint_sha256, updated) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (run_id, probe) DO UPDATE SET
    version = excluded.version,
    checkpoint_sha256 = excluded.checkpoint_sha256,
    updated = excluded.updated
"""


class RunIndex:
    """The open index of the run store at ``root`` (``<root>/index.sqlite``).

    A writer (``readonly=False``) creates the index or migrates it to the
    current schema version; a reader opens an existing one as it is. Write
    methods assume a writer: the store checks that first
    (:meth:`require_writer`), so its read-only message wins over any other
    complaint about the arguments. ``clock`` stamps the ``updated`` column;
    it is called inside the write transactions.
    """

    def __init__(self, root: Path, *, readonly: bool, clock: Callable[[], float] = time.time):
        self.root = root  # only for messages: "run store <root>" is what users know
        self.path = root / INDEX_NAME
        self.readonly = readonly
        self._clock = clock
        #: Schema version of the index as found on opening (a writer has migrated it to SCHEMA_VERSION).
        self.opened_version: Optional[int] = None
        self._conn: Optional[sqlite3.Connection] = None
        if readonly and not self.path.is_file():
            raise StoreError(f"no run store at {self.root} (missing {self.path})")
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                uri = self.path.as_uri() + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
            else:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store index {self.path}: {exc}") from exc
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so the one-transaction
        # guarantees of write_result do not depend on the sqlite3 module's implicit rules.
        try:
            with self._db("opening the index"):
                # Any query makes SQLite read the header: a non-database file fails here.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if self.readonly:
                    check_readable(version, self.path, readonly=True)
                else:
                    # WAL lets read-only stores (reports, a second terminal) read while we write.
                    conn.execute("PRAGMA journal_mode=WAL")
                    # FULL: a committed run survives power loss; one fsync per run is negligible.
                    conn.execute("PRAGMA synchronous=FULL")
                    version = create_or_migrate(conn, self.path)
                self.opened_version = version
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Close the connection (idempotent); every later call raises StoreError."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

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
        """Turn SQLite failures into StoreError naming the index file (and what to do, where we know)."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise  # a constraint on caller data: the caller words the message
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"run store index {self.path} failed while {doing}: {exc}{self._advice(exc)}") from exc

    def _advice(self, exc: sqlite3.DatabaseError) -> str:
        """What the user can do about ``exc``, as a sentence to append ('' when we know nothing useful)."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc)
        if name == "SQLITE_FULL" or "database or disk is full" in text:
            # SQLite rolls the statement's transaction back (so do we): the index holds the last commit.
            return ("; the disk is full (or the index reached its size limit), so nothing of this write was kept "
                    "and the index holds its last commit. Free space, then rerun the study: it resumes where "
                    "it stopped")
        if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in text or "malformed" in text:
            return (f"; the index file is damaged. Move the store aside (mv {self.root} {self.root}.damaged) "
                    "and rerun the study to train its runs again into a fresh store, or restore "
                    f"{self.path.name} from a backup")
        return ""

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run store {self.root} is closed")
        return self._conn

    def require_writer(self, what: str) -> None:
        """StoreError unless this index is open for writing (``what``: the call, for the message)."""
        if self.readonly:
            raise StoreError(f"run store {self.root} is open read-only; {what} needs a writer")
        self._connection()

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

    def _require_known(self, wanted, found) -> None:
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise StoreError(f"run store {self.root} has no run(s) {', '.join(missing[:5])}")

    # ------------------------------------------------------------------ runs

    def finished_ids(self) -> set[str]:
        """Ids of runs whose status is in FINISHED_STATUSES."""
        marks = ",".join("?" * len(FINISHED_STATUSES))
        rows = self._query(f"SELECT run_id FROM runs WHERE status IN ({marks})", FINISHED_STATUSES)
        return {r[0] for r in rows}

    def status(self, run_id: str) -> Optional[str]:
        """Status of one run, or None if unknown."""
        rows = self._query("SELECT status FROM runs WHERE run_id = ?", (run_id,))
        return rows[0][0] if rows else None

    def register(self, runs: list[tuple[str, str]]) -> None:
        """Insert ``(run_id, canonical config json)`` pairs as ``'pending'``; present runs are left alone."""
        if not runs:
            return
        now = self._clock()
        with self._transaction("registering runs") as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO runs (run_id, config_json, status, updated) VALUES (?, ?, 'pending', ?)",
                [(rid, cfg, now) for rid, cfg in runs],
            )

    def config(self, run_id: str) -> RunConfig:
        """The RunConfig of a stored run (StoreError if unknown)."""
        rows = self._query("SELECT config_json FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in run store {self.root}")
        return from_dict(json.loads(rows[0][0]))

    def refuse_other_config(self, run_id: str, config_json: str) -> None:
        """StoreError if ``run_id`` is stored with another config than ``config_json`` (a hash collision)."""
        stored = self._query("SELECT config_json FROM runs WHERE run_id = ?", (run_id,))
        if stored and stored[0][0] != config_json:
            raise StoreError(
                f"run id {run_id} in run store {self.root} belongs to a different config; "
                f"stored {stored[0][0]}, given {config_json}"
            )

    # ------------------------------------------------------------------ results

    def write_result(self, run_id: str, config_json: str, *, status: str, steps: np.ndarray, names: list[str],
                     values: np.ndarray, summary_json: Optional[str], wall_time: Optional[float],
                     device: Optional[str], checkpoint_sha256: Optional[str]) -> None:
        """Replace the run's metric rows and outcome, drop its probe rows and count one more attempt, in one
        transaction.

        ``steps, names, values`` are the columns of :func:`~grokking_theories.store.rows.metric_columns`.
        ValueError (nothing written) if a ``(step, metric)`` repeats.
        """
        rows = list(zip([run_id] * len(names), steps.tolist(), names, values.tolist()))
        try:
            with self._transaction(f"writing the result of run {run_id}") as conn:
                conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
                # a retrain invalidates whatever probes computed on the old checkpoint
                conn.execute("DELETE FROM probe_metrics WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM probe_runs WHERE run_id = ?", (run_id,))
                conn.executemany("INSERT INTO metrics (run_id, step, metric, value) VALUES (?, ?, ?, ?)", rows)
                conn.execute(_UPSERT_RUN, (run_id, config_json, status, summary_json, wall_time, device,
                                           checkpoint_sha256, self._clock()))
        except sqlite3.IntegrityError as exc:
            example = _duplicates(steps, names)
            raise ValueError(f"run {run_id}: duplicate metric rows {example or ''} ({exc}); "
                             "nothing was written") from exc

    def attempts(self, run_ids=None) -> dict[str, int]:
        """How many results were written for each run: ``{run_id: count}`` (default: every run).

        A registered run never written has 0; so has every run of an index written before schema version 3
        (nothing counted then; a read-only store of such an index reads 0 everywhere). StoreError names
        requested ids the store does not have.
        """
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        with self._snapshot("reading attempt counts") as conn:
            counted = conn.execute("PRAGMA user_version").fetchone()[0] >= ATTEMPTS_VERSION
            column = "attempts" if counted else "0"
            if run_ids is None:
                rows = conn.execute(f"SELECT run_id, {column} FROM runs ORDER BY run_id").fetchall()
            else:
                wanted = sorted({str(r) for r in run_ids})
                rows = conn.execute(f"SELECT run_id, {column} FROM runs WHERE run_id IN "
                                    "(SELECT value FROM json_each(?)) ORDER BY run_id", (json.dumps(wanted),)
                                    ).fetchall()
                self._require_known(wanted, {r[0] for r in rows})
        return {r[0]: int(r[1]) for r in rows}

    def checkpoint_sha(self, run_id: str) -> Optional[str]:
        """Recorded checkpoint sha256 of one run (None: it kept no checkpoint; StoreError if unknown)."""
        rows = self._query("SELECT checkpoint_sha256 FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in run store {self.root}")
        return rows[0][0]

    def checkpoint_shas(self, run_ids=None) -> dict[str, Optional[str]]:
        """Recorded checkpoint sha256 of runs (default: every run; StoreError names unknown ids)."""
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

    # ------------------------------------------------------------------ probes

    def write_probe(self, run_id: str, probe: str, version: int, *, steps: np.ndarray, names: list[str],
                    values: np.ndarray, checkpoint_sha256: Optional[str]) -> None:
        """Replace one probe's rows of one run and record (version, the run's checkpoint sha256), in one transaction.

        StoreError: unknown run, no recorded checkpoint, or ``checkpoint_sha256`` given and no longer the
        recorded one. ValueError: a repeated ``(step, metric)``, or one already logged or another probe's.
        """
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
                    _refuse_clashes(conn, run_id, probe, steps, names, wanted)
                conn.execute("DELETE FROM probe_metrics WHERE run_id = ? AND probe = ?", (run_id, probe))
                conn.executemany(
                    "INSERT INTO probe_metrics (run_id, probe, step, metric, value) VALUES (?, ?, ?, ?, ?)", data)
                conn.execute(_UPSERT_PROBE_RUN, (run_id, probe, version, sha, self._clock()))
        except sqlite3.IntegrityError as exc:
            example = _duplicates(steps, names)
            raise ValueError(f"run {run_id}, probe {probe!r}: duplicate rows {example} ({exc}); "
                             "nothing was written") from exc

    def probe_state(self, run_ids=None) -> dict[tuple[str, str], tuple[int, str]]:
        """``(run_id, probe) -> (version, checkpoint sha256)``; empty for a version-1 index."""
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
        """One row per run, sorted by run_id (columns: see :meth:`RunStore.runs_table`)."""
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
        """The tidy table of logged plus probe rows (arguments and columns: see :meth:`RunStore.metrics_table`)."""
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
            data = data + [d[:4] for d in probe_rows]
        rows = pd.DataFrame.from_records(data, columns=["run_id", "step", "metric", "value"], nrows=len(data))
        if probe_rows:  # (run, metric, step) is unique now: a stable sort gives the logged rows' order to all
            rows = rows.sort_values(["run_id", "metric", "step"], kind="stable", ignore_index=True)
        long = pd.DataFrame(
            {
                "run_id": pd.Series(rows["run_id"], dtype="str"),
                "step": pd.Series(rows["step"], dtype="int64"),
                "metric": pd.Series(rows["metric"], dtype="str"),
                "value": pd.Series(rows["value"], dtype="float64"),  # NULL (a stored NaN) -> NaN
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


def _duplicates(steps, names) -> str:
    """Up to three repeated ``(step, metric)`` pairs, for the message of a UNIQUE violation."""
    frame = pd.DataFrame({"step": steps, "metric": names})
    dups = frame[frame.duplicated(keep=False)].drop_duplicates().head(3)
    return ", ".join(f"(step={s}, metric={m!r})" for s, m in zip(dups.step, dups.metric))


def _refuse_clashes(conn, run_id: str, probe: str, steps, names, wanted) -> None:
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
    """StoreError naming both sources if a (run, step, metric) comes from two places.

    Within one source a (run, step, metric) is unique (the tables' keys), so only metric names that two
    sources share can clash: their rows alone are compared (none, in a store whose probes name new metrics).
    """
    sources: dict[Optional[str], set] = {None: {d[2] for d in logged}}  # None: the logged rows (no probe name)
    for d in probe_rows:
        sources.setdefault(d[4], set()).add(d[2])
    names = list(sources.values())
    shared = {m for i, a in enumerate(names) for b in names[i + 1:] for m in a & b}
    if not shared:
        return
    logged = [d for d in logged if d[2] in shared]
    probe_rows = [d for d in probe_rows if d[2] in shared]
    seen: dict[tuple, str] = {}
    for d in logged:
        seen[(d[0], d[1], d[2])] = "the trainer's logged metrics"
    for d in probe_rows:
        key = (d[0], d[1], d[2])
        if key in seen:
            raise StoreError(f"run {d[0]}, step {d[1]}: metric {d[2]!r} is in both {seen[key]} and the rows of "
                             f"probe {d[4]!r}; the tidy table must have one row per (run, step, metric)")
        seen[key] = f"the rows of probe {d[4]!r}"
