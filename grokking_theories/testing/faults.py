"""The fault-injection suite: break a study on purpose and check that no finished run is lost.

Researchers leave sweeps running for hours; a laptop sleeps, a cluster job is
killed, a disk fills up, a file gets damaged in a copy. Whatever happens, a run
that finished must stay finished (never trained again, never half-written), and
whatever cannot be used must be reported with the file at fault and what to do.
This module states those guarantees as named scenarios, like scikit-learn's
estimator checks: :data:`FAULT_SCENARIOS` is a tuple of module-level functions
``fault_<name>(workdir) -> FaultOutcome``. Each one injects one kind of fault
into a tiny study or store written under ``workdir``, checks what survived,
and returns a :class:`FaultOutcome` (what was tried, what was lost, what the
user sees); a broken guarantee raises :class:`FaultCheckError` naming it.
``tests/test_faults.py`` runs every scenario as its own pytest id;
``python benchmarks/faults.py`` prints them as the table of ``docs/faults.md``.

No fault hook lives in production code. Kills inside the store are placed by
:func:`launch`, a launcher that patches one function of the package (a rename,
the clock read inside a transaction, ...) to SIGKILL its own process at its
N-th call and then runs the study command's ``main``; failures (a full disk, a
raising config) are patched in the same way, in this process, for the length
of a ``with`` block.

Heavy modules (torch, pandas) are imported inside the functions, so the
launcher starts the study exactly as ``python -m grokking_theories.study`` would.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence
from unittest import mock

__all__ = ["FAULT_SCENARIOS", "KILLS", "KILL_POINTS", "VOLATILE_REPORT_FIELDS", "FaultCheckError", "FaultOutcome",
           "RunState", "check_store", "launch", "markdown_table", "run_scenario", "scenario_name", "store_state",
           "tiny_run", "write_tiny_study"]


# ---------------------------------------------------------------------- what a scenario returns


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultOutcome:
    """What one fault scenario did and found: one row of the fault table.

    Attributes
    ----------
    scenario : str
        The scenario's name (its function's name without ``fault_``).
    tried : str
        What was injected, in one line.
    lost : str
        What was lost: ``"nothing"``, or what had to be redone (never a finished run).
    outcome : str
        What the user sees: the exit status and the message's gist, quoted from the real message.
    ok : bool
        Whether every guarantee held (a scenario that returns has ``ok=True``; :func:`run_scenario`
        turns a :class:`FaultCheckError` into an outcome with ``ok=False``).
    counts : mapping of str to number
        What was counted on the way (kills, runs, attempts, rows, ...).
    details : tuple of str
        One line per step, for the notes under the table (each kill of the SIGKILL scenario, say).
    """

    scenario: str
    tried: str
    lost: str
    outcome: str
    ok: bool
    counts: Mapping[str, float] = dataclasses.field(default_factory=dict)
    details: tuple = ()


class FaultCheckError(AssertionError):
    """A fault broke a guarantee; the message names the guarantee and what was found instead."""


def _require(ok: bool, guarantee: str, found: str = "") -> None:
    if not ok:
        raise FaultCheckError(f"{guarantee}" + (f": {found}" if found else ""))


# ---------------------------------------------------------------------- tiny runs and studies

#: The base of every run the scenarios train: a+b mod 11, an embedding MLP of width 16; 40 steps take a few
#: hundredths of a second on one core.
TINY_RUN = dict(op="add", p=11, train_frac=0.5, arch="mlp", width=16, lr=1e-2, weight_decay=1.0, max_steps=40,
                stop_after_grok=None, log_points=10, log_every=10, checkpoints=4)

#: The study every study-level scenario runs (``STEPS`` is filled in). Four seeds x two weight decays: eight
#: runs, trained as four ensembles of two (``--ensemble-size 2``), so that kills can land between ensembles and
#: inside one. Family ``sharpness`` because it is a shipped family that declares a probe (``flips``): the probe
#: stage then writes into the store, and a kill can land there too. At this size its predictions are
#: inconclusive; the report is still a complete report.
TINY_STUDY = """\
description = "fault suite: a tiny study (a+b mod 11, an MLP of width 16, 8 runs)"
families = ["sharpness"]

[quick]
seeds = [0, 1, 2, 3]
base = { op = "add", p = 11, train_frac = 0.5, arch = "mlp", width = 16, lr = 1e-2, weight_decay = 1.0, \
max_steps = STEPS, stop_after_grok = "none", log_points = 10, log_every = 10, checkpoints = 4 }

[[quick.arms]]
name = "wd"
grid = { weight_decay = [0.0, 1.0] }
"""

#: Steps per run of the SIGKILL scenario's study: long enough (about half a second per ensemble of two on one
#: core) for a kill to land inside an ensemble's training.
KILL_STUDY_STEPS = 1000
#: Steps per run of the other study-level scenarios (they need finished runs, not long ones).
SHORT_STUDY_STEPS = 200
#: Seconds one study process may take before the scenario gives up on it.
PROCESS_TIMEOUT = 240.0


def tiny_run(**overrides):
    """A :class:`~grokking_theories.config.RunConfig` of :data:`TINY_RUN` with ``overrides`` (seed, lr, ...)."""
    from ..config import make_run_config

    return make_run_config({**TINY_RUN, **overrides})


def write_tiny_study(folder: Path, steps: int = SHORT_STUDY_STEPS) -> Path:
    """Write :data:`TINY_STUDY` with ``steps`` per run as ``folder/tiny.toml``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.toml"
    path.write_text(TINY_STUDY.replace("STEPS", str(int(steps))))
    return path


def _study_argv(toml: Path, out: Path) -> list[str]:
    """The study command's arguments: one worker (training in the driver's process), ensembles of two."""
    return [str(toml), "--out", str(out), "--workers", "1", "--ensemble-size", "2", "--device", "cpu"]


def _write_results(store, results) -> None:
    """Store RunResults as the study driver does."""
    for r in results:
        store.write_result(r.config, r.metrics, checkpoint=r.checkpoint, status=r.status, summary=r.summary,
                           wall_time=r.wall_time, device=r.device)


def _store_with_runs(root: Path, n: int = 3) -> list:
    """A store at ``root`` holding ``n`` finished tiny runs (trained as one ensemble); their configs."""
    from ..store import RunStore
    from ..training import train_ensemble

    configs = [tiny_run(seed=s) for s in range(n)]
    with RunStore(root) as store:
        store.register(configs)
        _write_results(store, train_ensemble(configs))
    return configs


# ---------------------------------------------------------------------- what a store holds, and its invariants


@dataclasses.dataclass(frozen=True)
class RunState:
    """Everything the store holds about one run, reduced to what must never change once it finished."""

    status: str
    attempts: int
    checkpoint_sha256: Optional[str]
    rows_sha256: str  # the run's logged metric rows (step, metric, exact value), hashed


