"""The probe stage: offline measures computed once from stored checkpoints and kept in the run store.

A :class:`Probe` is a named, versioned function of one run's config, stored
checkpoint and logged metrics that returns tidy rows ``(step, metric, value)``.
:func:`run_probes` computes each (run, probe) whose stored result is missing
or out of date, and writes the rows into the run store
(:meth:`~grokking_theories.store.RunStore.write_probe`), where
:meth:`~grokking_theories.store.RunStore.metrics_table` returns them next to
the logged rows. A stored result is current when it was computed by the
probe's current ``version`` from the run's current checkpoint (its sha256):

* a rerun computes nothing;
* bumping one probe's ``version`` recomputes that probe only;
* retraining a run (``write_result``) drops its probe rows, so they are recomputed.

Families declare the probes their predictions read (``Family.probes``); the
study driver runs them after training and the report reads them from the store.
Registered probes: :data:`PROBES` (``flips``, the per-example flip summary, in
:mod:`grokking_theories.probes.flips`; ``fourier``, the circuit measures, in
:mod:`grokking_theories.probes.circuits`; ``collapse``, softmax collapse, in
:mod:`grokking_theories.probes.collapse`).
"""
from __future__ import annotations

import contextlib
import importlib
import re
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ..config import did_you_mean
from ..errors import ConfigError, StoreError

__all__ = ["PROBES", "Probe", "ProbeCounts", "ProbeRowsMissingWarning", "all_probes", "family_probes",
           "get_probe", "missing_probes_message", "pending_probes", "plant_probe", "register_probe",
           "resolve_probes", "run_probes"]

#: Registered probes, by name.
PROBES: dict[str, "Probe"] = {}

#: Modules of the package that register probes when imported (looked up by :func:`get_probe`); a module
#: listed here that does not exist in this checkout is skipped.
BUILTIN_PROBE_MODULES = ("flips", "fourier", "circuits", "collapse")

_METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")


@dataclass(frozen=True, kw_only=True)
class Probe:
    """One offline measure of a run, computed from its stored checkpoint.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"flips"``; what ``Family.probes`` lists.
    version : int
        Bump it when what ``compute`` returns changes: the next
        :func:`run_probes` recomputes this probe (only) on every run.
    metrics : tuple of str
        The metric names ``compute`` may write. A name ending in ``*`` is a
        prefix family: ``"embed_fnorm_k*"`` covers ``embed_fnorm_k1``,
        ``embed_fnorm_k2``, ... A metric outside this list is an error.
    compute : callable
        ``compute(config, checkpoint, logged) -> DataFrame[step, metric, value]``
        with ``config`` the run's :class:`~grokking_theories.config.RunConfig`,
        ``checkpoint`` its stored ``{"steps": (n,), "params": {name: (n, ...)}}``
        (the checkpoints stack like ensemble members, so one batched pass can
        evaluate them all) and ``logged`` the run's own logged rows
        ``(step, metric, value)``. Must be a pure function of the three.
        Returning ``None`` or no rows is allowed (recorded as computed).
    plant : callable, optional
        ``plant(cfg, steps, progress, rng) -> {metric: values}``: what
        :func:`~grokking_theories.theories.synthetic.synthetic_table` plants for
        this probe, so that ``check_family`` (and calibration planters) can run
        predictions that read its metrics. ``steps`` are the synthetic run's
        logged steps; ``progress`` holds at least ``fit``, ``gen`` (smooth
        generalisation progress, 0..1), ``test_acc`` (arrays over ``steps``),
        ``t_fit`` and ``t_grok`` (scalars; ``t_grok`` is ``inf`` for a run that
        never generalises); ``rng`` is a ``numpy.random.Generator``. A value
        with one entry per step is planted at every step; a scalar (or one
        value) at the last step, like a per-run summary.
    applies : callable, optional
        ``applies(config) -> bool``: the runs the probe is defined for (default:
        all). Other runs are counted as ``not_defined`` and never loaded.
    description : str
        One line for docs and error messages.
    """

    name: str
    version: int
    metrics: tuple
    compute: Callable
    plant: Optional[Callable] = None
    applies: Optional[Callable] = None
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"probe name must be an identifier, got {self.name!r}")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"probe {self.name!r}: version must be an int >= 1, got {self.version!r}")
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        if not metrics:
            raise ValueError(f"probe {self.name!r} declares no metrics")
        bad = [m for m in metrics if not isinstance(m, str) or not _METRIC_NAME.match(m)]
        if bad:
            raise ValueError(f"probe {self.name!r}: bad metric name(s) {bad} (identifiers, optionally ending in '*')")
        object.__setattr__(self, "metrics", metrics)
        if not callable(self.compute):
            raise ValueError(f"probe {self.name!r}: compute must be callable")
        for attr in ("plant", "applies"):
            if getattr(self, attr) is not None and not callable(getattr(self, attr)):
                raise ValueError(f"probe {self.name!r}: {attr} must be callable or None")

    def produces(self, metric: str) -> bool:
        """Whether ``metric`` is one this probe writes (exactly, or within a ``prefix*`` family)."""
        for m in self.metrics:
            if m.endswith("*"):
                if metric.startswith(m[:-1]) and len(metric) > len(m) - 1:
                    return True
            elif metric == m:
                return True
        return False

    def defined_for(self, config) -> bool:
        """Whether the probe is defined for a run of ``config`` (see ``applies``)."""
        return self.applies is None or bool(self.applies(config))


