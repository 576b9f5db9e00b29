"""Disk use of each study's runs: one fresh store per study, copied from a store that holds them all.

    python -m grokking_theories.study all --out runs/all-quick        # trains every quick run once
    python benchmarks/store_sizes.py runs/all-quick/store --scale quick --out /tmp/store-sizes

For every study included in ``all`` (and ``all`` itself), the study's finished runs are copied into a
new store (logged metric rows, status, summary, wall time, device and checkpoint, written through
``RunStore.write_result``, so checkpoints are stored as the current code stores them: float16 where they
fit), their probe rows are computed as the study would, and the store's size on disk is printed: the
index (SQLite, after a checkpoint of its write-ahead log) and the checkpoint files. This is the size a
study's own store reaches when it is run alone (``--out`` of its own) at that scale.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
from pathlib import Path


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def copy_runs(source, target, run_ids) -> None:
    """Write ``run_ids``' results from the ``source`` store into the ``target`` store (probe rows not copied)."""
    for rid in run_ids:
        config = source.config(rid)
        rows = source.metrics_table(run_ids=[rid], probes=False)[["step", "metric", "value"]]
        summary, wall, device, status = _run_record(source, rid)
        checkpoint = source.checkpoint(rid) if source.checkpoint_shas([rid])[rid] is not None else None
        target.write_result(config, rows, checkpoint=checkpoint, status=status, summary=summary,
                            wall_time=wall, device=device)


def _run_record(store, rid: str):
    """(summary dict, wall time, device, status) of a stored run, as written."""
    with sqlite3.connect(f"file:{store.index_path}?mode=ro", uri=True) as conn:
        summary, wall, device, status = conn.execute(
            "SELECT summary_json, wall_time, device, status FROM runs WHERE run_id = ?", (rid,)).fetchone()
    return (json.loads(summary) if summary else None), wall, device, status


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="a store holding every run of the studies (e.g. study all's)")
    parser.add_argument("--scale", default="quick")
    parser.add_argument("--out", type=Path, required=True, help="scratch folder for the per-study stores")
    args = parser.parse_args(argv)

    import torch

    from grokking_theories.probes.stage import run_probes
    from grokking_theories.store import RunStore
    from grokking_theories.studies import load_study
    from grokking_theories.study import study_probes

    torch.set_num_threads(1)
    everything = load_study("all", args.scale)
    names = list(everything.members) + ["all"]
    print(f"{'study':16s} {'runs':>5s} {'index':>10s} {'checkpoints':>12s} {'total':>10s}")
    with RunStore(args.store, readonly=True) as source:
        finished = source.finished_ids()
        for name in names:
            study = load_study(name, args.scale)
            ids = sorted({c.run_id for c in study.configs} & finished)
            folder = args.out / name / "store"
            shutil.rmtree(folder, ignore_errors=True)
            with RunStore(folder) as target:
                copy_runs(source, target, ids)
                probes = study_probes(study)
                if probes:
                    run_probes(target, ids, probes, progress=False)
            with sqlite3.connect(folder / "index.sqlite") as conn:  # fold the write-ahead log into the file
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            index = sum(f.stat().st_size for f in folder.glob("index.sqlite*"))
            ckpts = folder_bytes(folder / "checkpoints")
            print(f"{name:16s} {len(ids):5d} {index / 2**20:8.1f} MB {ckpts / 2**20:10.1f} MB "
                  f"{(index + ckpts) / 2**20:8.1f} MB", flush=True)


if __name__ == "__main__":
    main()