def store_state(root: Path) -> dict[str, RunState]:
    """``{run_id: RunState}`` of every run of the store at ``root`` (read-only; empty if there is no store yet)."""
    from ..errors import StoreError
    from ..store import RunStore

    try:
        store = RunStore(root, readonly=True)
    except StoreError:
        if not (Path(root) / "index.sqlite").exists():
            return {}
        raise
    with store:
        runs = store.runs_table()
        statuses = dict(zip(runs["run_id"], runs["status"]))
        shas = store.checkpoint_shas()
        table = store.metrics_table(run_ids=sorted(statuses), probes=False) if statuses else None
        attempts = store.attempts()
    digests = {rid: hashlib.sha256() for rid in statuses}
    if table is not None:
        for rid, step, metric, value in zip(table.run_id, table.step, table.metric, table.value):
            digests[rid].update(f"{step},{metric},{float(value).hex()};".encode())
    return {rid: RunState(statuses[rid], attempts[rid], shas[rid], digests[rid].hexdigest()) for rid in statuses}


def check_store(root: Path) -> dict[str, int]:
    """Check the invariants of a store that has been through faults; return what it holds.

    No (run, step, metric) appears twice among the logged and probe rows (the tables' unique keys enforce
    it; this restates it from the user's side), and every finished run's checkpoint reads back verified
    against its recorded sha256. Raises :class:`FaultCheckError` naming the first violation.
    """
    from ..errors import CorruptCheckpointError
    from ..store import RunStore
    from ..store.index import FINISHED_STATUSES

    with RunStore(root, readonly=True) as store:
        runs = store.runs_table()
        ids = sorted(runs["run_id"])
        table = store.metrics_table(run_ids=ids) if ids else None
        if table is not None:
            repeated = table[table.duplicated(["run_id", "step", "metric"], keep=False)]
            _require(repeated.empty, "no metric row is duplicated",
                     f"{len(repeated)} rows repeat a (run, step, metric), e.g. {repeated.head(3).to_dict('records')}")
        finished = sorted(runs.loc[runs["status"].isin(FINISHED_STATUSES), "run_id"])
        shas = store.checkpoint_shas(finished) if finished else {}
        for rid in finished:
            if shas[rid] is None:
                continue
            try:
                store.checkpoint(rid)
            except CorruptCheckpointError as exc:
                raise FaultCheckError(f"every finished run's checkpoint verifies: {exc}") from None
        return {"runs": len(ids), "finished": len(finished), "rows": 0 if table is None else len(table),
                "probe_results": len(store.probe_state())}


def _require_finished_unchanged(history: Sequence[tuple[str, dict]], now: dict, when: str) -> None:
    """FaultCheckError unless every run finished at an earlier point of ``history`` is exactly as it was then."""
    from ..store.index import FINISHED_STATUSES

    for label, before in history:
        for rid, state in before.items():
            if state.status in FINISHED_STATUSES:
                _require(now.get(rid) == state, "a finished run is never trained or written again",
                         f"run {rid}, finished at {label}, is {now.get(rid)} after {when} (it was {state})")


def _temp_files(*folders: Path) -> list[str]:
    """Files a killed writer may leave: ``.<name>.<random>.tmp`` of checkpoints, ``.<name>.tmp`` of reports, and
    staged checkpoints (``<run_id>.pt.pending``) that the next writer must publish or drop."""
    return sorted(str(p) for folder in folders if folder.is_dir()
                  for pattern in (".*.tmp", "*.pending") for p in folder.glob(pattern))


# ---------------------------------------------------------------------- the kill launcher


@dataclasses.dataclass(frozen=True)
class KillPoint:
    """A place inside the study where :func:`launch` kills its own process (at the N-th time it gets there)."""

    moment: str
    arm: Callable[[int], None]


def _kill_self() -> None:
    # SIGKILL, not sys.exit: no finally block, no atexit, no flush; what a power cut or the OOM killer does.
    os.kill(os.getpid(), signal.SIGKILL)


def _arm_rename(matches: Callable[[Path], bool]) -> Callable[[int], None]:
    """Kill at the N-th ``os.replace`` onto a path that ``matches``: the temp file is written, the rename not done."""

    def arm(n: int) -> None:
        real, seen = os.replace, [0]

        def replace(src, dst, *args, **kwargs):
            if matches(Path(dst)):
                seen[0] += 1
                if seen[0] == n:
                    _kill_self()
            return real(src, dst, *args, **kwargs)

        os.replace = replace

    return arm


def _arm_transaction(method: str) -> Callable[[int], None]:
    """Kill inside the N-th ``RunIndex.<method>`` transaction, after its inserts, before its COMMIT.

    The store reads its clock (``sqlite_store._now``, looked up at each call) in the last statement of
    each write transaction; the kill is placed there, in the armed call only.
    """

    def arm(n: int) -> None:
        from ..store import index, sqlite_store

        real_method, real_now = getattr(index.RunIndex, method), sqlite_store._now
        calls, armed = [0], [False]

        def counted(self, *args, **kwargs):
            calls[0] += 1
            armed[0] = calls[0] == n
            try:
                return real_method(self, *args, **kwargs)
            finally:
                armed[0] = False

        def now():
            if armed[0]:
                _kill_self()
            return real_now()

        setattr(index.RunIndex, method, counted)
        sqlite_store._now = now

    return arm


#: Where :func:`launch` can kill a study, by name.
KILL_POINTS: dict[str, KillPoint] = {
    "checkpoint_stage": KillPoint(
        "inside a checkpoint write: temp file written and fsynced, before its rename to the staged file",
        _arm_rename(lambda p: p.parent.name == "checkpoints" and p.name.endswith(".pt.pending"))),
    "checkpoint_publish": KillPoint(
        "after a result's commit: the staged checkpoint not yet renamed over the run's file",
        _arm_rename(lambda p: p.parent.name == "checkpoints" and p.suffix == ".pt")),
    "metric_commit": KillPoint(
        "inside the metric-row transaction of a result: after the inserts, before COMMIT",
        _arm_transaction("write_result")),
    "probe_commit": KillPoint(
        "inside a probe-row transaction of the probe stage: after the inserts, before COMMIT",
        _arm_transaction("write_probe")),
    "report_rename": KillPoint(
        "writing the report: report.html replaced, report.json in its temp file, before its rename",
        _arm_rename(lambda p: p.name == "report.json")),
}

#: The command line that runs :func:`launch` (arguments: kill point, N, then the study command's arguments).
LAUNCHER = [sys.executable, "-c",
            "import sys; from grokking_theories.testing.faults import launch; sys.exit(launch(sys.argv[1:]))"]