# ---------------------------------------------------------------------- registry


def register_probe(probe: Probe) -> Probe:
    """Add ``probe`` to :data:`PROBES` (refusing a second, different probe under the same name)."""
    if not isinstance(probe, Probe):
        raise TypeError(f"expected a Probe, got {type(probe).__name__}")
    if probe.name in PROBES and PROBES[probe.name] is not probe:
        raise ValueError(f"a probe named {probe.name!r} is already registered")
    PROBES[probe.name] = probe
    return probe


def _load_builtin() -> None:
    for module in BUILTIN_PROBE_MODULES:
        full = f"{__package__}.{module}"
        try:
            importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name != full:  # the module exists but something it imports does not: a real error
                raise


def get_probe(name: str) -> Probe:
    """The registered probe ``name``.

    Raises
    ------
    ConfigError
        No such probe (with a did-you-mean and the registered names).
    """
    if isinstance(name, Probe):
        return name
    _load_builtin()
    if name not in PROBES:
        raise ConfigError(f"unknown probe {name!r}{did_you_mean(str(name), PROBES)}; "
                          f"registered: {', '.join(sorted(PROBES)) or 'none'}")
    return PROBES[name]


def all_probes() -> list[Probe]:
    """Every registered probe (the package's own first)."""
    _load_builtin()
    return list(PROBES.values())


def family_probes(families) -> list[Probe]:
    """The probes ``families`` declare (``Family.probes``), each once, in order of first mention."""
    out: dict[str, Probe] = {}
    for family in families:
        for name in getattr(family, "probes", ()):
            probe = get_probe(name)
            out.setdefault(probe.name, probe)
    return list(out.values())


def resolve_probes(probes) -> list[Probe]:
    """Probes from Probe objects or registered names (one or an iterable), each once, in order."""
    if isinstance(probes, (str, Probe)):
        probes = [probes]
    out: dict[str, Probe] = {}
    for p in probes:
        probe = get_probe(p)
        if probe.name in out and out[probe.name] is not probe:
            raise ValueError(f"two different probes named {probe.name!r}")
        out[probe.name] = probe
    return list(out.values())


# ---------------------------------------------------------------------- running


@dataclass(frozen=True)
class ProbeCounts:
    """What :func:`run_probes` did.

    Attributes
    ----------
    computed : int
        (run, probe) pairs computed and written now.
    reused : int
        (run, probe) pairs whose stored rows were current (same probe version, same checkpoint).
    skipped_no_checkpoint : int
        Runs that kept no checkpoint (nothing to compute from; their ids: ``runs_without_checkpoint``).
    not_defined : int
        (run, probe) pairs where the probe is not defined for the run's config (``Probe.applies``).
    """

    computed: int = 0
    reused: int = 0
    skipped_no_checkpoint: int = 0
    not_defined: int = 0
    runs_without_checkpoint: tuple = field(default=(), compare=False)

    def summary(self) -> str:
        """``probes: N computed, M reused, K runs without checkpoints`` (and not-defined pairs, if any)."""
        text = (f"probes: {self.computed} computed, {self.reused} reused, "
                f"{self.skipped_no_checkpoint} runs without checkpoints")
        if self.not_defined:
            text += f", {self.not_defined} not defined for the run"
        return text

    def to_dict(self) -> dict:
        out = asdict(self)
        out["runs_without_checkpoint"] = list(self.runs_without_checkpoint)
        return out


@dataclass
class _Plan:
    todo: dict  # run_id -> [Probe] to compute
    shas: dict  # run_id -> recorded checkpoint sha256 (None: no checkpoint)
    reused: int = 0
    not_defined: int = 0
    no_checkpoint: list = field(default_factory=list)


def _plan(store, run_ids, probes: Sequence[Probe]) -> _Plan:
    ids = list(dict.fromkeys(str(r) for r in run_ids))
    shas = store.checkpoint_shas(ids) if ids else {}  # StoreError names unknown ids
    state = store.probe_state(ids) if ids else {}
    plan = _Plan(todo={}, shas=shas)
    configs = {}
    for rid in ids:
        wanted = []
        for probe in probes:
            if probe.applies is not None:
                if rid not in configs:
                    configs[rid] = store.config(rid)
                if not probe.defined_for(configs[rid]):
                    plan.not_defined += 1
                    continue
            wanted.append(probe)
        if not wanted:
            continue
        if shas[rid] is None:
            plan.no_checkpoint.append(rid)
            continue
        stale = [p for p in wanted if state.get((rid, p.name)) != (p.version, shas[rid])]
        plan.reused += len(wanted) - len(stale)
        if stale:
            plan.todo[rid] = stale
    return plan


