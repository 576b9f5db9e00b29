"""Calibration and power of every shipped rule, on planted tables of the shipped designs.

    python benchmarks/calibration.py [--draws 500] [--json] [--only W1,G2] [--scale quick|paper]
                                     [--workers 2] [--seed 0] [--strict]

For every shipped study (``studies/*.toml``) and scale, and every prediction of
the study's families, the rule is run on ``--draws`` planted tables per
scenario (:func:`grokking_theories.theories.calibration.calibrate`): the
predicted effect absent (``null``), the paper's effect (``effect``) and the
same effect reversed (``opposite``), each table drawn on the study's own run
configs at that scale (its seeds, levels and budgets). The table printed gives,
per rule, the rate of false 'supported', of false 'contradicted' and the power,
each with its exact (Clopper-Pearson) 95 % interval, and whether the rule meets
the targets of :mod:`grokking_theories.theories.calibration` (false rates <= 5 %,
power >= 80 %).

A prediction is calibrated once per scale, on its family's *primary* study
(``Family.study``), even when several studies include the family. A prediction
without a :class:`~grokking_theories.stats.Calibration` is listed as "not
calibrated", never skipped silently. Rules run in parallel, one process per
rule (``--workers``, one torch/BLAS thread each); a progress bar goes to
stderr. ``--json`` prints one object per prediction instead of the table.
``--strict`` exits 1 when a rule fails its targets, is not calibrated or
fails to run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence

#: Thread variables set to 1 in every worker (before numpy is imported there).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
SCALES = ("quick", "paper")


# ---------------------------------------------------------------------- what to calibrate (patched by the tests)


def shipped_studies() -> dict:
    """Study name -> path of every shipped study file."""
    from grokking_theories.studies import available_studies

    return available_studies()


def family_by_name(name: str):
    """The registered family called ``name``."""
    from grokking_theories.theories import get_family

    return get_family(name)


def load_study_scale(path, scale: str):
    """The study at ``scale``, or None when its file declares no such scale."""
    import tomllib

    from grokking_theories.studies import load_study

    with open(path, "rb") as fh:
        if scale not in tomllib.load(fh):
            return None
    return load_study(str(path), scale)


# ---------------------------------------------------------------------- the plan


@dataclass
class Entry:
    """One row of the output: a prediction at a scale, calibrated or not."""

    prediction: str
    family: str
    study: str
    scale: str
    seeds: Optional[int] = None
    runs: Optional[int] = None
    reason: str = ""  # why it is not calibrated (empty: it is)
    payload: Any = None  # what the worker needs (calibrated entries only)
    result: Any = None  # CalibrationResult, once run
    error: str = ""  # the rule raised while being calibrated

    @property
    def calibrated(self) -> bool:
        return not self.reason

    def to_dict(self) -> dict:
        base = {"prediction": self.prediction, "family": self.family, "study": self.study, "scale": self.scale,
                "seeds": self.seeds, "runs": self.runs, "calibrated": self.calibrated and not self.error}
        if self.result is not None:
            return {**self.result.to_dict(), **base}
        none = {k: None for k in ("draws", "effect", "false_supported", "false_contradicted", "power",
                                  "power_to_contradict", "passes", "false_supported_ci", "false_contradicted_ci",
                                  "power_ci")}
        return {**none, **base, "reason": self.reason or f"failed to run: {self.error}"}


def plan(scales: Sequence[str], only: Optional[set], draws: int, seed: int) -> list[Entry]:
    """Every prediction of every shipped study's families, once per scale, on its primary study."""
    import pickle

    entries: list[Entry] = []
    for scale in scales:
        covered: set[str] = set()  # families calibrated at this scale
        named: dict[str, tuple] = {}  # family name -> (family, a study that names it)
        for sname, path in shipped_studies().items():
            study = load_study_scale(path, scale)
            if study is None:
                continue
            for fname in study.families:
                family = family_by_name(fname)
                named.setdefault(family.name, (family, sname))
                if family.study != sname or family.name in covered:
                    continue  # calibrated on its primary study only
                covered.add(family.name)
                seeds = len({c.seed for c in study.configs})
                for pred in family.predictions:
                    if only is not None and pred.id not in only:
                        continue
                    entry = Entry(pred.id, family.name, sname, scale, seeds, len(study.configs))
                    if pred.calibration is None:
                        entry.reason = "not calibrated: the prediction ships no Calibration planter"
                    else:
                        try:  # the prediction itself travels when it pickles; else the worker looks it up
                            pickle.dumps(pred)
                            target = pred
                        except Exception:
                            target = (family.name, pred.id)
                        run_seed = (seed * 1_000_003 + zlib.crc32(f"{pred.id}:{scale}".encode())) % 2**32
                        entry.payload = {"prediction": target, "configs": list(study.configs), "draws": draws,
                                         "seed": run_seed, "scale": scale}
                    entries.append(entry)
        shipped = shipped_studies()
        for fname, (family, sname) in named.items():
            if fname in covered:
                continue
            if not family.study:
                why = "not calibrated: the family names no primary study"
            elif family.study not in shipped:
                why = f"not calibrated: its primary study {family.study!r} is not shipped"
            elif load_study_scale(shipped[family.study], scale) is None:
                why = f"not calibrated: its primary study {family.study!r} has no {scale} scale"
            else:
                why = f"not calibrated: its primary study {family.study!r} does not list the family"
            entries.extend(Entry(p.id, family.name, family.study or sname, scale, reason=why)
                           for p in family.predictions if only is None or p.id in only)
    return entries