def launch(args: Sequence[str]) -> int:
    """Run the study command with a kill armed: ``args`` = ``[kill point, N, *study arguments]``.

    Patches the function :data:`KILL_POINTS` names so that its N-th call SIGKILLs this process, then
    returns :func:`grokking_theories.study.main` of the study arguments (if the kill point is never
    reached, the study simply finishes). Meant for a fresh process (:data:`LAUNCHER`): the patches are
    never undone.
    """
    point, n, study_args = args[0], int(args[1]), list(args[2:])
    if point not in KILL_POINTS:
        raise SystemExit(f"unknown kill point {point!r}; known: {', '.join(KILL_POINTS)}")
    KILL_POINTS[point].arm(n)
    from ..study import main

    return main(study_args)


def _subprocess_env() -> dict:
    """The environment of study processes: this package importable, one thread per BLAS/OpenMP pool."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])  # the folder that holds the grokking_theories package
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    return env


class _StudyProcess:
    """A study command running in a subprocess, its stdout and stderr in ``<log>.out`` / ``<log>.err``."""

    def __init__(self, argv: Sequence[str], log: Path, *, kill_point: Optional[str] = None, n: int = 1):
        cmd = ([*LAUNCHER, kill_point, str(n), *argv] if kill_point
               else [sys.executable, "-m", "grokking_theories.study", *argv])
        self.stdout_path, self.stderr_path = log.with_suffix(".out"), log.with_suffix(".err")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=log.parent, env=_subprocess_env(), stdout=out, stderr=err)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float = PROCESS_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise FaultCheckError(f"a study process finishes: it ran for more than {timeout:.0f} s; its stderr "
                                  f"ends with {self.stderr()[-500:]!r}") from None


def _finished_count(root: Path) -> int:
    """Finished runs of the store at ``root`` right now (0 while it does not exist yet); read-only."""
    from ..errors import StoreError
    from ..store.index import RunIndex

    try:
        index = RunIndex(Path(root).absolute(), readonly=True)
    except StoreError:
        return 0
    try:
        return len(index.finished_ids())
    except StoreError:
        return 0
    finally:
        index.close()


def _wait_for(condition: Callable[[], bool], deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise FaultCheckError(f"{what} within {PROCESS_TIMEOUT:.0f} s")
        time.sleep(0.02)


def _kill_during_training(study: _StudyProcess, root: Path, rng: random.Random) -> str:
    """SIGKILL ``study`` at a seeded-random moment inside the training of an ensemble; describe the moment.

    The moment is placed by the study's own pace, so that it lands inside training on a slow or a fast
    machine alike: once training has started, the time the first ensemble of this process takes to finish
    is measured, and the kill comes a seeded-random fraction (0.1 to 0.6) of that time into the next one.
    """
    deadline = time.monotonic() + PROCESS_TIMEOUT

    def ended() -> bool:  # the study finished or died on its own: stop waiting, the caller sees its status
        return study.proc.poll() is not None

    _wait_for(lambda: ended() or re.search(r"^training \d+ runs", study.stdout(), re.M) is not None, deadline,
              "the study starts training")
    before, start = _finished_count(root), time.monotonic()
    _wait_for(lambda: ended() or _finished_count(root) > before, deadline, "an ensemble finishes")
    ensemble_time = time.monotonic() - start
    fraction = rng.uniform(0.1, 0.6)
    time.sleep(fraction * ensemble_time)
    study.proc.send_signal(signal.SIGKILL)
    return f"seeded-random moment of training: {fraction:.0%} into an ensemble ({ensemble_time:.2f} s each)"


# ---------------------------------------------------------------------- the study command, in this process


def _cli_here(argv: Sequence[str], log: Path) -> tuple[int, str]:
    """Run the study command's ``main`` in this process; return (exit status, stderr). Output goes to ``log``.

    A traceback is exactly what the command must never show a user, so an exception escaping ``main``
    is a broken guarantee (FaultCheckError), not a crash of the scenario.
    """
    from ..study import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([str(a) for a in argv])
    except Exception:
        raise FaultCheckError(f"the study command reports errors without a traceback: "
                              f"`{' '.join(map(str, argv))}` raised\n{traceback.format_exc()}") from None
    finally:
        log.write_text(out.getvalue() + "\n--- stderr ---\n" + err.getvalue())
    return status, err.getvalue()


def _seen(message: str, workdir: Path, limit: Optional[int] = None) -> str:
    """``message`` as the table shows it: one line, the scenario's temp folder as ``TMPDIR`` (not ``<tmp>``,
    which Markdown reads as an HTML tag), sha256s shortened (and cut at ``limit`` characters, if given)."""
    text = " ".join(str(message).split()).replace(str(workdir), "TMPDIR")
    text = re.sub(r"\b([0-9a-f]{8})[0-9a-f]{56}\b", r"\1…", text)
    return text if limit is None or len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _checkpoint_gist(message: str, workdir: Path) -> str:
    """A CorruptCheckpointError's message without its byte counts: what is wrong with which file, and the advice."""
    what = message.split(": ", 1)[0] if ": " in message else message
    advice = message[message.index("Restore"):] if "Restore" in message else ""
    return _seen(f"{what}. … {advice}", workdir)


# ---------------------------------------------------------------------- 1. SIGKILL a real study


#: The kills of :func:`fault_sigkill_study`, in order, each on the next rerun of the same command:
#: ``(kill point, N)``, ``"random"`` for an external SIGKILL at a seeded-random moment of training.
KILLS = (
    ("random", 0),
    ("checkpoint_stage", 1),
    ("checkpoint_publish", 2),
    ("random", 0),
    ("metric_commit", 1),
    ("probe_commit", 3),
    ("report_rename", 1),
)

#: Fields of report.json that differ between two runs of the same study by design (timings, where the store
#: is); :func:`fault_sigkill_study` compares everything else. ``runs[].wall_time``: every run's entry.
VOLATILE_REPORT_FIELDS = ("provenance.total_wall_time_s", "provenance.store", "runs[].wall_time")


def _stable_report(path: Path) -> dict:
    """report.json at ``path`` without :data:`VOLATILE_REPORT_FIELDS`."""
    data = json.loads(path.read_text())
    data["provenance"].pop("total_wall_time_s", None)
    data["provenance"].pop("store", None)
    for run in data.get("runs", []):
        run.pop("wall_time", None)
    return data