def pending_probes(store, run_ids: Iterable[str], probes) -> dict[str, list[str]]:
    """Which (run, probe) pairs :func:`run_probes` would compute: probe name -> run ids (only non-empty).

    Reads only the index (no checkpoint is loaded), so it works on a read-only store.
    """
    plan = _plan(store, run_ids, resolve_probes(probes))
    out: dict[str, list[str]] = {}
    for rid, stale in plan.todo.items():
        for probe in stale:
            out.setdefault(probe.name, []).append(rid)
    return out


def run_probes(store, run_ids: Iterable[str], probes, *, progress: bool = True, workers: int = 1) -> ProbeCounts:
    """Compute and store every (run, probe) whose stored rows are missing or out of date.

    Parameters
    ----------
    store : RunStore
        A writer whenever something must be computed (a read-only store is
        fine when every result is current).
    run_ids : iterable of str
        Runs to probe (any status; the driver passes the study's finished runs).
    probes : iterable of Probe or str
        Probes (or registered names) to run.
    progress : bool, default True
        Show a tqdm bar (on stderr) when more than one run is probed.
    workers : int, default 1
        Processes that compute (one torch thread each; the driver alone writes). With more than one, each
        worker opens the store read-only and computes one run's stale probes at a time; the rows are the same
        as with one, and so is what is stored. When some probe cannot be loaded in another process (a lambda,
        or a function of a script's or notebook's ``__main__``), every probe is computed here, in order.

    Returns
    -------
    ProbeCounts

    Raises
    ------
    CorruptCheckpointError
        A run's checkpoint (needed for a recomputation) is missing, damaged or
        does not match its recorded sha256; the message names the file. The
        run's out-of-date rows are not reused: nothing is written for it.
    StoreError
        An unknown run id, or a read-only store with something to compute.
    ValueError
        A probe returned malformed rows or a metric it does not declare.
    ConfigError
        An unknown probe name.

    Notes
    -----
    Per run, the checkpoint is loaded once (only if some probe is out of
    date) and handed to each out-of-date probe's ``compute``, which batches
    over the checkpoints. Each (run, probe) is written in its own
    transaction together with the probe's version and the checkpoint sha256
    it was computed from. A current result is never recomputed, and the
    checkpoint file of such a run is not read at all.
    """
    probes = resolve_probes(probes)
    plan = _plan(store, run_ids, probes)
    n_todo = sum(len(v) for v in plan.todo.values())
    if n_todo and store.readonly:
        names = sorted({p.name for stale in plan.todo.values() for p in stale})
        raise StoreError(f"run store {store.root} is open read-only; {n_todo} (run, probe) result(s) of "
                         f"probe(s) {', '.join(names)} must be computed, which needs a writer")
    computed = 0
    if plan.todo:
        from tqdm import tqdm

        with tqdm(total=len(plan.todo), unit="run", desc="probes", dynamic_ncols=True,
                  disable=not progress or len(plan.todo) <= 1) as bar:
            bar.set_postfix_str(", ".join(sorted({p.name for stale in plan.todo.values() for p in stale})))
            with contextlib.closing(_computed(store, plan.todo, workers)) as results_by_run:  # pool shut on error
                for rid, results in results_by_run:
                    for probe, rows in results:
                        store.write_probe(rid, probe.name, probe.version, rows, checkpoint_sha256=plan.shas[rid])
                        computed += 1
                    bar.update(1)
    return ProbeCounts(computed=computed, reused=plan.reused, skipped_no_checkpoint=len(plan.no_checkpoint),
                       not_defined=plan.not_defined, runs_without_checkpoint=tuple(plan.no_checkpoint))


def _computed(store, todo: Mapping[str, Sequence[Probe]], workers: int):
    """Yield ``(run id, [(probe, validated rows)])`` for every run of ``todo``: here, or in ``workers`` processes
    (all of them here when some stale probe cannot travel to another process)."""
    if workers > 1 and len(todo) > 1 and not all(_can_travel(p) for stale in todo.values() for p in stale):
        workers = 1
    if workers <= 1 or len(todo) <= 1:
        for rid, stale in todo.items():
            yield rid, _probe_run(store, rid, stale)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from ..execution.local import _init_worker

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_init_worker) as pool:
        futures = {pool.submit(_probe_run_in_worker, str(store.root), rid, list(stale)): rid
                   for rid, stale in todo.items()}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _can_travel(probe: Probe) -> bool:
    """Whether a worker process can load ``probe``: it pickles, and its code is not in ``__main__`` (a script's
    or notebook's own functions pickle by name but do not exist in a spawned worker)."""
    import pickle

    if getattr(probe.compute, "__module__", None) == "__main__" or type(probe.compute).__module__ == "__main__":
        return False
    try:
        pickle.dumps(probe)
    except Exception:  # a closure or lambda
        return False
    return True


