"""The probe stage: offline measures computed once per (run, probe version, checkpoint) and kept in the store.

No model is trained: the runs carry hand-made checkpoints and the probes are
stubs whose ``compute`` is a spy. Schema migration: a version-1 index built
by hand from the statements that shipped with version 1.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grokking_theories.config import ModelConfig, OptimConfig, RunConfig, TaskConfig, canonical_json, run_id
from grokking_theories.errors import ConfigError, CorruptCheckpointError, StoreError
from grokking_theories.probes.stage import (PROBES, Probe, ProbeCounts, get_probe, pending_probes, plant_probe,
                                            run_probes)
from grokking_theories.store import SCHEMA_VERSION, RunStore
from grokking_theories.store import schema

torch.set_num_threads(1)

CONFIG_COLUMNS = list(RunConfig().flat())

#: The index statements of schema version 1, verbatim as they shipped (independent of the package's copy).
V1_STATEMENTS = (
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
    "CREATE TABLE metrics (run_id TEXT NOT NULL, step INTEGER NOT NULL, metric TEXT NOT NULL, value REAL)",
    "CREATE UNIQUE INDEX metrics_run_metric_step ON metrics (run_id, metric, step)",
    "CREATE INDEX runs_status ON runs (status)",
)


def make_config(seed=0, **optim) -> RunConfig:
    return RunConfig(task=TaskConfig(p=7), model=ModelConfig(width=8), optim=OptimConfig(**optim), seed=seed)


def make_rows(scale=1.0, steps=(0, 5, 10)):
    return [(s, m, scale * (s + 1) * (2.0 if m == "test_acc" else 1.0))
            for s in steps for m in ("train_loss", "test_acc")]


def make_checkpoint(seed=0, n=3):
    gen = torch.Generator().manual_seed(seed)
    return {"steps": torch.tensor([0, 5, 10][:n], dtype=torch.long),
            "params": {"w": torch.randn(n, 4, 3, generator=gen), "b": torch.randn(n, 3, generator=gen)}}


class Spy:
    """A probe compute that records its calls: per checkpoint step, the sum of the parameters (``<prefix>_sum``)
    and, once at the last step, the number of logged rows it was handed (``<prefix>_logged``)."""

    def __init__(self, prefix="stub"):
        self.prefix = prefix
        self.calls: list[str] = []

    def __call__(self, config, checkpoint, logged):
        self.calls.append(run_id(config))
        steps = checkpoint["steps"].tolist()
        total = sum(t.flatten(1).sum(1) for t in checkpoint["params"].values()).tolist()  # batched over steps
        rows = [(s, f"{self.prefix}_sum", v) for s, v in zip(steps, total)]
        rows.append((steps[-1], f"{self.prefix}_logged", float(len(logged))))
        return pd.DataFrame(rows, columns=["step", "metric", "value"])


def stub_probe(name="stub", version=1, spy=None, **kw) -> Probe:
    spy = spy or Spy(name)
    return Probe(name=name, version=version, metrics=(f"{name}_sum", f"{name}_logged"), compute=spy, **kw)


@pytest.fixture
def store(tmp_path):
    """A writer with three finished runs, two with checkpoints and one without."""
    with RunStore(tmp_path / "store") as s:
        for seed in range(2):
            s.write_result(make_config(seed), make_rows(seed + 1.0), checkpoint=make_checkpoint(seed))
        s.write_result(make_config(2), make_rows(3.0))  # no checkpoint
        yield s


def ids(*seeds):
    return [run_id(make_config(s)) for s in seeds]


def build_v1_store(root: Path, n_runs: int = 3) -> dict:
    """A version-1 store written by hand: the v1 statements, runs, metric rows and checkpoint files."""
    root.mkdir(parents=True)
    (root / "checkpoints").mkdir()
    conn = sqlite3.connect(root / "index.sqlite", isolation_level=None)
    for statement in V1_STATEMENTS:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    expected = {}
    for seed in range(n_runs):
        cfg = make_config(seed)
        rid = run_id(cfg)
        sha = None
        if seed < n_runs - 1:  # the last run kept no checkpoint
            buf = io.BytesIO()
            torch.save(make_checkpoint(seed), buf)
            blob = buf.getvalue()
            (root / "checkpoints" / f"{rid}.pt").write_bytes(blob)
            sha = hashlib.sha256(blob).hexdigest()
        conn.execute("INSERT INTO runs VALUES (?, ?, 'complete', ?, 1.5, 'cpu', ?, ?)",
                     (rid, canonical_json(cfg), json.dumps({"t_grok": 10 * seed}), sha, time.time()))
        rows = make_rows(seed + 1.0)
        conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", [(rid, s, m, v) for s, m, v in rows])
        expected[rid] = {(s, m): v for s, m, v in rows}
    conn.close()
    return expected


def table_dict(table) -> dict:
    return {(r, int(s), m): v for r, s, m, v in zip(table.run_id, table.step, table.metric, table.value)}


# ---------------------------------------------------------------------- schema: migration and read-only


def test_v1_store_opens_migrates_keeps_every_row_and_gains_probe_rows(tmp_path):
    root = tmp_path / "v1"
    expected = build_v1_store(root)
    with RunStore(root, readonly=True) as reader:
        before_metrics = reader.metrics_table()
        before_runs = reader.runs_table()
    assert len(before_metrics) == sum(len(v) for v in expected.values())

    with RunStore(root) as store:  # a writer migrates
        assert store.opened_version == 1 and store.schema_version == SCHEMA_VERSION == 3  # v1 -> v2 -> v3
        tables = {r[0] for r in sqlite3.connect(root / "index.sqlite").execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "metrics", "probe_runs", "probe_metrics"} <= tables
        pd.testing.assert_frame_equal(store.metrics_table(), before_metrics)
        pd.testing.assert_frame_equal(store.runs_table(), before_runs)
        got = table_dict(store.metrics_table())
        for rid, rows in expected.items():
            assert {(s, m): got[(rid, s, m)] for (s, m) in rows} == rows
        assert store.probe_state() == {}
        spy = Spy()
        counts = run_probes(store, sorted(expected), [stub_probe(spy=spy)], progress=False)
        assert counts == ProbeCounts(computed=2, reused=0, skipped_no_checkpoint=1)
        with_probes = store.metrics_table()
        assert set(with_probes.metric) == {"train_loss", "test_acc", "stub_sum", "stub_logged"}
        # every old row is still there, next to the probe rows
        old = with_probes[with_probes.metric.isin(["train_loss", "test_acc"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(old, before_metrics)
        store.load_checkpoints(ids(0)[0])  # the checkpoints still verify

    with RunStore(root, readonly=True) as reader:  # the migration is on disk
        assert reader.schema_version == SCHEMA_VERSION and len(reader.probe_state()) == 2


def test_readonly_reads_a_v1_store_without_migrating_it(tmp_path):
    """Chosen behaviour: a read-only open of a version-1 index reads it as it is; probe tables count as empty."""
    root = tmp_path / "v1"
    expected = build_v1_store(root)
    probe = stub_probe()
    with RunStore(root, readonly=True) as reader:
        assert reader.schema_version == 1 and reader.opened_version == 1
        table = reader.metrics_table()  # probes=True on a v1 index: just the logged rows
        assert len(table) == sum(len(v) for v in expected.values())
        assert reader.probe_state() == {}
        assert pending_probes(reader, sorted(expected), [probe]) == {"stub": ids(0, 1)}
        with pytest.raises(StoreError, match="read-only.*needs a writer"):
            run_probes(reader, sorted(expected), [probe], progress=False)
    assert sqlite3.connect(root / "index.sqlite").execute("PRAGMA user_version").fetchone()[0] == 1  # untouched


def test_a_failed_migration_leaves_the_v1_index_as_it_was(tmp_path, monkeypatch):
    root = tmp_path / "v1"
    build_v1_store(root)
    broken = (*schema.MIGRATIONS[1][:2], "CREATE TABLE this is not sql")
    monkeypatch.setitem(schema.MIGRATIONS, 1, broken)
    with pytest.raises(StoreError, match="index.sqlite"):
        RunStore(root)
    conn = sqlite3.connect(root / "index.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {"runs", "metrics"}
    conn.close()
    monkeypatch.undo()
    with RunStore(root) as store:  # the lock was released, and the real migration still works
        assert store.schema_version == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path):
    with RunStore(tmp_path):
        pass
    sqlite3.connect(tmp_path / "index.sqlite").execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="newer"):
            RunStore(tmp_path, readonly=readonly)


# ---------------------------------------------------------------------- run_probes: compute once


def test_rerun_computes_nothing_and_reads_no_checkpoint(store, monkeypatch):
    spy = Spy()
    probe = stub_probe(spy=spy)
    first = run_probes(store, ids(0, 1, 2), [probe], progress=False)
    assert (first.computed, first.reused, first.skipped_no_checkpoint) == (2, 0, 1)
    assert first.runs_without_checkpoint == tuple(ids(2))
    assert sorted(spy.calls) == sorted(ids(0, 1))
    state = store.probe_state()
    assert set(state) == {(r, "stub") for r in ids(0, 1)}
    assert all(v[0] == 1 and v[1] == store.checkpoint_shas([k[0]])[k[0]] for k, v in state.items())

    def no_loading(rid):
        raise AssertionError("a current probe result must not load the checkpoint")
    monkeypatch.setattr(store, "load_checkpoints", no_loading)
    second = run_probes(store, ids(0, 1, 2), [probe], progress=False)
    assert (second.computed, second.reused, second.skipped_no_checkpoint) == (0, 2, 1)
    assert len(spy.calls) == 2  # the spy was not called again
    assert second.summary() == "probes: 0 computed, 2 reused, 1 runs without checkpoints"


def test_bumping_one_probe_version_recomputes_only_that_probe(store):
    spy_a, spy_b = Spy("a"), Spy("b")
    a, b = stub_probe("a", spy=spy_a), stub_probe("b", spy=spy_b)
    assert run_probes(store, ids(0, 1), [a, b], progress=False).computed == 4
    a2 = dataclasses.replace(a, version=2)
    counts = run_probes(store, ids(0, 1), [a2, b], progress=False)
    assert (counts.computed, counts.reused) == (2, 2)
    assert len(spy_a.calls) == 4 and len(spy_b.calls) == 2
    assert {v[0] for (r, p), v in store.probe_state().items() if p == "a"} == {2}
    assert run_probes(store, ids(0, 1), [a2, b], progress=False).computed == 0


def test_a_retrain_drops_the_runs_probe_rows(store):
    probe = stub_probe()
    run_probes(store, ids(0, 1), [probe], progress=False)
    rid = ids(0)[0]
    old_sum = store.metrics_table([rid], metrics=["stub_sum"])["value"].tolist()
    store.write_result(make_config(0), make_rows(7.0), checkpoint=make_checkpoint(seed=5))  # retrained
    assert set(store.probe_state()) == {(ids(1)[0], "stub")}
    assert store.metrics_table([rid], metrics=["stub_sum", "stub_logged"]).empty
    raw = sqlite3.connect(store.index_path).execute("SELECT count(*) FROM probe_metrics WHERE run_id = ?",
                                                    (rid,)).fetchone()[0]
    assert raw == 0
    counts = run_probes(store, ids(0, 1), [probe], progress=False)
    assert (counts.computed, counts.reused) == (1, 1)
    assert store.metrics_table([rid], metrics=["stub_sum"])["value"].tolist() != old_sum  # from the new checkpoint


def test_corrupt_checkpoint_raises_naming_the_path_and_old_rows_are_not_reused(store):
    probe = stub_probe()
    run_probes(store, ids(0), [probe], progress=False)
    path = store.checkpoint_path(ids(0)[0])
    path.write_bytes(path.read_bytes()[:100])
    newer = dataclasses.replace(probe, version=2)
    with pytest.raises(CorruptCheckpointError) as info:
        run_probes(store, ids(0), [newer], progress=False)
    assert str(path) in str(info.value)
    # the version-1 rows stay in the store, but a reader asking for version 2 does not get them
    assert store.probe_state()[(ids(0)[0], "stub")][0] == 1
    assert store.metrics_table(ids(0), probes={"stub": 2}).metric.isin(["stub_sum"]).sum() == 0
    assert store.metrics_table(ids(0), probes={"stub": 1}).metric.isin(["stub_sum"]).sum() == 3


def test_runs_outside_a_probes_domain_are_counted_not_loaded(store):
    only_seed_1 = stub_probe(applies=lambda cfg: cfg.seed == 1)
    counts = run_probes(store, ids(0, 1, 2), [only_seed_1], progress=False)
    assert (counts.computed, counts.not_defined, counts.skipped_no_checkpoint) == (1, 2, 0)
    assert counts.summary().endswith(", 2 not defined for the run")
    assert only_seed_1.compute.calls == ids(1)


def test_compute_gets_the_runs_logged_rows_and_its_rows_are_validated(store):
    run_probes(store, ids(0), [stub_probe()], progress=False)
    logged = store.metrics_table(ids(0), metrics=["stub_logged"])["value"].tolist()
    assert logged == [len(make_rows())]

    def undeclared(config, checkpoint, logged):
        return pd.DataFrame({"step": [10], "metric": ["something_else"], "value": [1.0]})
    with pytest.raises(ValueError, match="'bad'.*something_else.*does not declare"):
        run_probes(store, ids(1), [stub_probe("bad", spy=undeclared)], progress=False)

    def crashes(config, checkpoint, logged):
        raise RuntimeError("bug in the probe")
    with pytest.raises(RuntimeError, match="bug in the probe") as info:
        run_probes(store, ids(1), [stub_probe("crash", spy=crashes)], progress=False)
    assert any("probe 'crash'" in n and ids(1)[0] in n for n in info.value.__notes__)
    assert ("crash" not in {p for _, p in store.probe_state()})

    def nothing(config, checkpoint, logged):
        return None
    quiet = stub_probe("quiet", spy=nothing)
    assert run_probes(store, ids(0, 1), [quiet], progress=False).computed == 2  # recorded, with no rows
    assert run_probes(store, ids(0, 1), [quiet], progress=False).reused == 2


def test_progress_bar_only_for_several_runs(store, capsys):
    run_probes(store, ids(0), [stub_probe("one")], progress=True)
    assert "probes" not in capsys.readouterr().err
    run_probes(store, ids(0, 1), [stub_probe("two")], progress=True)
    assert "probes" in capsys.readouterr().err


def test_unknown_run_and_unknown_probe(store):
    with pytest.raises(StoreError, match="0000000000000000"):
        run_probes(store, ["0" * 16], [stub_probe()], progress=False)
    with pytest.raises(ConfigError, match="did you mean 'flips'"):
        get_probe("flip")
    with pytest.raises(ConfigError, match="unknown probe"):
        run_probes(store, ids(0), ["no_such_probe"], progress=False)
    assert get_probe("flips") is PROBES["flips"]


# ---------------------------------------------------------------------- the store's probe API


def test_metrics_table_merges_probe_rows(store):
    run_probes(store, ids(0, 1), [stub_probe("a"), stub_probe("b")], progress=False)
    table = store.metrics_table()
    assert list(table.columns) == ["run_id", "status", *CONFIG_COLUMNS, "step", "metric", "value"]
    assert table["step"].dtype == np.int64 and table["value"].dtype == np.float64
    assert not table.duplicated(["run_id", "step", "metric"]).any()
    pd.testing.assert_frame_equal(table, table.sort_values(["run_id", "metric", "step"]).reset_index(drop=True))
    per_run = table[table.run_id == ids(0)[0]]
    assert set(per_run.metric) == {"train_loss", "test_acc", "a_sum", "a_logged", "b_sum", "b_logged"}
    assert (per_run.seed == 0).all() and (per_run.status == "complete").all()
    ckpt = make_checkpoint(0)  # the probe reads the stored checkpoint: float16 on disk, float32 in memory
    want = sum(t.half().float().flatten(1).sum(1) for t in ckpt["params"].values()).tolist()
    np.testing.assert_allclose(per_run[per_run.metric == "a_sum"]["value"], want, rtol=1e-6)
    # what joins: every probe, none, by name, by name and version
    assert set(store.metrics_table(probes=False).metric) == {"train_loss", "test_acc"}
    assert set(store.metrics_table(probes=["a"]).metric) == {"train_loss", "test_acc", "a_sum", "a_logged"}
    assert set(store.metrics_table(probes={"a": 1, "b": 2}).metric) == {"train_loss", "test_acc", "a_sum",
                                                                         "a_logged"}
    assert set(store.metrics_table(metrics=["b_sum"]).metric) == {"b_sum"}
    # the run without a checkpoint still has its logged rows
    assert set(store.metrics_table(ids(2)).metric) == {"train_loss", "test_acc"}


def test_write_probe_refuses_to_shadow_a_logged_metric_or_another_probe(store):
    rid = ids(0)[0]
    with pytest.raises(ValueError, match="probe 'p'.*'test_acc' at step 5.*trainer logged"):
        store.write_probe(rid, "p", 1, [(5, "test_acc", 0.5)])
    store.write_probe(rid, "p", 1, [(5, "shared", 0.5)])
    with pytest.raises(ValueError, match="probe 'q'.*'shared' at step 5.*probe 'p' already wrote"):
        store.write_probe(rid, "q", 1, [(5, "shared", 0.7)])
    with pytest.raises(ValueError, match="duplicate"):
        store.write_probe(rid, "q", 1, [(1, "x", 0.1), (1, "x", 0.2)])
    assert (rid, "q") not in store.probe_state()
    with pytest.raises(StoreError, match="no recorded checkpoint"):
        store.write_probe(ids(2)[0], "p", 1, [(5, "y", 0.5)])
    with pytest.raises(StoreError, match="checkpoint changed"):
        store.write_probe(rid, "p", 1, [(5, "y", 0.5)], checkpoint_sha256="0" * 64)
    store.write_probe(rid, "p", 2, [(6, "shared", 0.9)])  # replaces p's rows for the run
    rows = store.metrics_table([rid], metrics=["shared"])
    assert rows[["step", "value"]].values.tolist() == [[6, 0.9]]
    assert store.probe_state([rid])[(rid, "p")] == (2, store.checkpoint_shas([rid])[rid])


def test_metrics_table_names_both_sides_of_a_clash(store):
    """A clash that bypassed write_probe (edited by hand) is an error when read, not a silent duplicate."""
    rid = ids(0)[0]
    store.write_probe(rid, "p", 1, [(5, "only_p", 0.5)])
    conn = sqlite3.connect(store.index_path)
    with conn:
        conn.execute("INSERT INTO probe_metrics VALUES (?, 'p', 5, 'test_acc', 0.1)", (rid,))
    conn.close()
    with pytest.raises(StoreError, match="'test_acc' is in both the trainer's logged metrics and the rows of "
                                         "probe 'p'"):
        store.metrics_table([rid])
    assert len(store.metrics_table([rid], probes=False)) == len(make_rows())


@pytest.mark.parametrize("name", ["q", "logged"])  # a probe may be named anything, "logged" included
def test_metrics_table_names_a_clash_whatever_the_probe_is_named(store, name):
    rid = ids(0)[0]
    store.write_probe(rid, "p", 1, [(5, "shared", 0.5)])
    store.write_probe(rid, name, 1, [(5, "own", 0.5)])
    conn = sqlite3.connect(store.index_path)
    with conn:
        conn.execute("INSERT INTO probe_metrics VALUES (?, ?, 5, 'test_acc', 0.1)", (rid, name))
    conn.close()
    with pytest.raises(StoreError, match=f"'test_acc' is in both the trainer's logged metrics and the rows of "
                                         f"probe '{name}'"):
        store.metrics_table([rid])
    conn = sqlite3.connect(store.index_path)
    with conn:
        conn.execute("DELETE FROM probe_metrics WHERE probe = ? AND metric = 'test_acc'", (name,))
        conn.execute("INSERT INTO probe_metrics VALUES (?, ?, 5, 'shared', 0.1)", (rid, name))
    conn.close()
    with pytest.raises(StoreError, match="'shared' is in both the rows of probe"):  # two probes
        store.metrics_table([rid])


def test_readonly_store_reads_current_probe_rows(store):
    probe = stub_probe()
    run_probes(store, ids(0, 1), [probe], progress=False)
    with RunStore(store.root, readonly=True) as reader:
        assert reader.probe_state() == store.probe_state()
        counts = run_probes(reader, ids(0, 1), [probe], progress=False)  # nothing to compute: fine read-only
        assert (counts.computed, counts.reused) == (0, 2)
        pd.testing.assert_frame_equal(reader.metrics_table(), store.metrics_table())
        with pytest.raises(StoreError, match="read-only"):
            reader.write_probe(ids(0)[0], "stub", 1, [])


# ---------------------------------------------------------------------- Probe


def test_probe_declares_what_it_writes():
    p = Probe(name="fourier_like", version=1, metrics=("embed_fnorm_k*", "gini"), compute=lambda c, k, l: None)
    assert p.produces("embed_fnorm_k1") and p.produces("embed_fnorm_k12") and p.produces("gini")
    assert not p.produces("embed_fnorm_k") and not p.produces("gini2") and not p.produces("embed_fnorm")
    for bad in (dict(name="two words"), dict(version=0), dict(version=True), dict(metrics=()),
                dict(metrics=("a b",)), dict(compute=None)):
        with pytest.raises(ValueError):
            Probe(**{**dict(name="x", version=1, metrics=("m",), compute=lambda c, k, l: None), **bad})


def test_plant_probe_places_summaries_at_the_last_step():
    def plant(cfg, steps, progress, rng):
        return {"s_sum": np.arange(len(steps), dtype=float), "s_logged": 3.0}
    probe = stub_probe("s", plant=plant)
    steps = np.array([0, 10, 100])
    out = plant_probe(probe, make_config(), steps, {}, np.random.default_rng(0))
    assert out["s_logged"][0].tolist() == [100] and out["s_logged"][1].tolist() == [3.0]
    assert out["s_sum"][0].tolist() == [0, 10, 100]
    with pytest.raises(ValueError, match="does not declare"):
        plant_probe(stub_probe("t", plant=lambda *a: {"other": 1.0}), make_config(), steps, {}, None)
    with pytest.raises(ValueError, match="no plant"):
        plant_probe(stub_probe("u"), make_config(), steps, {}, None)


# ---------------------------------------------------------------------- several processes


def _three_run_store(root):
    s = RunStore(root)
    for seed in range(3):
        s.write_result(make_config(seed), make_rows(seed + 1.0), checkpoint=make_checkpoint(seed))
    return s


def test_two_workers_store_the_same_rows_as_one(tmp_path):
    stored = []
    for workers in (1, 2):
        with _three_run_store(tmp_path / f"store{workers}") as s:
            counts = run_probes(s, ids(0, 1, 2), [stub_probe("par")], progress=False, workers=workers)
            assert (counts.computed, counts.reused) == (3, 0)
            stored.append(table_dict(s.metrics_table(probes={"par": 1})))
            assert run_probes(s, ids(0, 1, 2), [stub_probe("par")], progress=False, workers=workers).computed == 0
    assert stored[0] == stored[1] and any(m == "par_sum" for _, _, m in stored[0])


def test_a_probe_that_cannot_travel_is_computed_in_the_driver(tmp_path):
    calls = []

    def inline(config, checkpoint, logged):  # a closure: not picklable, so never sent to a worker
        calls.append(run_id(config))
        return pd.DataFrame({"step": [0], "metric": ["inline_sum"], "value": [1.0]})

    with _three_run_store(tmp_path / "store") as s:
        probe = Probe(name="inline", version=1, metrics=("inline_sum",), compute=inline)
        assert run_probes(s, ids(0, 1, 2), [probe], progress=False, workers=2).computed == 3
    assert sorted(calls) == sorted(ids(0, 1, 2))


def test_a_corrupt_checkpoint_in_a_worker_names_the_file(tmp_path):
    with _three_run_store(tmp_path / "store") as s:
        path = s.checkpoint_path(ids(1)[0])
        path.write_bytes(path.read_bytes()[:-20])
        with pytest.raises(CorruptCheckpointError, match=str(path.name)):
            run_probes(s, ids(0, 1, 2), [stub_probe("par")], progress=False, workers=2)
        assert ("par" not in {k[1] for k in s.probe_state(ids(1))})


def test_probes_on_compact_checkpoints_match_full_precision(tiny_cfg, tmp_path):
    """Every registered probe, on a run that groks, gives the same answer from the store's float16 checkpoint as
    from the trainer's float32 one: continuous values within COMPACT_PROBE_RTOL of the metric's scale, per-neuron
    and per-example counts within COMPACT_LABEL_CHANGES, key-frequency decisions identical."""
    import math

    from grokking_theories.levels import COMPACT_LABEL_CHANGES, COMPACT_PROBE_RTOL
    from grokking_theories.probes.stage import all_probes
    from grokking_theories.store import RunStore
    from grokking_theories.training import train_run

    cfg = tiny_cfg(p=31, train_frac=0.7, width=128, lr=1e-2, max_steps=1500, stop_after_grok=200,
                   log_points=30, log_every=50, checkpoints=16)
    r = train_run(cfg)
    assert r.summary["t_grok"] is not None, "the run must grok, so the probes see a circuit and flips"
    with RunStore(tmp_path / "store") as store:
        store.write_result(cfg, r.metrics, checkpoint=r.checkpoint, summary=r.summary)
        compact = store.checkpoint(cfg.run_id)
        logged = store.metrics_table(run_ids=[cfg.run_id], probes=False)[["step", "metric", "value"]]
    assert any(t.dtype.itemsize == 4 for t in compact.params.values())  # read back as float32
    n_neurons = cfg.model.width
    probes = [p for p in all_probes() if p.defined_for(cfg)]
    assert {p.name for p in probes} >= {"fourier", "flips"}
    for probe in probes:
        full = probe.compute(cfg, r.checkpoint, logged)
        small = probe.compute(cfg, compact, logged)
        both = full.merge(small, on=["step", "metric"], suffixes=("_32", "_16"), validate="one_to_one")
        assert len(both) == len(full) == len(small) > 0
        for metric, g in both.groupby("metric"):
            diff = (g.value_16 - g.value_32).abs().fillna(0.0)
            assert (g.value_16.isna() == g.value_32.isna()).all(), metric
            if metric in ("n_key_freqs", "key_rule_fallback"):
                assert diff.max() == 0, metric
            elif metric.startswith("neuron_cluster_k"):  # neuron counts
                assert diff.max() <= max(1, math.ceil(COMPACT_LABEL_CHANGES * n_neurons)), metric
            elif metric in ("neuron_single_freq_frac", "flip_censored_frac", "flip_width_frac",
                            "collapse_train_frac"):  # shares of neurons or examples
                assert diff.max() <= max(COMPACT_LABEL_CHANGES, 1 / n_neurons), metric
            else:
                scale = max(float(g.value_32.abs().max()), 1e-12)
                assert diff.max() <= COMPACT_PROBE_RTOL * scale, (probe.name, metric, diff.max(), scale)