def _differences(a, b, where: str = "") -> list[str]:
    """Paths at which two parsed JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where.lstrip('.')}: {a!r:.60} != {b!r:.60}"]


def fault_sigkill_study(workdir: Path, *, seed: int = 0) -> FaultOutcome:
    """SIGKILL a real study seven times, each on the rerun of the previous, then rerun it to completion.

    The kills (:data:`KILLS`): twice from outside at a seeded-random moment of training, and from inside
    (:func:`launch`) in a checkpoint write before its rename to the staged file, after a result's commit
    before the staged checkpoint replaces the run's file, in the metric-row transaction before its commit,
    in the probe stage's transaction and while the report is written. After every kill the state
    of every run is recorded; a run finished at a kill must be exactly the same (status, attempt count,
    checkpoint sha256, metric rows) after every later rerun. At the end: every run was written exactly
    once (attempts 1: no finished run was trained again), no row is duplicated, every checkpoint
    verifies, no temp file is left, and report.json equals that of an uninterrupted run of the same study
    in another folder (but for :data:`VOLATILE_REPORT_FIELDS`).
    """
    toml = write_tiny_study(workdir, KILL_STUDY_STEPS)
    out, root = workdir / "killed", workdir / "killed" / "store"
    argv = _study_argv(toml, out)
    rng = random.Random(seed)
    history: list[tuple[str, dict]] = []
    details, in_training = [], 0
    for i, (point, n) in enumerate(KILLS, 1):
        study = _StudyProcess(argv, workdir / f"kill{i}", kill_point=None if point == "random" else point, n=n)
        if point == "random":
            moment = _kill_during_training(study, root, rng)
        else:
            moment = KILL_POINTS[point].moment + (f" (call {n})" if n > 1 else "")
        status = study.wait()
        _require(status == -signal.SIGKILL, f"kill {i} ({moment}) happens",
                 f"the study exited with status {status} before it got there; stderr ends {study.stderr()[-300:]!r}")
        state = store_state(root)
        _require_finished_unchanged(history, state, f"kill {i}")
        facts = check_store(root)
        history.append((f"kill {i}", state))
        if facts["finished"] < len(state) or not state:  # killed before every run had finished
            in_training += 1
        details.append(f"kill {i}: {moment} -> {facts['finished']}/{len(state)} runs finished, "
                       f"{facts['probe_results']} probe results stored, {len(_temp_files(root / 'checkpoints', out))} "
                       f"temp file(s) left")
    final = _StudyProcess(argv, workdir / "final")
    status = final.wait()
    _require(status == 0, "the rerun after the kills completes", f"exit status {status}: {final.stderr()[-500:]}")
    state = store_state(root)
    _require_finished_unchanged(history, state, "the final rerun")
    facts = check_store(root)
    record = json.loads((out / "study.json").read_text())
    _require(facts["finished"] == len(state) == record["runs"], "every run of the study is finished at the end",
             f"{facts['finished']} of {len(state)}")
    attempts = sorted({s.attempts for s in state.values()})
    _require(attempts == [1], "every run was written exactly once (attempts 1): no finished run was retrained",
             f"attempt counts {attempts}")
    left = _temp_files(root / "checkpoints", out)
    _require(not left, "no temp file of a killed write survives the rerun", ", ".join(left))
    details.append(f"final rerun: exit 0, {record['trained']} trained, {record['reused']} reused; every run "
                   f"attempts = 1")

    status, err = _cli_here(_study_argv(toml, workdir / "uninterrupted"), workdir / "uninterrupted.log")
    _require(status == 0, "the uninterrupted reference run completes", err[-500:])
    reference = workdir / "uninterrupted" / "report.json"
    differ = _differences(_stable_report(out / "report.json"), _stable_report(reference))
    _require(not differ, "the final report.json equals an uninterrupted run's (volatile fields excluded)",
             "; ".join(differ[:5]))
    return FaultOutcome(
        scenario="sigkill_study",
        tried=f"SIGKILL a real study {len(KILLS)} times, each on the rerun of the last: "
              f"{sum(point == 'random' for point, _ in KILLS)} at seeded-random moments of training; in a checkpoint "
              "write before its rename; after a commit, before the staged checkpoint is published; in the "
              "metric-row transaction before its commit; in a probe-row transaction; while report.json is "
              "written",
        lost=f"0 finished runs (every run written exactly once: attempts 1); {in_training} in-flight ensembles "
             "retrained, 1 uncommitted probe transaction redone, the half-written report rewritten",
        outcome=f"final rerun exits 0; {facts['finished']} runs, {facts['rows']} rows, none duplicated; every "
                "checkpoint verifies; no temp file left; report.json equals an uninterrupted run's",
        ok=True,
        counts={"kills": len(KILLS), "kills_in_training": in_training, "runs": facts["finished"],
                "rows": facts["rows"], "probe_results": facts["probe_results"]},
        details=tuple(details))


# ---------------------------------------------------------------------- 2. a failure inside a write


class _RefusingFile:
    """A file object whose ``write`` writes half of what it is given, then raises ``exc`` (a failing disk)."""

    def __init__(self, fh, exc: OSError):
        self._fh, self._exc = fh, exc

    def write(self, data) -> int:
        self._fh.write(data[: len(data) // 2])
        raise self._exc

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self._fh.close()


@contextlib.contextmanager
def _failing_file_io(exc: OSError, at: str):
    """For the ``with`` block, file writes (``at='write'``) or fsyncs (``at='fsync'``) raise ``exc``."""
    if at == "write":
        real = os.fdopen
        with mock.patch.object(os, "fdopen", lambda *a, **k: _RefusingFile(real(*a, **k), exc)):
            yield
    else:
        def fsync(fd):
            raise exc

        with mock.patch.object(os, "fsync", fsync):
            yield


def _checkpoint_write_fails(workdir: Path, exc: OSError, at: str) -> tuple[str, dict]:
    """Fail checkpoint writes with ``exc`` (at ``write`` or ``fsync``) twice: a finished run rewritten, and a new
    run's first result. Check that both leave the store as it was; return (the last error message, counts)."""
    from ..errors import StoreError
    from ..store import RunStore
    from ..training import train_ensemble

    root = workdir / "store"
    done = _store_with_runs(root, 1)[0]
    new = tiny_run(seed=7)
    results = train_ensemble([done, new])
    old_file = (root / "checkpoints" / f"{done.run_id}.pt").read_bytes()
    messages = {}
    with RunStore(root) as store:
        store.register([new])
        before = store_state(root)
        for result in results:
            rid = result.config.run_id
            try:
                with _failing_file_io(exc, at):
                    _write_results(store, [result])
            except StoreError as error:
                messages[rid] = str(error)
            else:
                raise FaultCheckError("a failed checkpoint write raises a StoreError", f"run {rid} was written")
            _require(str(store.checkpoint_path(rid)) in messages[rid], "the error names the file it could not write",
                     messages[rid])
        _require(store_state(root) == before, "a failed checkpoint write leaves the index as it was",
                 f"{before} -> {store_state(root)}")
        _require(store.checkpoint_path(done.run_id).read_bytes() == old_file,
                 "a failed checkpoint write leaves the previous file as it was", "its bytes changed")
        _require(not store.checkpoint_path(new.run_id).exists(), "a failed first checkpoint write leaves no file")
        left = _temp_files(root / "checkpoints")
        _require(not left, "a failed checkpoint write leaves no temp file", ", ".join(left))
    check_store(root)  # the finished run's checkpoint still verifies against its recorded sha256
    return messages[new.run_id], {"writes_failed": len(messages)}


