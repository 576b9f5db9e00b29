"""Tests of grokking_theories.store.RunStore (tmp_path only, light on CPU)."""
from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grokking_theories.config import ModelConfig, OptimConfig, RunConfig, TaskConfig, canonical_json, run_id
from grokking_theories.errors import CorruptCheckpointError, StoreError, StoreLockedError
from grokking_theories.store import Checkpoint, RunStore
from grokking_theories.store import sqlite_store
from grokking_theories.store.checkpoints import CheckpointFiles, read_verified, serialise_checkpoint
from grokking_theories.store.rows import metric_columns
from test_probe_stage import V1_STATEMENTS

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONFIG_COLUMNS = list(RunConfig().flat())


def make_config(seed=0, **optim) -> RunConfig:
    return RunConfig(task=TaskConfig(p=7), model=ModelConfig(width=8), optim=OptimConfig(**optim), seed=seed)


def make_rows(scale=1.0, steps=(0, 1, 10)):
    return [(s, m, scale * (s + 1) * (2.0 if m == "test_acc" else 1.0)) for s in steps for m in ("train_loss", "test_acc")]


def make_checkpoint(n=3):
    gen = torch.Generator().manual_seed(0)
    return {
        "steps": torch.tensor([0, 5, 10][:n], dtype=torch.long),
        "params": {"w": torch.randn(n, 4, 3, generator=gen), "b": torch.randn(n, 3, generator=gen)},
    }


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- round trip


def test_round_trip_configs_metrics_checkpoints(tmp_path):
    a, b = make_config(0, lr=3e-3, fixed_norm=1.5), make_config(1, weight_decay=0.1)
    ckpt = make_checkpoint()
    rows_a = make_rows(1.0) + [(20, "train_loss", float("nan")), (20, "test_acc", float("inf"))]
    rows_b = pd.DataFrame({"step": [0, 3], "metric": ["test_acc", "test_acc"], "value": np.float32([0.25, 0.5])})
    with RunStore(tmp_path) as store:
        store.register([a, b])
        store.write_result(a, rows_a, checkpoint=ckpt, summary={"grok_step": np.int64(10), "final": 0.5},
                           wall_time=1.25, device="cpu")
        store.write_result(b, rows_b, status="diverged", summary={"final": float("nan")})

    with RunStore(tmp_path) as store:  # everything survives reopening
        assert store.config(run_id(a)) == a and store.config(run_id(b)) == b
        assert store.status(run_id(a)) == "complete" and store.status(run_id(b)) == "diverged"

        table = store.metrics_table()
        got_a = table[table.run_id == run_id(a)]
        got = {(int(s), m): v for s, m, v in zip(got_a.step, got_a.metric, got_a.value)}
        want = {(s, m): v for s, m, v in rows_a}
        assert got.keys() == want.keys()
        for key, v in want.items():
            assert (math.isnan(v) and math.isnan(got[key])) or got[key] == v
        got_b = table[table.run_id == run_id(b)]
        assert got_b.step.tolist() == [0, 3] and got_b.value.tolist() == [0.25, 0.5]
        # config columns are joined per run
        assert (got_a.lr == 3e-3).all() and (got_a.fixed_norm == 1.5).all() and (got_a.seed == 0).all()
        assert (got_b.weight_decay == 0.1).all() and got_b.fixed_norm.isna().all()

        loaded = store.load_checkpoints(run_id(a))
        assert isinstance(loaded, Checkpoint) and set(loaded.params) == {"w", "b"}
        assert torch.equal(loaded.steps, ckpt["steps"]) and loaded.steps.dtype == torch.long
        for name, tensor in ckpt["params"].items():
            # stored compactly in float16, read back as float32: exactly the float16 rounding of each value
            assert loaded.params[name].dtype == torch.float32
            assert torch.equal(loaded.params[name], tensor.half().float())

        runs = store.runs_table().set_index("run_id")
        assert list(runs.reset_index().columns[:4]) == ["run_id", "status", "wall_time", "device"]
        assert runs.loc[run_id(a), "wall_time"] == 1.25 and runs.loc[run_id(a), "device"] == "cpu"
        assert runs.loc[run_id(a), "summary_grok_step"] == 10 and runs.loc[run_id(a), "summary_final"] == 0.5
        assert math.isnan(runs.loc[run_id(b), "summary_grok_step"])
        assert math.isnan(runs.loc[run_id(b), "summary_final"])
        assert runs.loc[run_id(b), "lr"] == 1e-3 and runs.loc[run_id(b), "seed"] == 1