# ---------------------------------------------------------------------- running


def _init_worker() -> None:
    for var in THREAD_VARS:
        os.environ[var] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_job(payload: dict):
    """Calibrate one rule (in a worker process): a CalibrationResult."""
    _init_worker()
    from grokking_theories.theories.calibration import calibrate

    pred = payload["prediction"]
    if isinstance(pred, tuple):
        fname, pid = pred
        pred = next(p for p in family_by_name(fname).predictions if p.id == pid)
    return calibrate(pred, payload["configs"], draws=payload["draws"], seed=payload["seed"],
                     scale=payload["scale"])


def run(entries: list[Entry], workers: int) -> None:
    """Fill each calibrated entry's result (or error), in parallel when ``workers > 1``."""
    from tqdm import tqdm

    todo = [e for e in entries if e.payload is not None]
    bar = tqdm(total=len(todo), desc="calibrating", unit="rule", file=sys.stderr, dynamic_ncols=True)
    try:
        if workers <= 1 or len(todo) <= 1:
            _init_worker()
            for e in todo:
                bar.set_postfix_str(f"{e.prediction} [{e.scale}]")
                try:
                    e.result = run_job(e.payload)
                except Exception as exc:  # one broken rule must not lose the others' results
                    e.error = f"{type(exc).__name__}: {exc}"
                bar.update(1)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        for var in THREAD_VARS:  # inherited by the spawned workers before they import numpy
            os.environ.setdefault(var, "1")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), initializer=_init_worker,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_job, e.payload): e for e in todo}
            for fut in as_completed(futures):
                e = futures[fut]
                try:
                    e.result = fut.result()
                except Exception as exc:
                    e.error = f"{type(exc).__name__}: {exc}"
                bar.set_postfix_str(f"{e.prediction} [{e.scale}]")
                bar.update(1)
    finally:
        bar.close()


# ---------------------------------------------------------------------- output


def _cell(rate: float, ci) -> str:
    return f"{100 * rate:5.1f}% [{100 * ci[0]:4.1f}, {100 * ci[1]:5.1f}]"


def table_text(entries: list[Entry], draws: int) -> str:
    from grokking_theories.theories.calibration import MAX_FALSE_RATE, MIN_POWER

    head = (f"calibration of the shipped rules: {draws} planted tables per scenario (null, effect, opposite) "
            f"on each study's own run configs\ntargets: false supported <= {100 * MAX_FALSE_RATE:g} %, false "
            f"contradicted <= {100 * MAX_FALSE_RATE:g} %, power >= {100 * MIN_POWER:g} % (exact binomial 95 % "
            f"intervals)")
    cols = (f"{'pred':<6}{'scale':<7}{'study':<14}{'seeds':>5}{'draws':>6}  {'false supported':<23}"
            f"{'false contradicted':<23}{'power':<23}result")
    lines = [head, "", cols, "-" * len(cols)]
    effects = []
    for e in entries:
        left = f"{e.prediction:<6}{e.scale:<7}{e.study[:13]:<14}"
        if e.result is not None:
            d = e.result.to_dict()
            lines.append(f"{left}{e.seeds:>5}{d['draws']:>6}  {_cell(d['false_supported'], d['false_supported_ci']):<23}"
                         f"{_cell(d['false_contradicted'], d['false_contradicted_ci']):<23}"
                         f"{_cell(d['power'], d['power_ci']):<23}{'pass' if d['passes'] else 'FAIL'}")
            effects.append(f"  {e.prediction} [{e.scale}]: {d['effect']}")
        else:
            seeds = "-" if e.seeds is None else str(e.seeds)
            why = e.reason or f"failed to run: {e.error}"
            lines.append(f"{left}{seeds:>5}{'-':>6}  {why}")
    lines.append("-" * len(cols))
    n_cal = sum(e.result is not None for e in entries)
    n_pass = sum(e.result is not None and e.result.passes for e in entries)
    lines.append(f"{n_pass} of {n_cal} calibrated rules meet the targets; "
                 f"{sum(1 for e in entries if e.reason)} not calibrated; {sum(1 for e in entries if e.error)} "
                 f"failed to run")
    if effects:
        lines += ["", "planted effects:", *effects]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/calibration.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=500, help="planted tables per scenario (default 500)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    parser.add_argument("--only", default=None, help="comma-separated prediction ids, e.g. W1,G2")
    parser.add_argument("--scale", choices=SCALES, default=None, help="one scale (default: every scale)")
    parser.add_argument("--workers", type=int, default=2, help="processes, one thread each (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the planted draws (default 0)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a rule fails its targets, is not calibrated or fails to run")
    args = parser.parse_args(argv)
    if args.draws < 1:
        parser.error("--draws must be >= 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    only = None if args.only is None else {s.strip() for s in args.only.split(",") if s.strip()}
    scales = [args.scale] if args.scale else list(SCALES)
    entries = plan(scales, only, args.draws, args.seed)
    if only is not None:
        unknown = sorted(only - {e.prediction for e in entries})
        if unknown:
            print(f"error: --only names prediction(s) no shipped study has: {', '.join(unknown)}", file=sys.stderr)
            return 2
    run(entries, args.workers)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, allow_nan=False))
    else:
        print(table_text(entries, args.draws))
    bad = any(e.reason or e.error or (e.result is not None and not e.result.passes) for e in entries)
    return 1 if args.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