def fault_failed_checkpoint_write(workdir: Path) -> FaultOutcome:
    """The write, then the fsync, of a checkpoint file raise (EIO): the old file and the index stay as they were.

    Each time for two writes: a finished run rewritten (its old checkpoint must survive) and a new run (no
    file, no temp file, still pending). The error is a StoreError naming the file.
    """
    seen, failed = [], 0
    for at in ("write", "fsync"):
        message, counts = _checkpoint_write_fails(workdir / at, OSError(errno.EIO, "Input/output error"), at)
        seen.append(message)
        failed += counts["writes_failed"]
    return FaultOutcome(
        scenario="failed_checkpoint_write",
        tried="the write, then the fsync, of a checkpoint file raises EIO (a finished run rewritten, a new run "
              "written)",
        lost="nothing: the old checkpoint file and the index are as before, the new run is still pending, "
             "no temp file",
        outcome=f"StoreError: {_seen(seen[-1], workdir)}",
        ok=True, counts={"writes_failed": failed})


def fault_failed_metric_transaction(workdir: Path) -> FaultOutcome:
    """The metric-row transaction raises after its inserts, before its commit: the run keeps its old state.

    Three writes fail this way (the store's clock, read in the transaction's last statement, raises):
    a pending run's first result (it stays pending, without rows), a failed run's retry (as the study
    driver retries it: it stays failed, with its traceback), and a finished run rewritten with other
    parameters (as ``--retrain`` or the API would). The last keeps its rows, status, attempt count and its
    old parameters: the new checkpoint was only staged next to the old file, and the failed commit drops it.
    """
    import torch

    from ..store import RunStore, sqlite_store
    from ..training import train_ensemble

    root = workdir / "store"
    done = _store_with_runs(root, 1)[0]
    pending, retried = tiny_run(seed=7), tiny_run(seed=8)
    results = train_ensemble([pending, retried, done])
    # the rewrite of the finished run carries other parameters (a retrain elsewhere, say)
    other = {"steps": results[2].checkpoint["steps"],
             "params": {n: t + 1.0 for n, t in results[2].checkpoint["params"].items()}}
    results[2] = dataclasses.replace(results[2], checkpoint=other)
    with RunStore(root, readonly=True) as reader:
        old_params = reader.checkpoint(done.run_id).params

    def crash():
        raise RuntimeError("injected: the process fails inside the transaction")

    with RunStore(root) as store:
        store.register([pending, retried])
        store.write_result(retried, [], status="failed", summary={"error": "Traceback ...\nRuntimeError: first try"})
        before = store_state(root)
        for result in results:
            try:
                with mock.patch.object(sqlite_store, "_now", crash):
                    _write_results(store, [result])
            except RuntimeError:
                pass
            else:
                raise FaultCheckError("the injected failure stops write_result", f"{result.config.run_id} was written")
        after = store_state(root)
        _require(after == before, "a failed metric-row transaction leaves every run's index state as it was",
                 f"{before} -> {after}")
        _require(store.metrics_table([pending.run_id]).empty, "a pending run whose first result failed to commit "
                 "has no rows")
        error = store.runs_table().set_index("run_id").loc[retried.run_id, "summary_error"]
        _require("first try" in error, "a failed run whose retry failed to commit keeps its traceback", error)
        kept = store.checkpoint(done.run_id)
        _require(all(torch.equal(kept.params[n], t) for n, t in old_params.items()),
                 "a finished run whose rewrite failed to commit keeps its old parameters")
        _require(not list((root / "checkpoints").glob("*.pending")), "the staged checkpoint of a failed commit is "
                 "dropped")
    return FaultOutcome(
        scenario="failed_metric_transaction",
        tried="the metric-row transaction raises after its inserts, before COMMIT (a pending run, a failed run's "
              "retry, a finished run rewritten with other parameters)",
        lost="nothing: rows, status, attempts and the finished run's old checkpoint as before (the new one was "
             "only staged, and is dropped)",
        outcome="the exception propagates; the store reads as before the write",
        ok=True, counts={"writes_failed": len(results)})


# ---------------------------------------------------------------------- 3. damaged files