def test_checkpoint_of_a_view_stores_only_the_view(tmp_path):
    """A slice of an ensemble tensor must not drag the whole storage into the file."""
    big = torch.randn(3, 64, 1000)
    view = {"steps": torch.arange(3), "params": {"w": big[:, 0, :2]}}
    with RunStore(tmp_path) as store:
        cfg = make_config()
        store.write_result(cfg, make_rows(), checkpoint=view)
        assert store.checkpoint_path(run_id(cfg)).stat().st_size < 20_000  # whole storage is 768 kB
        assert torch.equal(store.load_checkpoints(run_id(cfg))["params"]["w"], big[:, 0, :2].half().float())


# ---------------------------------------------------------------- reruns


def test_register_keeps_finished_runs_finished(tmp_path):
    a, b, c, d = (make_config(s) for s in range(4))
    with RunStore(tmp_path) as store:
        store.register([a, b, c])
        assert {store.status(run_id(x)) for x in (a, b, c)} == {"pending"}
        assert store.finished_ids() == set()
        store.write_result(a, make_rows(), checkpoint=make_checkpoint())
        store.write_result(b, make_rows(2.0), status="diverged")
        store.write_result(c, make_rows(3.0), status="failed")
        assert store.finished_ids() == {run_id(a), run_id(b)}

    with RunStore(tmp_path) as store:  # a second driver registers the same study plus one run
        store.register([a, b, c, d])
        assert store.status(run_id(a)) == "complete"
        assert store.status(run_id(b)) == "diverged"
        assert store.status(run_id(c)) == "failed"  # failed runs are retried, not reset nor finished
        assert store.status(run_id(d)) == "pending"
        assert store.status("0" * 16) is None
        assert store.finished_ids() == {run_id(a), run_id(b)}
        assert len(store.metrics_table(run_ids=[run_id(a)])) == len(make_rows())
        store.load_checkpoints(run_id(a))  # untouched
        # default table: finished runs only; explicit ids include any status
        assert set(store.metrics_table().run_id) == {run_id(a), run_id(b)}
        assert set(store.metrics_table(run_ids=[run_id(c)]).status) == {"failed"}
        with pytest.raises(StoreError, match="0000000000000000"):
            store.metrics_table(run_ids=["0" * 16])


def test_rewrite_replaces_metric_rows(tmp_path):
    cfg = make_config()
    with RunStore(tmp_path) as store:
        store.write_result(cfg, make_rows(1.0, steps=(0, 1, 2, 3)), status="failed", checkpoint=make_checkpoint())
        store.write_result(cfg, make_rows(5.0, steps=(0, 7)))
        table = store.metrics_table()
        assert sorted(set(table.step)) == [0, 7] and len(table) == 4
        assert store.status(run_id(cfg)) == "complete"
        # the new attempt had no checkpoint: the old one is gone, not left to mismatch
        assert not store.checkpoint_path(run_id(cfg)).exists()
        with pytest.raises(StoreError, match="no recorded checkpoint"):
            store.load_checkpoints(run_id(cfg))


def test_invalid_status_is_rejected(tmp_path):
    with RunStore(tmp_path) as store:
        with pytest.raises(ValueError, match="status"):
            store.write_result(make_config(), make_rows(), status="pending")
        assert store.status(run_id(make_config())) is None


# ---------------------------------------------------------------- atomicity


def test_failure_inside_transaction_leaves_no_rows(tmp_path):
    """A duplicate row is rejected by the UNIQUE index mid-executemany, after other rows went in."""
    cfg = make_config()
    rows = make_rows() + [(0, "train_loss", 9.0)]  # duplicate (step 0, train_loss) last
    with RunStore(tmp_path) as store:
        store.register([cfg])
        with pytest.raises(ValueError, match="duplicate"):
            store.write_result(cfg, rows)
        assert store.status(run_id(cfg)) == "pending"
        assert store.metrics_table(run_ids=[run_id(cfg)]).empty


