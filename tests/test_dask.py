"""The Dask executor on a real LocalCluster (loopback): same rows as the local pool, streaming, lost workers.

One two-worker cluster is shared by the module (it stands in for a remote scheduler: tests reach it by
address); the end-to-end test also lets the executor start and stop a LocalCluster of its own.
"""
import json
import os
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from grokking_theories.study import main  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # study_helpers and test_study; worker processes inherit sys.path

import study_helpers  # noqa: E402
from test_study import write_study  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two one-thread worker processes on loopback; GT_TEST_MARKER is set before they start (they inherit it)."""
    from distributed import Client, LocalCluster

    marker = tmp_path_factory.mktemp("dask") / "marker"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GT_TEST_MARKER", str(marker))
        mp.setenv("PYTHONPATH", str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as local, Client(local, set_as_default=False) as client:
            client.wait_for_workers(2)
            client.run(__import__, "torch")  # warm: the first task of a worker imports torch
            yield local, client, marker


@pytest.fixture
def tiny_families(monkeypatch):
    import grokking_theories.theories as theories
    from test_study import tiny_family

    fam = tiny_family()
    monkeypatch.setattr(theories, "get_family", lambda name: fam)
    return fam


def _rows(store_dir):
    """The store's metric rows in a canonical order (the executors finish groups in different orders) and statuses."""
    from grokking_theories.store import RunStore

    with RunStore(store_dir, readonly=True) as store:
        table = store.metrics_table(probes=False)
        statuses = dict(store.runs_table()[["run_id", "status"]].itertuples(index=False))
    keys = ["run_id", "step", "metric"]
    return table.sort_values(keys, kind="stable").reset_index(drop=True), statuses


def test_dask_study_stores_the_same_rows_as_the_local_pool(tmp_path, tiny_families):
    import pandas as pd

    path = write_study(tmp_path)
    assert main([str(path), "--out", str(tmp_path / "local"), "--workers", "2"]) == 0
    assert main([str(path), "--out", str(tmp_path / "dask"), "--workers", "2", "--executor", "dask"]) == 0
    local_rows, local_status = _rows(tmp_path / "local" / "store")
    dask_rows, dask_status = _rows(tmp_path / "dask" / "store")
    assert len(local_status) == 8 and set(local_status.values()) == {"complete"}
    assert dask_status == local_status
    assert len(dask_rows) > 0
    pd.testing.assert_frame_equal(dask_rows, local_rows, check_exact=True)
    assert json.loads((tmp_path / "dask" / "study.json").read_text())["trained"] == 8


def test_results_stream_back_as_they_finish(cluster, tiny_cfg):
    from grokking_theories.execution.dask_executor import DaskExecutor

    long, short = [tiny_cfg(seed=0, max_steps=3000)], [tiny_cfg(seed=1, max_steps=20)]
    events = []
    ex = DaskExecutor(scheduler=cluster[0].scheduler_address)
    start = time.monotonic()
    try:
        for index, results in ex.run([long, short], "cpu", lambda i, n: events.append(("steps", i, n))):
            events.append(("done", index, [r.status for r in results]))
    finally:
        ex.close()
    elapsed = time.monotonic() - start
    done = [e for e in events if e[0] == "done"]
    assert done == [("done", 1, ["complete"]), ("done", 0, ["complete"])]  # the short group first
    # the long group's steps reached the driver while it trained, throttled to 2 messages a second
    steps_of_long = [k for k, e in enumerate(events) if e[:2] == ("steps", 0)]
    assert steps_of_long and steps_of_long[0] < events.index(done[1])
    assert len(steps_of_long) <= 2 * elapsed + 1
    assert sum(e[2] for e in events if e[:2] == ("steps", 0)) <= 3000


def test_study_on_a_running_scheduler_leaves_it_running(cluster, tmp_path, tiny_families, capsys):
    local, client, _ = cluster
    path = write_study(tmp_path, max_steps=20)
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out), "--executor", "dask", "--scheduler", local.scheduler_address]) == 0
    assert f"the Dask scheduler at {local.scheduler_address}" in capsys.readouterr().out
    _, statuses = _rows(out / "store")
    assert len(statuses) == 8 and set(statuses.values()) == {"complete"}
    assert len(client.nthreads()) == 2  # only the study's own client was closed


def test_a_worker_killed_mid_run_is_replaced_and_every_run_comes_back_once(cluster, tiny_cfg):
    """Runs last in the module: the killed worker's nanny restarts it in the background."""
    from grokking_theories.execution import train_group
    from grokking_theories.execution.dask_executor import DaskExecutor

    local, _, marker = cluster
    groups = [[tiny_cfg(seed=0, max_steps=200)], [tiny_cfg(seed=1, max_steps=200)]]
    ex = DaskExecutor(scheduler=local.scheduler_address, fn=study_helpers.die_mid_run_once_then_train)
    try:
        out = list(ex.run(groups, "cpu", lambda i, n: None))
    finally:
        ex.close()
    assert marker.read_text() == "died"  # one worker did die, at its first step
    assert sorted(i for i, _ in out) == [0, 1]
    results = {r.config.seed: r for _, batch in out for r in batch}
    assert sorted(results) == [0, 1] and {r.status for r in results.values()} == {"complete"}
    # the lost group was trained again from scratch: the same rows as training it here
    for seed, group in enumerate(groups):
        assert results[seed].metrics == train_group(group, "cpu")[0].metrics


def test_a_group_that_kills_every_worker_stops_with_a_resume_message(tmp_path, monkeypatch, tiny_cfg):
    """allowed_failures=0: the first lost worker ends the task (KilledWorker), reported as a RuntimeError."""
    from grokking_theories.execution.dask_executor import DaskExecutor

    monkeypatch.setenv("GT_TEST_MARKER", str(tmp_path / "marker"))  # before the executor starts its cluster
    ex = DaskExecutor(workers=1, fn=study_helpers.die_mid_run_once_then_train, allowed_failures=0)
    try:
        with pytest.raises(RuntimeError, match=r"workers died 1 times while training ensemble 0; 1 ensembles left "
                                               r"untrained \(finished runs are saved; rerun to resume\)"):
            list(ex.run([[tiny_cfg(seed=0)]], "cpu"))
    finally:
        ex.close()


@pytest.mark.parametrize("address, needle", [
    ("tcp://127.0.0.1:1", "could not connect to the Dask scheduler at tcp://127.0.0.1:1 within 1 s"),
    ("nonsense", "--scheduler 'nonsense' is not a Dask scheduler address"),
])
def test_a_bad_scheduler_address_is_exit_code_2_naming_it(tmp_path, monkeypatch, capsys, address, needle):
    from grokking_theories.execution import dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT", 1.0)
    start = time.monotonic()
    code = main([str(write_study(tmp_path)), "--out", str(tmp_path / "o"), "--executor", "dask",
                 "--scheduler", address])
    assert code == 2
    assert needle in capsys.readouterr().err
    assert time.monotonic() - start < 20


def test_scheduler_without_the_dask_executor_is_exit_code_2(tmp_path, capsys):
    code = main([str(write_study(tmp_path)), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:8786"])
    assert code == 2
    assert "--scheduler is an address of a Dask scheduler: it needs --executor dask" in capsys.readouterr().err


def test_without_dask_installed_the_error_says_what_to_install(monkeypatch):
    from grokking_theories.errors import ConfigError
    from grokking_theories.execution.dask_executor import DaskExecutor

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'grokking_theories\[dask\]'"):
        DaskExecutor()