def _damage(path: Path, how: str) -> None:
    """Truncate ``path`` to half, empty it, or flip one bit in its middle."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "bit-flipped":
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        raise ValueError(f"unknown damage {how!r}")


#: What each kind of damage must be called in the error message.
DAMAGE_WORDS = {"truncated": "is truncated", "empty": "is empty", "bit-flipped": "was modified"}


def fault_damaged_checkpoints(workdir: Path) -> FaultOutcome:
    """Truncated, empty and bit-flipped checkpoint files: each read raises CorruptCheckpointError naming the file,
    the kind of damage and what to do; the other runs and the index are untouched."""
    from ..errors import CorruptCheckpointError
    from ..store import RunStore

    root = workdir / "store"
    configs = _store_with_runs(root, len(DAMAGE_WORDS) + 1)
    before = store_state(root)
    messages = {}
    with RunStore(root) as store:
        for cfg, how in zip(configs, DAMAGE_WORDS):
            path = store.checkpoint_path(cfg.run_id)
            _damage(path, how)
            try:
                store.checkpoint(cfg.run_id)
            except CorruptCheckpointError as exc:
                messages[how] = str(exc)
            else:
                raise FaultCheckError(f"a {how} checkpoint file is refused", f"{path} was read")
            for needed in (str(path), DAMAGE_WORDS[how], cfg.run_id, "Restore the file from a backup",
                           f"--retrain {cfg.run_id}"):
                _require(needed in messages[how], f"the error for a {how} checkpoint says {needed!r}",
                         messages[how])
        store.checkpoint(configs[-1].run_id)  # the undamaged run still reads
    _require(store_state(root) == before, "reading damaged checkpoints changes nothing in the index")
    return FaultOutcome(
        scenario="damaged_checkpoints",
        tried="a checkpoint file truncated to half, one emptied, one with a bit flipped",
        lost="the damaged runs' parameters (their metric rows are intact); nothing else",
        outcome="CorruptCheckpointError, e.g. '{}', the others '{}'; each ends '{}'".format(
            _checkpoint_gist(messages["empty"], workdir).split(". …")[0],
            "', '".join(re.sub(r"^checkpoint file \S+ of run \S+ ", "", _checkpoint_gist(m, workdir).split(". …")[0])
                        for how, m in messages.items() if how != "empty"),
            _checkpoint_gist(messages["empty"], workdir).split(". … ")[1]),
        ok=True, counts={"damaged": len(messages)},
        details=tuple(f"{how}: {_seen(m, workdir)}" for how, m in messages.items()))


def fault_probe_meets_damaged_checkpoint(workdir: Path) -> FaultOutcome:
    """The study command meets a bit-flipped checkpoint in its probe stage: exit 2 naming the file, no traceback;
    the rerun the message advises (``--retrain RUN_ID``) retrains that run and only it."""
    from ..studies import load_study
    from ..store import RunStore
    from ..study import train_missing

    toml = write_tiny_study(workdir)
    out = workdir / "out"
    study = load_study(str(toml))
    with RunStore(out / "store") as store, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        train_missing(study, store, "cpu", 1, 2)  # trained, not probed: the study's probe stage has work to do
        victim = sorted(store.finished_ids())[0]
        path = store.checkpoint_path(victim)
    _damage(path, "bit-flipped")
    status, err = _cli_here(_study_argv(toml, out), workdir / "probe.log")
    _require(status == 2, "the study command exits 2 on a damaged checkpoint", f"exit status {status}: {err[-300:]}")
    message = next((line for line in err.splitlines() if line.startswith("error: ")), "")
    _require(str(path) in message, "the study command's error names the damaged file", err[-500:])
    _require(f"--retrain {victim}" in message, "the error says how to retrain the damaged run", message)
    status, err = _cli_here([*_study_argv(toml, out), "--retrain", victim], workdir / "rerun.log")
    record = json.loads((out / "study.json").read_text())
    attempts = {rid: s.attempts for rid, s in store_state(out / "store").items()}
    # two results written for the victim: its first training and its retraining
    _require(status == 0 and record["trained"] == 1 and attempts[victim] == 2
             and all(a == 1 for rid, a in attempts.items() if rid != victim),
             "the study rerun with --retrain retrains the damaged run and only it",
             f"exit {status}, trained {record['trained']}, attempts {attempts}")
    return FaultOutcome(
        scenario="probe_meets_damaged_checkpoint",
        tried="a bit flipped in one checkpoint of a trained study, then the study command (probe stage)",
        lost="that run's parameters, retrained by the advised rerun; nothing else",
        outcome=f"exit 2, error: {_checkpoint_gist(message.removeprefix('error: '), workdir)}; the study "
                "rerun with --retrain: exit 0, that run retrained, no other",
        ok=True, counts={"retrained": record["trained"], "reused": record["reused"]})


def _refusals(root: Path, guarantee: str) -> list[str]:
    """The StoreError messages of opening the store at ``root`` as a writer and as a reader (both must refuse)."""
    from ..errors import StoreError
    from ..store import RunStore

    messages = []
    for readonly in (False, True):
        try:
            RunStore(root, readonly=readonly).close()
        except StoreError as exc:
            messages.append(str(exc))
        else:
            raise FaultCheckError(guarantee, f"readonly={readonly} opened it")
    return messages


def fault_corrupt_index(workdir: Path) -> FaultOutcome:
    """index.sqlite overwritten with garbage: writer, reader and study command refuse it naming the file and
    saying what to do; the lock is released; the advice (move the store aside) gives a working store."""
    from ..store import RunStore

    root = workdir / "out" / "store"
    _store_with_runs(root, 1)
    index = root / "index.sqlite"
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (root / extra).unlink(missing_ok=True)
    index.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(8192)))
    messages = _refusals(root, "a garbage index is refused")
    for message in messages:
        _require(str(index) in message and "damaged" in message and "Move the store aside" in message,
                 "the error names the index, says it is damaged and what to do", message)
    toml = write_tiny_study(workdir)
    status, err = _cli_here(_study_argv(toml, workdir / "out"), workdir / "cli.log")
    _require(status == 2 and str(index) in err, "the study command exits 2 naming the index", err[-500:])
    root.rename(root.with_name("store.damaged"))  # the advice
    with RunStore(root) as store:  # the lock was released by every refusal, and a fresh store opens
        _require(store.finished_ids() == set(), "a fresh store opens where the damaged one was")
    return FaultOutcome(
        scenario="corrupt_index",
        tried="index.sqlite overwritten with 8 KiB of random bytes; open as writer, as reader, run the study",
        lost="the store (its runs must be trained again); nothing is overwritten",
        outcome=f"exit 2, StoreError: {_seen(messages[0], workdir)}",
        ok=True, counts={"refusals": len(messages) + 1})


def fault_newer_schema(workdir: Path) -> FaultOutcome:
    """A store written by a newer version (user_version above SCHEMA_VERSION): refused by writer, reader and the
    study command, naming the file and saying to use a newer grokking_theories; the file is left untouched."""
    from ..store import SCHEMA_VERSION

    root = workdir / "out" / "store"
    _store_with_runs(root, 1)
    index = root / "index.sqlite"
    conn = sqlite3.connect(index)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = index.read_bytes()
    messages = _refusals(root, "a newer schema is refused")
    toml = write_tiny_study(workdir)
    status, err = _cli_here(_study_argv(toml, workdir / "out"), workdir / "cli.log")
    messages.append(err)
    for message in messages:
        _require(str(index) in message and "newer" in message and "use a newer grokking_theories" in message.lower(),
                 "the refusal names the index and says to use a newer grokking_theories", message)
    _require(status == 2, "the study command exits 2 on a newer store", f"exit status {status}")
    _require(index.read_bytes() == before, "a newer store is left untouched", "index.sqlite changed")
    return FaultOutcome(
        scenario="newer_schema",
        tried=f"index.sqlite with schema version {SCHEMA_VERSION + 1} (this code knows {SCHEMA_VERSION}); open as "
              "writer, as reader, run the study",
        lost="nothing: the file is byte-for-byte unchanged",
        outcome=f"exit 2, StoreError: {_seen(messages[0], workdir)}",
        ok=True, counts={"refusals": len(messages)})


# ---------------------------------------------------------------------- 4. a NaN member


def _rows(result) -> list:
    """A result's metric rows with exact values (float.hex), so that comparisons are bit-for-bit."""
    return [(s, m, float(v).hex()) for s, m, v in result.metrics]


def _same_checkpoint(a, b) -> bool:
    import torch

    return (torch.equal(a["steps"], b["steps"]) and a["params"].keys() == b["params"].keys()
            and all(torch.equal(a["params"][n], b["params"][n]) for n in a["params"]))