def test_crash_after_inserts_rolls_back_to_previous_result(tmp_path, monkeypatch):
    """Fail after DELETE + INSERTs, before the status update: old rows and status survive."""
    fresh, done = make_config(0), make_config(1)
    with RunStore(tmp_path) as store:
        store.register([fresh])
        store.write_result(done, make_rows(1.0), checkpoint=make_checkpoint())
        before = store.metrics_table(run_ids=[run_id(done)])

        def crash():
            raise RuntimeError("simulated crash")

        monkeypatch.setattr(sqlite_store, "_now", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            store.write_result(fresh, make_rows(2.0))
        with pytest.raises(RuntimeError, match="simulated crash"):
            store.write_result(done, make_rows(3.0, steps=(0, 50)), status="diverged")
        monkeypatch.undo()

        assert store.status(run_id(fresh)) == "pending"
        assert store.metrics_table(run_ids=[run_id(fresh)]).empty
        assert store.status(run_id(done)) == "complete"
        pd.testing.assert_frame_equal(store.metrics_table(run_ids=[run_id(done)]), before)
        store.load_checkpoints(run_id(done))  # still matches its recorded sha256
    with RunStore(tmp_path, readonly=True) as store:  # and on disk, not just in this connection
        assert store.finished_ids() == {run_id(done)}


def test_crash_during_a_retrain_keeps_the_old_attempts_probe_rows(tmp_path, monkeypatch):
    """Dropping a run's probe rows is part of write_result's transaction: a crash keeps them with the old rows."""
    cfg = make_config()
    rid = run_id(cfg)
    with RunStore(tmp_path) as store:
        store.write_result(cfg, make_rows(1.0), checkpoint=make_checkpoint())
        store.write_probe(rid, "p", 1, [(10, "p_metric", 0.5)])
        before = store.metrics_table([rid])
        state = store.probe_state()

        def crash():
            raise RuntimeError("simulated crash")

        monkeypatch.setattr(sqlite_store, "_now", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            store.write_result(cfg, make_rows(3.0))
        monkeypatch.undo()
        assert store.probe_state() == state
        pd.testing.assert_frame_equal(store.metrics_table([rid]), before)
        store.write_result(cfg, make_rows(3.0), checkpoint=make_checkpoint())  # the retrain, this time done
        assert store.probe_state() == {}
        assert "p_metric" not in set(store.metrics_table([rid]).metric)


def test_store_modules_split_by_concern():
    """One module per concern; the public import path is unchanged."""
    from grokking_theories.store import SCHEMA_VERSION, checkpoints, lock, rows, schema

    assert RunStore.__module__ == "grokking_theories.store.sqlite_store"
    assert SCHEMA_VERSION == schema.SCHEMA_VERSION == 3
    assert callable(checkpoints.read_verified) and callable(lock.acquire_lock) and callable(rows.metric_columns)


def test_non_numeric_value_changes_nothing(tmp_path):
    cfg = make_config()
    with RunStore(tmp_path) as store:
        store.register([cfg])
        for bad in ([(0, "loss", 1.0), (1, "loss", "abc")], [(0, "loss", "0.5")], [(0.5, "loss", 1.0)]):
            with pytest.raises(ValueError, match=run_id(cfg)):
                store.write_result(cfg, bad, checkpoint=make_checkpoint())
        assert store.status(run_id(cfg)) == "pending"
        assert store.metrics_table(run_ids=[run_id(cfg)]).empty
        assert not store.checkpoint_path(run_id(cfg)).exists()


# ---------------------------------------------------------------- locking


def test_second_writer_in_another_process_is_refused(tmp_path):
    root = tmp_path / "store"
    code = f"""
        from grokking_theories.store import RunStore
        from grokking_theories.errors import StoreLockedError
        try:
            RunStore({str(root)!r}).close()
            print("OPENED")
        except StoreLockedError as exc:
            print("LOCKED:", exc)
    """
    with RunStore(root):
        proc = run_python(code, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("LOCKED:")
        assert str(root) in proc.stdout and f"pid {os.getpid()}" in proc.stdout
    proc = run_python(code, tmp_path)  # released on close
    assert proc.stdout.startswith("OPENED"), proc.stdout + proc.stderr


def test_second_writer_in_same_process_is_refused(tmp_path):
    # flock locks belong to the open file description, so two RunStores in one
    # process conflict too (unlike fcntl/POSIX record locks).
    with RunStore(tmp_path):
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}") as info:
            RunStore(tmp_path)
        assert str(tmp_path) in str(info.value)
    RunStore(tmp_path).close()  # free again
    store = RunStore(tmp_path)
    del store  # a dropped writer releases its lock too
    RunStore(tmp_path).close()


def test_readonly_reads_while_writer_holds_lock(tmp_path):
    cfg, later = make_config(0), make_config(1)
    with RunStore(tmp_path) as writer:
        writer.write_result(cfg, make_rows(), checkpoint=make_checkpoint())
        with RunStore(tmp_path, readonly=True) as reader:
            assert reader.finished_ids() == {run_id(cfg)}
            assert len(reader.metrics_table()) == len(make_rows())
            assert torch.equal(reader.load_checkpoints(run_id(cfg))["steps"], make_checkpoint()["steps"])
            assert reader.config(run_id(cfg)) == cfg
            writer.write_result(later, make_rows(), status="diverged")  # reader sees new commits
            assert reader.finished_ids() == {run_id(cfg), run_id(later)}
            for call in (lambda: reader.register([cfg]), lambda: reader.write_result(cfg, make_rows())):
                with pytest.raises(StoreError, match="read-only"):
                    call()
        # the reader took no lock: a writer still cannot be opened beside `writer`
        with pytest.raises(StoreLockedError):
            RunStore(tmp_path)


def test_readonly_requires_existing_store(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(StoreError, match=str(missing)):
        RunStore(missing, readonly=True)
    assert not missing.exists()


def test_corrupt_index_raises_store_error(tmp_path):
    with RunStore(tmp_path) as store:
        store.register([make_config()])
    index = tmp_path / "index.sqlite"
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    index.write_bytes(b"this is not a database" * 100)
    for readonly in (False, True):
        with pytest.raises(StoreError, match=str(index)):
            RunStore(tmp_path, readonly=readonly)
    # the failed writer did not keep the lock
    index.unlink()
    RunStore(tmp_path).close()


# ---------------------------------------------------------------- checkpoints


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "flipped":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize("how, words", [("truncated", "truncated"), ("flipped", "modified"), ("missing", "missing")])
def test_damaged_checkpoint_raises(tmp_path, how, words):
    cfg = make_config()
    with RunStore(tmp_path) as store:
        store.write_result(cfg, make_rows(), checkpoint=make_checkpoint())
        path = store.checkpoint_path(run_id(cfg))
        _damage(path, how)
        with pytest.raises(CorruptCheckpointError) as info:
            store.load_checkpoints(run_id(cfg))
        assert str(path) in str(info.value) and words in str(info.value)


def test_checkpoint_written_atomically_leaves_no_temp_files(tmp_path):
    cfg = make_config()
    with RunStore(tmp_path) as store:
        store.write_result(cfg, make_rows(), checkpoint=make_checkpoint())
        store.write_result(cfg, make_rows(), checkpoint=make_checkpoint(2))
        assert [p.name for p in store.checkpoint_dir.iterdir()] == [f"{run_id(cfg)}.pt"]
        assert store.load_checkpoints(run_id(cfg))["steps"].tolist() == [0, 5]


def _previous_serialise(checkpoint) -> bytes:
    """The bytes the store wrote before Checkpoint existed: torch.save of a clean plain dict."""
    import io

    clean = {"steps": checkpoint["steps"].to(torch.int64).contiguous().clone(),
             "params": {n: t.contiguous().clone() for n, t in checkpoint["params"].items()}}
    buf = io.BytesIO()
    torch.save(clean, buf)
    return buf.getvalue()


def test_checkpoint_round_trip_through_files_and_store(tmp_path):
    ckpt = make_checkpoint()
    files = CheckpointFiles(tmp_path)
    sha = files.write("r1", serialise_checkpoint(Checkpoint(**ckpt), "r1"))
    assert files.path("r1") == tmp_path / "r1.pt" and files.path("r1").is_file()
    got = files.read_verified("r1", sha)
    assert isinstance(got, Checkpoint) and (got.run_id, got.sha256, len(got)) == ("r1", sha, 3)
    assert torch.equal(got.steps, ckpt["steps"]) and set(got.params) == {"w", "b"}
    for name, tensor in ckpt["params"].items():
        assert torch.equal(got.params[name], tensor.half().float())  # float16 on disk, float32 in memory
    step, params = got.at(1)
    assert step == 5 and isinstance(step, int) and torch.equal(params["w"], ckpt["params"]["w"][1].half().float())
    assert got.at(-1)[0] == 10
    with pytest.raises(IndexError, match="snapshot 3"):
        got.at(3)
    files.remove("r1")
    files.remove("r1")  # a missing file is fine
    assert not files.path("r1").exists()

    cfg = make_config()
    with RunStore(tmp_path / "store") as store:
        store.write_result(cfg, make_rows(), checkpoint=Checkpoint(**ckpt))  # a Checkpoint is written like a dict
        loaded = store.checkpoint(run_id(cfg))
        assert loaded.run_id == run_id(cfg) and loaded.sha256 == store.checkpoint_shas([run_id(cfg)])[run_id(cfg)]
        assert torch.equal(loaded.params["b"], ckpt["params"]["b"].half().float())
        assert torch.equal(store.load_checkpoints(run_id(cfg)).steps, loaded.steps)  # the old name still works
        with pytest.raises(StoreError, match="no run 'nope'"):
            store.checkpoint("nope")


def test_checkpoint_dict_style_access_is_attribute_access():
    ckpt = Checkpoint(**make_checkpoint())
    assert ckpt["steps"] is ckpt.steps and ckpt["params"] is ckpt.params
    assert ckpt.as_dict() == {"steps": ckpt.steps, "params": ckpt.params}
    with pytest.raises(KeyError, match="not 'step'"):
        ckpt["step"]
    with pytest.raises(TypeError, match="not iterable"):  # not the puzzling KeyError of ckpt[0]
        list(ckpt)
    with pytest.raises(AttributeError):  # frozen
        ckpt.steps = torch.arange(3)
    with pytest.raises(TypeError):  # keyword-only
        Checkpoint(ckpt.steps, ckpt.params)
    with pytest.raises(ValueError, match="run r: bad checkpoint: 'steps' must be a 1-d int64"):
        Checkpoint(steps=torch.zeros(3), params={}, run_id="r")
    with pytest.raises(ValueError, match=r"params\['w'\] has shape \(2, 3\), expected leading dim 3"):
        Checkpoint(steps=torch.arange(3), params={"w": torch.zeros(2, 3)})


@pytest.mark.parametrize("how, words", [("flipped", "modified"), ("truncated", "truncated"),
                                        ("malformed", "malformed")])
def test_corrupt_checkpoint_file_raises_naming_the_path(tmp_path, how, words):
    files = CheckpointFiles(tmp_path)
    sha = files.write("r1", serialise_checkpoint(make_checkpoint(), "r1"))
    path = files.path("r1")
    if how == "malformed":  # a readable torch file, recorded as such, that is not a checkpoint
        import io

        buf = io.BytesIO()
        torch.save({"steps": torch.zeros(3), "params": {}}, buf)
        path.write_bytes(buf.getvalue())
        sha = hashlib.sha256(buf.getvalue()).hexdigest()
    else:
        _damage(path, how)
    with pytest.raises(CorruptCheckpointError) as info:
        files.read_verified("r1", sha)
    assert str(path) in str(info.value) and words in str(info.value) and "r1" in str(info.value)


def test_checkpoint_files_keep_the_previous_on_disk_format(tmp_path):
    """The file is still torch.save of the plain dict, now with float16 parameters (half the bytes); a float32
    file of an older store reads back exactly as it was written."""
    ckpt = make_checkpoint()
    old_bytes = _previous_serialise(ckpt)
    new_bytes = serialise_checkpoint(ckpt, "r")
    assert new_bytes == serialise_checkpoint(Checkpoint(**ckpt), "r")
    assert new_bytes == _previous_serialise({"steps": ckpt["steps"],
                                             "params": {n: t.half() for n, t in ckpt["params"].items()}})

    path = tmp_path / "old.pt"  # a file as the previous code wrote it: float32, read back unchanged
    path.write_bytes(old_bytes)
    got = read_verified(path, "old", hashlib.sha256(old_bytes).hexdigest())
    assert isinstance(got, Checkpoint) and torch.equal(got["steps"], ckpt["steps"])
    assert torch.equal(got.params["w"], ckpt["params"]["w"]) and got.params["w"].dtype == torch.float32

    cfg = make_config()
    with RunStore(tmp_path / "store") as store:
        store.write_result(cfg, make_rows(), checkpoint=ckpt)
        raw = torch.load(store.checkpoint_path(run_id(cfg)), weights_only=True)
    assert type(raw) is dict and set(raw) == {"steps", "params"}  # not a pickled Checkpoint
    assert all(t.dtype == torch.float16 for t in raw["params"].values())
    assert store.checkpoint_path(run_id(cfg)).read_bytes() == new_bytes


def test_big_or_non_finite_parameters_are_not_compacted(tmp_path):
    """float16 holds at most 65,504: a tensor beyond that (or with an Inf/NaN) keeps float32, never clipped."""
    from grokking_theories.store.checkpoints import compact

    fits, big = torch.full((2, 3), 60_000.0), torch.full((2, 3), 70_000.0)  # 60,000 is exact in float16
    assert compact(fits).dtype == torch.float16 and compact(big).dtype == torch.float32
    assert compact(torch.tensor([[1.0, float("nan")]])).dtype == torch.float32
    ckpt = {"steps": torch.arange(2), "params": {"w": big, "b": fits}}
    with RunStore(tmp_path) as store:
        store.write_result(make_config(), make_rows(), checkpoint=ckpt)
        back = store.checkpoint(run_id(make_config()))
    assert torch.equal(back.params["w"], big) and torch.equal(back.params["b"], fits)


def test_index_lock_and_files_are_separate_modules(tmp_path):
    from grokking_theories.store import index, lock

    with RunStore(tmp_path) as store:
        assert isinstance(store._index, index.RunIndex) and store._index.path == store.index_path
        assert isinstance(store._lock, lock.WriterLock) and store._lock.path == store.lock_path
        assert store._lock.held and store._files.folder == store.checkpoint_dir
    assert not store._lock.held  # close releases it
    with pytest.raises(StoreError, match="is closed"):
        store.finished_ids()
    with RunStore(tmp_path, readonly=True) as reader:
        assert reader._lock is None


# ---------------------------------------------------------------- tidy table


def test_tidy_table_columns_dtypes_and_uniqueness(tmp_path):
    configs = [make_config(s) for s in range(3)]
    with RunStore(tmp_path) as store:
        store.register(configs)
        empty = store.metrics_table()
        for i, cfg in enumerate(configs[:2]):
            # rows given out of order: the table must come back sorted
            store.write_result(cfg, list(reversed(make_rows(i + 1.0))))
        table = store.metrics_table()
        only = store.metrics_table(run_ids=[run_id(configs[0])], metrics=["test_acc"])

    expected = ["run_id", "status"] + CONFIG_COLUMNS + ["step", "metric", "value"]
    for frame in (empty, table, only):
        assert list(frame.columns) == expected
        assert frame["step"].dtype == np.int64
        assert frame["value"].dtype == np.float64
        assert pd.api.types.is_string_dtype(frame["metric"])
        assert pd.api.types.is_string_dtype(frame["run_id"])
        assert frame["lr"].dtype == np.float64 and frame["p"].dtype == np.int64
        assert frame["fixed_norm"].dtype == np.float64  # all None -> NaN, not object
    assert empty.empty

    assert len(table) == 2 * len(make_rows())  # pending third run excluded
    assert not table.duplicated(["run_id", "step", "metric"]).any()
    resorted = table.sort_values(["run_id", "metric", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(table, resorted)
    assert (table.groupby("run_id")["seed"].nunique() == 1).all()
    assert set(table.status) == {"complete"}

    assert set(only.metric) == {"test_acc"} and set(only.run_id) == {run_id(configs[0])}
    assert only.step.tolist() == [0, 1, 10]
    assert only.value.tolist() == [2.0, 4.0, 22.0]


# ---------------------------------------------------------------- schema 3: attempt counts

# Version 2 exactly as it shipped (test_probe_stage's verbatim copy of version 1 plus the probe tables), kept here
# verbatim: a change to the shipped statements cannot slip past the migration test.
V2_STATEMENTS = (
    *V1_STATEMENTS,
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
    "CREATE INDEX probe_metrics_run_metric_step ON probe_metrics (run_id, metric, step)",
)


def build_v2_store(root: Path) -> tuple[RunConfig, RunConfig]:
    """A version-2 store written by hand: a finished run with a checkpoint and a probe row, and a pending run."""
    import json
    import sqlite3

    (root / "checkpoints").mkdir(parents=True)
    done, pending = make_config(0), make_config(1)
    blob = serialise_checkpoint(make_checkpoint(), run_id(done))
    (root / "checkpoints" / f"{run_id(done)}.pt").write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    conn = sqlite3.connect(root / "index.sqlite", isolation_level=None)
    for statement in V2_STATEMENTS:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO runs VALUES (?, ?, 'complete', ?, 1.5, 'cpu', ?, 0.0)",
                 (run_id(done), canonical_json(done), json.dumps({"t_grok": 10}), sha))
    conn.execute("INSERT INTO runs (run_id, config_json, status, updated) VALUES (?, ?, 'pending', 0.0)",
                 (run_id(pending), canonical_json(pending)))
    conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", [(run_id(done), s, m, v) for s, m, v in make_rows()])
    conn.execute("INSERT INTO probe_runs VALUES (?, 'p', 1, ?, 0.0)", (run_id(done), sha))
    conn.execute("INSERT INTO probe_metrics VALUES (?, 'p', 10, 'p_metric', 0.5)", (run_id(done),))
    conn.close()
    return done, pending


def test_v2_store_migrates_to_v3_keeping_every_row(tmp_path):
    import sqlite3

    root = tmp_path / "v2"
    done, pending = build_v2_store(root)
    with RunStore(root, readonly=True) as reader:  # read as it is: attempts were not counted, so 0
        assert reader.schema_version == reader.opened_version == 2
        before_metrics, before_runs = reader.metrics_table([run_id(done)]), reader.runs_table()
        before_probes = reader.probe_state()
        assert reader.attempts() == {run_id(done): 0, run_id(pending): 0}
    assert sqlite3.connect(root / "index.sqlite").execute("PRAGMA user_version").fetchone()[0] == 2  # untouched

    with RunStore(root) as store:  # a writer migrates, keeping every row
        assert store.opened_version == 2 and store.schema_version == 3
        pd.testing.assert_frame_equal(store.metrics_table([run_id(done)]), before_metrics)
        pd.testing.assert_frame_equal(store.runs_table(), before_runs)
        assert store.probe_state() == before_probes and "p_metric" in set(before_metrics.metric)
        store.checkpoint(run_id(done))  # still verifies
        assert store.attempts() == {run_id(done): 0, run_id(pending): 0}
        store.write_result(pending, make_rows(), checkpoint=make_checkpoint())
        assert store.attempts() == {run_id(done): 0, run_id(pending): 1}
    with RunStore(root, readonly=True) as reader:  # the migration is on disk
        assert reader.schema_version == 3 and reader.attempts([run_id(pending)]) == {run_id(pending): 1}
        with pytest.raises(StoreError, match="0000000000000000"):
            reader.attempts(["0" * 16])


def test_attempts_count_written_results_in_the_result_transaction(tmp_path, monkeypatch):
    """Every written result adds one attempt, in write_result's own transaction: a failed write adds none."""
    a, b = make_config(0), make_config(1)
    with RunStore(tmp_path) as store:
        store.register([a, b])
        assert store.attempts() == {run_id(a): 0, run_id(b): 0}
        store.write_result(a, make_rows(), status="failed")
        store.write_result(a, make_rows(2.0), checkpoint=make_checkpoint())  # the retry

        def crash():
            raise RuntimeError("simulated crash")

        monkeypatch.setattr(sqlite_store, "_now", crash)
        for cfg in (a, b):
            with pytest.raises(RuntimeError, match="simulated crash"):
                store.write_result(cfg, make_rows(3.0))
        monkeypatch.undo()
        store.register([a, b])  # registering again resets nothing
        assert store.attempts() == {run_id(a): 2, run_id(b): 0}
        with pytest.raises(ValueError, match="duplicate"):  # refused rows count nothing either
            store.write_result(b, make_rows() + [(0, "train_loss", 9.0)])
        assert store.attempts([run_id(b)]) == {run_id(b): 0}


# ---------------------------------------------------------------- faults: what the user is told


def test_empty_checkpoint_is_called_empty_and_every_damage_says_what_to_do(tmp_path):
    cfg = make_config()
    with RunStore(tmp_path) as store:
        store.write_result(cfg, make_rows(), checkpoint=make_checkpoint())
        path = store.checkpoint_path(run_id(cfg))
        for damage, words in ((lambda: path.write_bytes(b""), "is empty"), (path.unlink, "is missing")):
            damage()
            with pytest.raises(CorruptCheckpointError) as info:
                store.checkpoint(run_id(cfg))
            message = str(info.value)
            assert str(path) in message and words in message
            # the advice says how to get the parameters back: the study rerun that retrains this run
            assert f"--retrain {run_id(cfg)}" in message


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    """SIGKILL between the temp file and the rename leaves the temp file; the next write of that path removes it."""
    from grokking_theories.store.checkpoints import atomic_write

    target = tmp_path / "run.pt"
    dead = tmp_path / ".run.pt.abc123.tmp"  # what mkstemp named the killed writer's file
    other = tmp_path / ".other.pt.abc123.tmp"  # another path's: not this write's business
    dead.write_bytes(b"half")
    other.write_bytes(b"half")
    atomic_write(target, b"whole")
    assert target.read_bytes() == b"whole" and not dead.exists() and other.exists()


def test_a_write_error_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    from grokking_theories.store.checkpoints import atomic_write

    target = tmp_path / "run.pt"
    atomic_write(target, b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="disk is full") as info:
        atomic_write(target, b"new")
    assert str(target) in str(info.value)
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


def test_a_failed_rewrite_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    """Rewriting a run whose index transaction fails leaves its old parameters readable (two-phase replace)."""
    cfg = make_config()
    old = make_checkpoint()
    new = {"steps": old["steps"], "params": {n: t + 1.0 for n, t in old["params"].items()}}
    with RunStore(tmp_path) as store:
        store.write_result(cfg, make_rows(), checkpoint=old)

        def crash():
            raise RuntimeError("injected")
        monkeypatch.setattr(sqlite_store, "_now", crash)
        with pytest.raises(RuntimeError, match="injected"):
            store.write_result(cfg, make_rows(), checkpoint=new)
        monkeypatch.undo()
        back = store.checkpoint(run_id(cfg))
        assert torch.equal(back.params["w"], old["params"]["w"].half().float())
        assert not list((tmp_path / "checkpoints").glob("*.pending"))  # the staged file was dropped


def test_a_writer_killed_between_commit_and_rename_loses_nothing(tmp_path):
    """The index committed the new sha256 but the staged file was never renamed: readers read the staged file,
    and the next writer to open the store publishes it; a staged file without a commit is dropped."""
    cfg, other = make_config(), make_config(seed=1)
    old = make_checkpoint()
    new = {"steps": old["steps"], "params": {n: t + 1.0 for n, t in old["params"].items()}}
    with RunStore(tmp_path) as store:
        store.write_result(cfg, make_rows(), checkpoint=old)
        store.write_result(other, make_rows(), checkpoint=old)
        # what write_result does up to its commit, then "dies" before publish
        sha = store._files.stage(run_id(cfg), serialise_checkpoint(new, run_id(cfg)))
        store._index.write_result(run_id(cfg), canonical_json(cfg), status="complete",
                                  **dict(zip(("steps", "names", "values"), metric_columns(make_rows(), "r"))),
                                  summary_json=None, wall_time=None, device=None, checkpoint_sha256=sha)
        # and a staged file of a write whose commit never happened
        store._files.stage(run_id(other), serialise_checkpoint(new, run_id(other)))
    with RunStore(tmp_path, readonly=True) as reader:  # a reader finds the committed parameters already
        assert torch.equal(reader.checkpoint(run_id(cfg)).params["w"], new["params"]["w"].half().float())
    with RunStore(tmp_path) as store:  # a writer finishes the rename and drops the uncommitted file
        assert not list((tmp_path / "checkpoints").glob("*.pending"))
        assert torch.equal(store.checkpoint(run_id(cfg)).params["w"], new["params"]["w"].half().float())
        assert torch.equal(store.checkpoint(run_id(other)).params["w"], old["params"]["w"].half().float())


def test_an_interrupt_after_the_commit_keeps_the_committed_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C that lands after COMMIT, before write_result returns: the staged file is the run's checkpoint now,
    so it is published, not dropped."""
    from grokking_theories.store import index

    cfg = make_config()
    old = make_checkpoint()
    new = {"steps": old["steps"], "params": {n: t + 1.0 for n, t in old["params"].items()}}
    real = index.RunIndex.write_result

    def commit_then_interrupt(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise KeyboardInterrupt
    with RunStore(tmp_path) as store:
        store.write_result(cfg, make_rows(), checkpoint=old)
        monkeypatch.setattr(index.RunIndex, "write_result", commit_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            store.write_result(cfg, make_rows(), checkpoint=new)
        monkeypatch.undo()
        assert torch.equal(store.checkpoint(run_id(cfg)).params["w"], new["params"]["w"].half().float())
        assert not list((tmp_path / "checkpoints").glob("*.pending"))