def _probe_run(store, rid: str, stale: Sequence[Probe]) -> list:
    """Every stale probe's validated rows for one run (its checkpoint loaded once, verified)."""
    checkpoint = store.load_checkpoints(rid)  # CorruptCheckpointError names the file
    config = store.config(rid)
    logged = store.metrics_table(run_ids=[rid], probes=False)[["step", "metric", "value"]]
    out = []
    for probe in stale:
        try:
            out.append((probe, _validated(probe, rid, probe.compute(config, checkpoint, logged))))
        except Exception as exc:
            exc.add_note(f"while computing probe {probe.name!r} (version {probe.version}) on run {rid}")
            raise
    return out


def _probe_run_in_worker(root: str, rid: str, stale: Sequence[Probe]) -> list:
    """:func:`_probe_run` in a worker process, on its own read-only view of the store (the driver writes)."""
    from ..store import RunStore

    with RunStore(root, readonly=True) as reader:
        return _probe_run(reader, rid, stale)


def _validated(probe: Probe, rid: str, rows):
    """``compute``'s output as a (step, metric, value) frame, every metric one the probe declares."""
    import pandas as pd

    if rows is None:
        return pd.DataFrame({"step": pd.Series(dtype="int64"), "metric": pd.Series(dtype="str"),
                             "value": pd.Series(dtype="float64")})
    if not isinstance(rows, pd.DataFrame):
        raise ValueError(f"probe {probe.name!r} on run {rid}: compute must return a DataFrame with columns "
                         f"step, metric, value (or None), got {type(rows).__name__}")
    missing = [c for c in ("step", "metric", "value") if c not in rows.columns]
    if missing:
        raise ValueError(f"probe {probe.name!r} on run {rid}: compute's frame lacks column(s) {missing}")
    undeclared = sorted({m for m in rows["metric"].unique() if not (isinstance(m, str) and probe.produces(m))},
                        key=str)
    if undeclared:
        raise ValueError(f"probe {probe.name!r} on run {rid} returned metric(s) {undeclared[:5]} that it does not "
                         f"declare (Probe.metrics = {list(probe.metrics)})")
    return rows[["step", "metric", "value"]]


# ---------------------------------------------------------------------- reading without a writer


class ProbeRowsMissingWarning(UserWarning):
    """A read-only store lacks current rows of probes a report needs (they cannot be computed read-only)."""


def missing_probes_message(store, pending: Mapping[str, Sequence[str]], n_runs: int) -> str:
    """One sentence saying which probe rows a read-only ``store`` lacks and how to get them."""
    parts = [f"{name!r} for {len(ids)} of {n_runs} run(s) (e.g. {ids[0]})" for name, ids in pending.items()]
    return (f"run store {store.root} is open read-only and lacks current rows of probe {'; '.join(parts)}; "
            "they cannot be computed without a writer, so predictions reading them see these runs without them "
            "(inconclusive where too few remain). Open the store as a writer to compute and store them, e.g. "
            "`python -m grokking_theories.study report --out DIR` once no other driver is training into it.")


# ---------------------------------------------------------------------- planting (synthetic tables)


def plant_probe(probe: Union[Probe, str], cfg, steps, progress: Mapping, rng) -> dict[str, tuple]:
    """The rows ``probe.plant`` plants for one synthetic run: ``{metric: (steps, values)}``.

    A value with one entry per step is planted at every step; a scalar or a
    single value at the last step. Raises ValueError for a probe without a
    ``plant``, a metric the probe does not declare, or a value of another length.
    """
    probe = get_probe(probe)
    if probe.plant is None:
        raise ValueError(f"probe {probe.name!r} has no plant: synthetic tables cannot carry its metrics")
    steps = np.asarray(steps)
    out = {}
    for metric, values in probe.plant(cfg, steps, progress, rng).items():
        if not probe.produces(metric):
            raise ValueError(f"probe {probe.name!r} plants metric {metric!r} that it does not declare")
        v = np.atleast_1d(np.asarray(values, dtype=float))
        if v.shape == (1,):
            out[metric] = (steps[-1:], v)
        elif v.shape == steps.shape:
            out[metric] = (steps, v)
        else:
            raise ValueError(f"probe {probe.name!r} planted {v.shape[0]} values of {metric!r} for "
                             f"{steps.size} steps; give one per step or one for the run")
    return out