def fault_nan_member(workdir: Path) -> FaultOutcome:
    """An ensemble member whose loss turns NaN (lr 1e36): it is marked diverged, frozen at finite parameters and
    stored as a finished result; its batch-mates are not affected by it.

    Bit-for-bit: the batch-mate ahead of it equals its solo run (rows and checkpoints); the one behind it
    has the solo run's parameters and the same rows as in an ensemble where the NaN member is replaced by a
    healthy one. Its test-set metrics differ from its solo run's in the last bits whatever its batch-mates
    are: that is the batched evaluation at member positions past the first, not the NaN (counted here,
    bounded by 1e-6 of the metric's scale).
    """
    import math

    import torch

    from ..store import RunStore
    from ..training import train_ensemble, train_run

    first, nan, last, healthy = tiny_run(seed=0), tiny_run(seed=1, lr=1e36), tiny_run(seed=2), tiny_run(seed=1)
    r_first, r_nan, r_last = train_ensemble([first, nan, last])
    _require(r_nan.status == "diverged" and r_nan.summary["diverged_at"] is not None,
             "a member whose loss turns NaN is marked diverged", f"status {r_nan.status}")
    _require(all(bool(torch.isfinite(t).all()) for t in r_nan.checkpoint["params"].values()),
             "a diverged member is frozen at its last finite parameters")
    solo_first, solo_last = train_run(first), train_run(last)
    _require(r_first.status == r_last.status == "complete", "the NaN member's batch-mates complete")
    _require(_rows(r_first) == _rows(solo_first) and _same_checkpoint(r_first.checkpoint, solo_first.checkpoint),
             "the batch-mate ahead of a NaN member is bit-identical to its solo run")
    _require(_same_checkpoint(r_last.checkpoint, solo_last.checkpoint),
             "the batch-mate behind a NaN member trains the solo run's parameters bit for bit")
    _, _, r_control = train_ensemble([first, healthy, last])
    _require(_rows(r_last) == _rows(r_control),
             "a NaN member changes nothing for its batch-mates (same rows as beside a healthy member)")
    off = [(a[2], b[2]) for a, b in zip(r_last.metrics, solo_last.metrics) if float(a[2]).hex() != float(b[2]).hex()]
    # relative to the metric's scale, at least 1: a margin quantile near 0 is a float32 of logits of order 1
    worst = max((abs(a - b) / max(abs(b), 1.0) for a, b in off), default=0.0)
    _require(worst <= 1e-6, "positions past the first in an ensemble evaluate within 1e-6 of the solo run",
             f"difference {worst:.2g} of the metric's scale")
    with RunStore(workdir / "store") as store:
        _write_results(store, [r_first, r_nan, r_last])
        _require(store.finished_ids() == {first.run_id, nan.run_id, last.run_id},
                 "a diverged run is a finished result (never retrained)")
        values = store.metrics_table([nan.run_id]).value
        _require(bool(values.isna().any()) and any(math.isnan(v) for _, _, v in r_nan.metrics),
                 "a diverged run's NaN rows are stored and read back as NaN")
    return FaultOutcome(
        scenario="nan_member",
        tried="one member of a 3-run ensemble with lr 1e36 (its loss turns NaN at step "
              f"{r_nan.summary['diverged_at']})",
        lost="nothing: the member is stored as 'diverged' (finished, with its NaN rows), its batch-mates complete",
        outcome=f"batch-mates: parameters bit-identical to solo runs, rows bit-identical to a healthy ensemble's; "
                f"{len(off)} of {len(r_last.metrics)} rows of the second batch-mate differ from solo in the last "
                f"bits (at most {worst:.1g} of the metric's scale: batched evaluation, not the NaN)",
        ok=True, counts={"rows_off_by_rounding": len(off), "max_difference_of_scale": worst})


# ---------------------------------------------------------------------- 5. a config that raises


def fault_raising_config(workdir: Path) -> FaultOutcome:
    """Training of one run raises (injected for its run id only): the rest of the sweep finishes, the run is
    stored 'failed' with its traceback, the command exits 1 naming it, and a rerun retries that run only.

    The run trains in an ensemble of two, so the ensemble raises as a whole and is retrained member by
    member (:func:`grokking_theories.execution.train_group`): its batch-mate completes.
    """
    import grokking_theories.training as training

    from ..studies import load_study

    toml = write_tiny_study(workdir)
    out = workdir / "out"
    victim = next(c for c in load_study(str(toml)).configs if c.seed == 1 and c.optim.weight_decay == 1.0).run_id
    real = training.train_ensemble

    def train_ensemble(configs, *args, **kwargs):
        if any(c.run_id == victim for c in configs):
            raise RuntimeError(f"injected fault: run {victim} refuses to train")
        return real(configs, *args, **kwargs)

    with mock.patch.object(training, "train_ensemble", train_ensemble):
        status, first_err = _cli_here(_study_argv(toml, out), workdir / "first.log")
    _require(status == 1, "a sweep with a raising run exits 1", f"exit status {status}: {first_err[-300:]}")
    _require(victim in first_err and "1 run(s) failed" in first_err, "the command's stderr names the failed run",
             first_err[-500:])
    said = [line.strip() for line in first_err.splitlines() if "run(s) failed" in line or victim in line]
    from ..store import RunStore

    with RunStore(out / "store", readonly=True) as store:
        runs = store.runs_table().set_index("run_id")
    _require(runs.loc[victim, "status"] == "failed", "the raising run is stored as 'failed'")
    _require("Traceback" in runs.loc[victim, "summary_error"] and "injected fault" in runs.loc[victim, "summary_error"],
             "the failed run's traceback is stored (runs_table column summary_error)")
    others = runs.drop(index=victim)
    _require(bool((others["status"] == "complete").all()), "the rest of the sweep finishes",
             str(others["status"].value_counts().to_dict()))
    status, err = _cli_here(_study_argv(toml, out), workdir / "rerun.log")
    record = json.loads((out / "study.json").read_text())
    attempts = {rid: s.attempts for rid, s in store_state(out / "store").items()}
    _require(status == 0 and record["trained"] == 1 and attempts[victim] == 2
             and all(a == 1 for rid, a in attempts.items() if rid != victim),
             "the rerun retries the failed run and only it", f"exit {status}, record {record}, attempts {attempts}")
    return FaultOutcome(
        scenario="raising_config",
        tried="training of one run of an 8-run study raises (patched for its run id), in an ensemble of two",
        lost="nothing: its batch-mate and the 6 other runs complete; the failed run is retried by the rerun",
        outcome=f"exit 1, stderr: {_seen(' / '.join(said), workdir, 200)}; rerun: exit 0, 1 run trained "
                f"(attempts 2), {record['reused']} reused",
        ok=True, counts={"failed": 1, "retrained": record["trained"], "reused": record["reused"]})


# ---------------------------------------------------------------------- 6. a second driver, a full disk


def fault_second_driver(workdir: Path) -> FaultOutcome:
    """A second driver on a store whose writer lock is held: refused (in this process and by the study command),
    naming the store and the holder's pid; free again once the holder closes."""
    from ..errors import StoreLockedError
    from ..store import RunStore

    out = workdir / "out"
    root = out / "store"
    toml = write_tiny_study(workdir)
    with RunStore(root) as holder:
        try:
            RunStore(root).close()
        except StoreLockedError as exc:
            message = str(exc)
        else:
            raise FaultCheckError("a second writer is refused", "it opened")
        status, err = _cli_here(_study_argv(toml, out), workdir / "cli.log")
        _require(holder.finished_ids() == set(), "the holder still works")
    _require(str(root) in message and f"pid {os.getpid()}" in message,
             "the refusal names the store and the holder's pid", message)
    _require(status == 2 and "in use by another driver" in err, "the study command exits 2, saying why", err[-300:])
    RunStore(root).close()  # released
    return FaultOutcome(
        scenario="second_driver",
        tried="open a second writer, and run the study command, while a driver holds the store",
        lost="nothing: the second driver writes nothing",
        outcome=f"exit 2, StoreLockedError: {_seen(message, workdir)}",
        ok=True)


