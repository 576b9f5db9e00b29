"""Command line: ``python -m grokking_theories.study NAME [options]``.

Trains the study's runs that the store does not hold yet, runs the probes
the study's families declare on the stored checkpoints (storing their rows;
only missing or out-of-date ones are computed), prints the run table,
evaluates the study's families and writes the comparison report; runs
censored at their budget are counted per arm (with the budget that would
resolve them) before the report's path is printed.
Heavy modules are imported inside functions so that ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .errors import GrokkingError

EPILOG = """examples:
  python -m grokking_theories.study omnigrok                 # quick scale, CPU, ./runs/omnigrok-quick
  python -m grokking_theories.study omnigrok --scale paper --device cuda
  python -m grokking_theories.study my_study.toml --workers 2
  python -m grokking_theories.study list
  python -m grokking_theories.study report --out runs/omnigrok-quick
"""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m grokking_theories.study",
        description="Train a study's runs (reusing finished ones from the run store) and report on them.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a study in studies/ (see 'list'), the path of a study .toml, "
                                     "'list', or 'report' (rebuild the report of --out without training)")
    parser.add_argument("--scale", default="quick", help="quick (2-core CPU, minutes) or paper (GPU); default quick")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder for the report and study record (default runs/NAME-SCALE)")
    parser.add_argument("--store", type=Path, default=None,
                        help="run store folder (default: runs/store, shared by every study run with the default "
                             "--out, so studies share runs; with --out given, OUT/store)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto")
    parser.add_argument("--workers", type=int, default=None,
                        help="training processes, one torch thread each (default: CPU count on cpu, 1 on cuda)")
    parser.add_argument("--ensemble-size", type=int, default=None,
                        help="most runs trained as one batched model (default: measured per architecture)")
    parser.add_argument("--executor", default="local", choices=["local", "dask"],
                        help="local: a process pool on this machine (default); dask: a Dask cluster, the one at "
                             "--scheduler or else a LocalCluster of --workers processes (pip install "
                             "'grokking_theories[dask]')")
    parser.add_argument("--tf32", action="store_true",
                        help="on cuda, allow TF32 matmuls (off by default: they round float32 matmul inputs to ~3 "
                             "digits; runs record device 'cuda+tf32')")
    parser.add_argument("--retrain", nargs="+", default=[], metavar="RUN_ID",
                        help="train these runs of the study again although they are finished (e.g. a run whose "
                             "checkpoint file was damaged); their old results are replaced")
    parser.add_argument("--dry-run", action="store_true",
                        help="print how many runs would train and the estimated wall time on this machine, then stop")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="address of a running Dask scheduler (e.g. tcp://10.0.0.5:8786), with --executor dask")
    return parser.parse_args(argv)


def resolve_device(name: str, tf32: bool = False) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``tf32`` adds ``+tf32`` on a GPU (never on a CPU)."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise GrokkingError("--device cuda was asked for, but torch sees no CUDA device (use --device cpu or auto)")
    if tf32 and name != "cuda":
        raise GrokkingError(f"--tf32 is a CUDA setting, but the device is {name}")
    return f"{name}+tf32" if tf32 else name


def list_studies() -> int:
    from .studies import available_studies
    import tomllib

    studies = available_studies()
    if not studies:
        print("no studies found")
        return 1
    for name, path in studies.items():
        data = tomllib.loads(path.read_text())
        scales = [s for s in ("quick", "paper") if s in data]
        if "include" in data:  # a study of studies: the scales every study it includes has
            scales = [s for s in ("quick", "paper") if _included_have_scale(path, data["include"], s)]
        print(f"{name:16s} [{', '.join(scales)}]  {data.get('description', '')}")
    return 0


def _included_have_scale(path, names, scale: str) -> bool:
    """Whether every study a composite study file includes has ``scale`` (False when one cannot be read)."""
    import tomllib

    from .errors import ConfigError
    from .studies import resolve_include

    if not isinstance(names, list):
        return False
    try:
        return all(scale in tomllib.loads(resolve_include(path, n).read_text()) for n in names)
    except (ConfigError, OSError, tomllib.TOMLDecodeError, AttributeError):
        return False


def train_missing(study, store, device: str, workers: int, ensemble_size: Optional[int], *,
                  executor: str = "local", scheduler: Optional[str] = None, retrain=()) -> dict:
    """Train every run of the study that the store has not finished, and the runs ``retrain`` names; return counts.

    ``executor`` / ``scheduler``: see :func:`grokking_theories.execution.make_executor`. ``retrain``: run ids of
    the study (:func:`check_retrain`) trained again although finished; each keeps its old result until the new
    one is written over it. The counts are
    ``runs``, ``reused``, ``trained`` (finished now) and ``failed``: ``{run_id: last line of the traceback}``
    of runs whose training raised (stored as ``'failed'`` with the whole traceback; the next run retries them).
    """
    from tqdm import tqdm
    from .execution import make_executor

    configs = study.configs
    store.register(configs)
    retrain = set(check_retrain(study, retrain))
    finished = store.finished_ids() - retrain
    todo = [c for c in configs if c.run_id not in finished]
    counts = {"runs": len(configs), "reused": len(configs) - len(todo), "trained": 0, "failed": {}}
    print(f"study {study.name} [{study.scale}]: {len(configs)} runs, {counts['reused']} already in the store, "
          f"{len(todo)} to train on {device}", flush=True)
    if not todo:
        return counts
    plan, estimate = plan_and_estimate(todo, device, workers, ensemble_size)
    workers = estimate.workers
    where = f"{workers} worker(s)" if scheduler is None else f"the Dask scheduler at {scheduler}"
    print(f"training {len(todo)} runs as {len(plan)} ensembles with {where}", flush=True)
    remote = "" if scheduler is None else f" (rates of this machine; the cluster at {scheduler} may be faster or slower)"
    print(estimate.text() + remote, flush=True)
    runner = make_executor(executor, workers=workers, scheduler=scheduler)
    # The bar counts model-steps (an ensemble step of K runs is K); a run that stops early after
    # grokking is topped up to its budget when its ensemble finishes, so the bar ends at its total.
    budgets = [sum(c.budget.max_steps for c in group) for group in plan]
    reported = [0] * len(plan)

    def on_progress(index: int, steps: int) -> None:
        done = min(steps * len(plan[index]), budgets[index] - reported[index])
        reported[index] += done
        bar.update(done)

    with tqdm(total=sum(budgets), unit="step", unit_scale=True, desc="training", dynamic_ncols=True) as bar:
        bar.set_postfix_str(f"runs 0/{len(todo)}")
        try:
            for index, results in runner.run(plan, device, on_progress):
                for r in results:
                    store.write_result(r.config, r.metrics, checkpoint=r.checkpoint, status=r.status,
                                       summary=r.summary, wall_time=r.wall_time, device=r.device)
                    if r.status == "failed":
                        counts["failed"][r.config.run_id] = r.error
                    else:
                        counts["trained"] += 1
                bar.update(budgets[index] - reported[index])
                reported[index] = budgets[index]
                failed = f", {len(counts['failed'])} failed" if counts["failed"] else ""
                bar.set_postfix_str(f"runs {counts['trained']}/{len(todo)}{failed}")
        except KeyboardInterrupt:
            bar.close()
            done = counts["trained"] + len(counts["failed"])
            print(f"\ninterrupted: {done} runs saved, {len(todo) - done} left; "
                  "rerun the same command to train only those", file=sys.stderr)
            raise
        finally:
            runner.close()
    return counts


def plan_and_estimate(todo, device: str, workers: int, ensemble_size: Optional[int]):
    """The ensembles ``todo`` trains as, and the estimated wall time on ``workers`` workers (measured step rates,
    cached per machine; :mod:`grokking_theories.execution.throughput`)."""
    from .execution import plan_ensembles
    from .execution.throughput import StepRates, estimate_training

    rates = StepRates(device)
    plan = plan_ensembles(todo, device, ensemble_size, rates=rates, workers=workers)
    return plan, estimate_training(plan, device, max(1, min(workers, len(plan))), rates)


def dry_run(args) -> int:
    """``--dry-run``: say what the study would train, and how long that would take here, then stop."""
    from .api import study_folders
    from .studies import load_study
    from .store import RunStore

    study = load_study(args.name, args.scale)
    _, store_dir = study_folders(study, args.out, args.store)
    finished = set()
    if (store_dir / "index.sqlite").exists():
        with RunStore(store_dir, readonly=True) as store:
            finished = store.finished_ids()
    todo = [c for c in study.configs if c.run_id not in finished]
    device = resolve_device(args.device)
    print(f"study {study.name} [{study.scale}]: {len(study.configs)} runs, {len(study.configs) - len(todo)} already "
          f"in {store_dir}, {len(todo)} to train on {device}")
    if todo:
        plan, estimate = plan_and_estimate(todo, device, default_workers(args.workers, device), args.ensemble_size)
        print(estimate.text())
    return 0


def default_workers(workers: Optional[int], device: str) -> int:
    """``--workers`` when given, else one per CPU core on a CPU and one on a GPU."""
    import os

    return workers or (1 if device.startswith("cuda") else (os.cpu_count() or 1))


def check_retrain(study, run_ids) -> list[str]:
    """``--retrain``'s run ids, each once; GrokkingError names one that is not a run of the study."""
    from .config import did_you_mean

    run_ids = [run_ids] if isinstance(run_ids, str) else list(dict.fromkeys(run_ids))
    configs = {c.run_id for c in study.configs}
    unknown = [rid for rid in run_ids if rid not in configs]
    if unknown:
        raise GrokkingError(f"--retrain {unknown[0]!r} is not a run of study {study.name} [{study.scale}]"
                            f"{did_you_mean(unknown[0], configs)}")
    return run_ids


