"""Schema of the run store index and its migrations.

Versions (``PRAGMA user_version``):

1. ``runs`` (one row per run: config, status, summary, checkpoint sha256) and
   ``metrics`` (the tidy rows the trainer logged).
2. adds ``probe_runs`` (which version of which probe was computed on which
   checkpoint of a run) and ``probe_metrics`` (the rows probes computed from
   stored checkpoints, in the same tidy form as ``metrics``).
3. adds ``runs.attempts``: how many results of the run were written, counted in
   the same transaction that writes one (0 for a run registered but never
   written, and for results written before version 3, which were not
   counted). A study that is killed and rerun never retrains a finished run,
   so a finished run's count stays where it was; the fault suite
   (:mod:`grokking_theories.testing.faults`) checks exactly that.

A writer opening an index of an older version migrates it in one
transaction (a failure leaves it exactly as it was); a read-only store reads
every version in :data:`READABLE_VERSIONS` (a version-1 index simply has no
probe rows, an index older than version 3 no attempt counts). A newer version
than this code knows is refused either way, with a message that says so.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import StoreError

SCHEMA_VERSION = 3
#: Versions a read-only store can read without migrating.
READABLE_VERSIONS = (1, 2, 3)
#: First version with the probe tables.
PROBE_TABLES_VERSION = 2
#: First version with ``runs.attempts``.
ATTEMPTS_VERSION = 3

#: Version 1, exactly as it shipped (kept verbatim: every later version is built from it plus the migrations;
#: the migration tests keep their own copy, so a change here cannot slip past them).
SCHEMA_V1 = (
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

#: Statements that take an index from version ``v`` to ``v + 1``.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        # One row per (run, probe): the probe version and the checkpoint (sha256) its rows were computed
        # from. A run whose checkpoint sha256 or a probe whose version differs is recomputed.
        """CREATE TABLE probe_runs (
            run_id TEXT NOT NULL,
            probe TEXT NOT NULL,
            version INTEGER NOT NULL,
            checkpoint_sha256 TEXT NOT NULL,
            updated REAL,
            PRIMARY KEY (run_id, probe)
        )""",
        "CREATE TABLE probe_metrics (run_id TEXT NOT NULL, probe TEXT NOT NULL, step INTEGER NOT NULL, "
        "metric TEXT NOT NULL, value REAL)",
        "CREATE UNIQUE INDEX probe_metrics_run_probe_metric_step ON probe_metrics (run_id, probe, metric, step)",
        # the (run, metric, step) reads of metrics_table, and the clash checks of write_probe
        "CREATE INDEX probe_metrics_run_metric_step ON probe_metrics (run_id, metric, step)",
    ),
    2: (
        # Results written so far per run (RunIndex.write_result adds one in its own transaction). Existing
        # rows get 0: their results were written before anything counted them.
        "ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    ),
}


def schema_statements() -> tuple[str, ...]:
    """Every statement that builds a fresh index of :data:`SCHEMA_VERSION`."""
    out = list(SCHEMA_V1)
    for version in range(1, SCHEMA_VERSION):
        out.extend(MIGRATIONS[version])
    return tuple(out)


def check_readable(version: int, index_path: Path, *, readonly: bool) -> None:
    """Raise StoreError unless an index of ``version`` can be used (read-only: read as it is).

    Each refusal names the file and says what to do: the user meets these messages when a store was
    written by another version of the package or by another program, and a bare "version 4" helps no one.
    """
    if version == SCHEMA_VERSION or (readonly and version in READABLE_VERSIONS):
        return
    if version == 0:
        raise StoreError(
            f"{index_path} is not an initialised run store index (schema version 0): a study killed before "
            f"its first commit leaves such a file (rerun the study, which creates the index), or it is another "
            f"program's SQLite file (use another --store)"
        )
    if version > SCHEMA_VERSION:
        from .. import __version__

        raise StoreError(
            f"run store index {index_path} has schema version {version}, newer than version {SCHEMA_VERSION}, "
            f"the newest this grokking_theories ({__version__}) knows: a newer grokking_theories wrote it. "
            f"Use a newer grokking_theories (pip install -U grokking_theories) to read or extend this store; "
            f"this one leaves it untouched"
        )
    raise StoreError(
        f"run store index {index_path} has schema version {version}; "
        f"this code reads versions {', '.join(map(str, READABLE_VERSIONS))}"
    )


def create_or_migrate(conn: sqlite3.Connection, index_path: Path) -> int:
    """Create a fresh index or migrate an older one to :data:`SCHEMA_VERSION`, in one transaction.

    Returns
    -------
    int
        The version found (0: the index was created).

    Raises
    ------
    StoreError
        The file is an SQLite database but not a run store, or its version is unknown or newer.
        Nothing was changed.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables:
                raise StoreError(f"{index_path} is an SQLite file but not a run store index (it has tables of "
                                 f"another program); use another --store, or move the file aside")
            for statement in schema_statements():
                conn.execute(statement)
        elif version < SCHEMA_VERSION:
            if any(v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
                check_readable(version, index_path, readonly=False)
            for v in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[v]:
                    conn.execute(statement)
        else:
            check_readable(version, index_path, readonly=False)
        # PRAGMA user_version is part of the transaction: a failed migration leaves the old version.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return version