def fault_disk_full_checkpoint(workdir: Path) -> FaultOutcome:
    """A checkpoint write hits a full disk (``write`` raises ENOSPC half-way): StoreError naming the file and
    saying the disk is full; the previous checkpoint file and the index intact, no temp file left."""
    message, counts = _checkpoint_write_fails(workdir, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "write")
    _require("disk is full" in message, "the error says the disk is full", message)
    return FaultOutcome(
        scenario="disk_full_checkpoint",
        tried="a checkpoint file's write raises ENOSPC half-way (a finished run rewritten, a new run written)",
        lost="nothing: previous checkpoint file and index intact, no temp file",
        outcome=f"StoreError: {_seen(message, workdir)}",
        ok=True, counts=counts)


def fault_disk_full_index(workdir: Path) -> FaultOutcome:
    """The index fills up mid-transaction (``PRAGMA max_page_count`` at its current size on the writer's own
    connection, so inserts raise SQLITE_FULL): StoreError naming the index and saying the disk is full; the
    transaction rolled back; the store still opens and reads."""
    from ..errors import StoreError
    from ..store import RunStore
    from ..training import train_run

    root = workdir / "store"
    done = _store_with_runs(root, 1)[0]
    new = tiny_run(seed=7)
    result = train_run(new)
    connections, real_connect = [], sqlite3.connect

    def connect(*args, **kwargs):  # keep the connection the writer opens, to cap its size
        connections.append(real_connect(*args, **kwargs))
        return connections[-1]

    with mock.patch.object(sqlite3, "connect", connect):
        store = RunStore(root)
    with store:
        store.register([new])
        before = store_state(root)
        pages = connections[0].execute("PRAGMA page_count").fetchone()[0]
        connections[0].execute(f"PRAGMA max_page_count = {pages}")
        try:
            _write_results(store, [result])
        except StoreError as exc:
            message = str(exc)
        else:
            raise FaultCheckError("a full index refuses the write", "it was written")
        _require(str(store.index_path) in message and "database or disk is full" in message
                 and "disk is full" in message, "the error names the index and says the disk is full", message)
        _require(store_state(root) == before, "the failed transaction was rolled back")
    with RunStore(root) as again:  # the store still opens as a writer, and reads
        _require(again.status(new.run_id) == "pending" and done.run_id in again.finished_ids(),
                 "the store still opens and reads after a full disk")
    check_store(root)
    return FaultOutcome(
        scenario="disk_full_index",
        tried="the index cannot grow (PRAGMA max_page_count = its size) while a result's rows are inserted",
        lost="nothing: the transaction rolled back and its staged checkpoint was dropped; the run is still "
             "pending",
        outcome=f"StoreError: {_seen(message, workdir)}",
        ok=True)


# ---------------------------------------------------------------------- 7. every executor, the same rows


def _train_with(executor, groups) -> list:
    """Every RunResult of ``groups`` trained by ``executor``, in the groups' order."""
    try:
        by_group = dict(executor.run(groups, "cpu"))
    finally:
        executor.close()
    return [r for i in range(len(groups)) for r in by_group[i]]


def fault_executors_agree(workdir: Path) -> FaultOutcome:
    """Serial (``LocalExecutor(workers=1)``), a local pool of two processes and Dask (two workers) train the same
    ensembles to bit-identical metric rows and checkpoints on CPU. Dask is tried only when
    ``grokking_theories.execution.make_executor('dask', ...)`` can be built; otherwise the outcome says why."""
    from ..errors import ConfigError
    from ..execution import LocalExecutor, make_executor, plan_ensembles

    configs = [tiny_run(seed=s, weight_decay=wd) for s in (0, 1) for wd in (0.0, 1.0)]
    groups = plan_ensembles(configs, "cpu", 2)
    serial = _train_with(LocalExecutor(workers=1), groups)
    trained = {"local pool of 2": _train_with(LocalExecutor(workers=2), groups)}
    try:
        dask = make_executor("dask", workers=2)
    except (ImportError, ConfigError) as exc:  # ConfigError: distributed is not installed
        dask_note = f"Dask: not available ({exc})"
    else:
        trained["Dask, 2 workers"] = _train_with(dask, groups)
        dask_note = "Dask: bit-identical"
    for name, results in trained.items():
        for a, b in zip(serial, results):
            _require(a.config == b.config and a.status == b.status and _rows(a) == _rows(b)
                     and _same_checkpoint(a.checkpoint, b.checkpoint),
                     f"the {name} executor trains bit-identical rows and checkpoints to the serial one",
                     f"run {a.config.run_id} differs")
    return FaultOutcome(
        scenario="executors_agree",
        tried=f"{len(configs)} runs as {len(groups)} ensembles, trained serially, by a local pool of 2 and by Dask",
        lost="nothing",
        outcome=f"local pool: bit-identical rows and checkpoints; {dask_note}",
        ok=True, counts={"executors": 1 + len(trained), "runs": len(configs)})


# ---------------------------------------------------------------------- the suite


#: Every fault scenario, in the order the table lists them.
FAULT_SCENARIOS: tuple[Callable[[Path], FaultOutcome], ...] = (
    fault_sigkill_study,
    fault_failed_checkpoint_write,
    fault_failed_metric_transaction,
    fault_damaged_checkpoints,
    fault_probe_meets_damaged_checkpoint,
    fault_corrupt_index,
    fault_newer_schema,
    fault_nan_member,
    fault_raising_config,
    fault_second_driver,
    fault_disk_full_checkpoint,
    fault_disk_full_index,
    fault_executors_agree,
)


def scenario_name(scenario: Callable) -> str:
    """``fault_sigkill_study`` -> ``sigkill_study`` (the pytest id and the table's first column)."""
    return scenario.__name__.removeprefix("fault_")


def run_scenario(scenario: Callable[[Path], FaultOutcome], workdir: Path) -> FaultOutcome:
    """Run one scenario in ``workdir``: its outcome, or, when a guarantee broke, an outcome with ``ok=False``
    whose ``outcome`` is the FaultCheckError's message (other exceptions propagate: they are bugs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return scenario(workdir)
    except FaultCheckError as exc:
        doc = (scenario.__doc__ or "").strip().splitlines()
        return FaultOutcome(scenario=scenario_name(scenario), tried=doc[0] if doc else "", lost="?",
                            outcome=f"BROKEN: {_seen(str(exc), workdir, 300)}", ok=False)


def markdown_table(outcomes: Sequence[FaultOutcome]) -> str:
    """The outcomes as a Markdown table: scenario | tried | lost | outcome | ok."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| scenario | tried | lost | outcome | ok |", "|---|---|---|---|---|"]
    lines += [f"| {cell(o.scenario)} | {cell(o.tried)} | {cell(o.lost)} | {cell(o.outcome)} | "
              f"{'yes' if o.ok else '**NO**'} |" for o in outcomes]
    return "\n".join(lines)