def failed_runs_message(failed: dict, store_dir) -> str:
    """What the CLI prints (to stderr) when runs failed: each run and its error, and where the tracebacks are."""
    lines = [f"{len(failed)} run(s) failed (stored as 'failed' with their tracebacks; rerunning the study "
             f"retries them):"]
    lines += [f"  {rid}: {error}" for rid, error in sorted(failed.items())]
    lines.append(f"  tracebacks: RunStore({str(store_dir)!r}, readonly=True).runs_table()['summary_error']")
    return "\n".join(lines)


def run_table(study, store):
    """One row per run of the study: what varies, seed, status and the grokking summary (as in the report)."""
    import pandas as pd
    from .report.collect import run_table_records

    _, columns, records = run_table_records(study, store.runs_table())
    return pd.DataFrame(records, columns=columns).drop(columns=["wall_time", "device"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.name == "list":
            return list_studies()
        if args.name == "report":
            return rebuild_report(args)
        if args.dry_run:
            return dry_run(args)
        return run_study(args)
    except GrokkingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run_study(args) -> int:
    """The CLI's study command: a thin layer over :func:`grokking_theories.api.run_study`."""
    from .api import run_study as run

    results = run(args.name, args.scale, out=args.out, store=args.store, device=args.device,
                  workers=args.workers, ensemble_size=args.ensemble_size, executor=args.executor,
                  scheduler=args.scheduler, tf32=args.tf32, retrain=args.retrain)
    if results.failed:
        print(failed_runs_message(results.failed, results.store_dir), file=sys.stderr)
        return 1
    return 0


def print_run_table(study, store) -> None:
    """Print the run table (one row per run: what varies, seed, t_fit, t_grok, final accuracy and norm)."""
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.width", 200):
        print(run_table(study, store).to_string(index=False))


def study_probes(study) -> list:
    """The probes the study's families declare (``Family.probes``), each once."""
    from .probes.stage import family_probes
    from .theories import get_family

    return family_probes([get_family(n) for n in study.families])


def probe_study(study, store, *, progress: bool = True, workers: int = 1):
    """Run the declared probes on the study's finished runs (a writer store) with ``workers`` processes; print
    and return the counts.

    Prints ``probes: N computed, M reused, K runs without checkpoints``; None when no family declares a probe.
    """
    from .probes.stage import run_probes

    probes = study_probes(study)
    if not probes:
        print("probes: none declared by the study's families", flush=True)
        return None
    ids = sorted(store.finished_ids() & {c.run_id for c in study.configs})
    counts = run_probes(store, ids, probes, progress=progress, workers=workers)
    print(f"{counts.summary()} [{', '.join(p.name for p in probes)}, {len(ids)} finished runs]", flush=True)
    if counts.runs_without_checkpoint:
        shown = ", ".join(counts.runs_without_checkpoint[:5])
        more = f" and {len(counts.runs_without_checkpoint) - 5} more" if len(counts.runs_without_checkpoint) > 5 else ""
        print(f"  runs without checkpoints (no probe rows; predictions reading probes leave them out): "
              f"{shown}{more}", flush=True)
    return counts


def write_report(study, store, out: Path, *, table=None):
    """Evaluate the study's families on its runs, write report.html / report.json and return the ReportData.

    Runs censored at their budget are counted per arm (with the budget that
    would resolve them) before the report's path, as at the top of the report.
    ``table``: the study's tidy table when the caller already has it (else read from the store).
    """
    from .report import collect_report_data, write_report_files

    print("evaluating predictions and writing the report ...", flush=True)
    data = collect_report_data(study, store, table=table)
    html, js = write_report_files(data, out)
    if data.censoring is not None and data.censoring.any:
        print("\n".join(data.censoring.lines()))
    print(f"report: {html}\n        {js}")
    return data


def rebuild_report(args) -> int:
    """``report --out DIR``: rebuild DIR's report from the store, training nothing.

    The store is opened read-only unless rows of the probes the study's families declare are
    missing or out of date; then a writer computes and stores them first (and migrates a store of
    an older schema). If another driver holds the store's write lock, the report is built from
    what is stored and a warning names the missing probe rows.
    """
    import warnings

    from .errors import StoreLockedError
    from .probes.stage import ProbeRowsMissingWarning, missing_probes_message, pending_probes
    from .studies import load_study
    from .store import RunStore

    if args.out is None:
        raise GrokkingError("report needs --out DIR, the output folder of an earlier study run")
    record_path = args.out / "study.json"
    if not record_path.is_file():
        raise GrokkingError(f"{record_path} not found: --out must be a folder a study wrote")
    try:
        record = json.loads(record_path.read_text())
        study_path, scale = record["path"], record["scale"]
    except (ValueError, KeyError) as exc:
        raise GrokkingError(f"{record_path} is corrupt ({exc}); rerun the study to rewrite it") from None
    study = load_study(study_path, scale)
    store_dir = args.store or Path(record.get("store", args.out / "store"))
    probes = study_probes(study)
    # Read-only first: a report whose probe rows are all stored writes nothing into the store.
    with RunStore(store_dir, readonly=True) as store:
        finished = store.finished_ids()
        missing = [c.run_id for c in study.configs if c.run_id not in finished]
        if missing:
            print(f"warning: {len(missing)} runs of the study are not finished in {store_dir}; "
                  "the report covers the finished ones", file=sys.stderr)
        ids = sorted(finished & {c.run_id for c in study.configs})
        pending = pending_probes(store, ids, probes) if probes and ids else {}
        if not pending:
            write_report(study, store, args.out)
            return 0
    # Some probe rows are missing or out of date: compute and store them with a writer (this also
    # migrates a store of an older schema). If another driver holds the store, say what is missing.
    try:
        writer = RunStore(store_dir)
    except StoreLockedError as exc:
        with RunStore(store_dir, readonly=True) as store:
            print(f"warning: {exc}; the missing probe rows cannot be computed now. "
                  f"{missing_probes_message(store, pending, len(ids))}", file=sys.stderr)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ProbeRowsMissingWarning)  # said just above
                write_report(study, store, args.out)
        return 0
    with writer as store:
        probe_study(study, store)
        write_report(study, store, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
