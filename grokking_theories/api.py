"""The Python API for notebooks: run a study, or reopen a finished one, and get a results object.

::

    import grokking_theories as gt

    results = gt.run_study("omnigrok", scale="quick", out="runs/omnigrok-quick")
    results.summary()            # text, statsmodels-style
    results.verdicts             # one row per verdict (headline first), a DataFrame
    results.table                # the tidy long-form table of every finished run
    results.figure("goldilocks:figure_lu")   # a family figure, drawn on demand

    results = gt.load("runs/omnigrok-quick")  # reopen without training

``run_study`` does what ``python -m grokking_theories.study NAME`` does (the
CLI is a thin layer over it): it trains only the runs the store lacks, runs
the declared probes, writes ``report.html`` / ``report.json`` and
``study.json`` into ``out``, and returns a :class:`StudyResults`. ``load``
reads ``out/study.json``, opens the store read-only and evaluates the same
verdicts again (deterministic: they equal the report's).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from .errors import GrokkingError


class StudyResults:
    """A finished study: its runs, verdicts and figures.

    Attributes
    ----------
    study : Study
        The study (name, scale, arms) from :func:`grokking_theories.studies.load_study`.
    table : pandas.DataFrame
        The tidy long-form table of the study's finished runs (logged and probe metrics).
    out : Path
        The study's output folder (report, study record).
    comparison : Comparison or None
        For a study that includes others (``all``): every explanation's predictions on every included
        study's runs (:class:`~grokking_theories.theories.comparison.Comparison`, with its own ``summary()``).
    failed : dict
        ``{run_id: error}`` of runs whose training raised in this call (empty from :func:`load`); they are
        stored as ``'failed'`` with their tracebacks, left out of the verdicts, and retried by the next run.
    store_dir : Path or None
        The run store the study read.
    """

    def __init__(self, study, table, verdicts, out: Path, comparison=None, *, failed=None, store_dir=None):
        self.study, self.table, self.out = study, table, Path(out)
        self._verdicts = list(verdicts)
        self.comparison = comparison
        self.failed = dict(failed or {})
        self.store_dir = store_dir

    # --- tables ---------------------------------------------------------------------------------
    @property
    def verdicts(self):
        """Every verdict as a DataFrame, one row each: the headline ones (one per prediction, on its
        primary design, one Holm family) first, then the secondary cells."""
        from .stats import VerdictTable

        return VerdictTable(self._verdicts).to_frame()

    @property
    def headline(self):
        """The headline verdicts only, as a DataFrame."""
        frame = self.verdicts
        return frame[frame["role"] == "headline"].reset_index(drop=True)

    def summary(self) -> str:
        """The headline verdicts as fixed-width text, with the study, scale, runs and where the report is."""
        from .stats import VerdictTable

        runs = self.table["run_id"].nunique() if not self.table.empty else 0
        head = (f"study {self.study.name} [{self.study.scale}]: {runs} finished run(s) of {len(self.study.configs)}; "
                f"report {self.out / 'report.html'}")
        if self.comparison is not None:
            return f"{head}\n{self.comparison.summary()}"
        body = VerdictTable([v for v in self._verdicts if v.role == "headline"]).summary()
        return f"{head}\n{body}"

    def __repr__(self) -> str:
        counts = {}
        for v in self._verdicts:
            if v.role == "headline":
                counts[v.verdict] = counts.get(v.verdict, 0) + 1
        shown = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        return f"<StudyResults {self.study.name} [{self.study.scale}]: {shown or 'no verdicts'}>"

    def _repr_html_(self) -> str:
        import html

        cols = ["prediction_id", "verdict", "effect_name", "effect_size", "ci_low", "ci_high", "p_value",
                "p_adjusted", "n_runs"]
        frame = self.headline[cols].rename(columns={"prediction_id": "id", "n_runs": "n"})
        holm = ("Holm-adjusted within each explanation, as in its own study" if self.comparison is not None
                else "Holm-adjusted as one family")
        evidence = ""
        if self.comparison is not None:
            items = []
            for family in self.comparison.families:
                pro, con = self.comparison.evidence(family)
                items.append(f"<li><b>{html.escape(family.title)}</b> ({html.escape(family.name)}): "
                             f"<i>for</i>: {html.escape(pro)}; <i>against</i>: {html.escape(con)}</li>")
            evidence = "<ul>" + "".join(items) + "</ul>"
        return (f"<p><b>{html.escape(self.study.name)}</b> [{html.escape(self.study.scale)}]: headline verdicts "
                f"(one per prediction, on its primary design; {holm}). Full report: "
                f"<code>{html.escape(str(self.out / 'report.html'))}</code></p>" + evidence
                + frame.to_html(index=False, float_format=lambda x: f"{x:.3g}", na_rep="–"))

    # --- figures --------------------------------------------------------------------------------
    @property
    def figure_names(self) -> list[str]:
        """Names :meth:`figure` accepts: ``family:function`` for every figure of the study's families."""
        from .theories import get_family

        return [f"{name}:{fig.__name__}" for name in self.study.families for fig in get_family(name).figures]

    def figure(self, name: str):
        """Draw one family figure on this study's runs; returns a matplotlib Figure (None if the runs lack
        what it draws). ``name`` is ``family:function`` or just the function name when that is unique."""
        from .config import did_you_mean
        from .theories import get_family

        names = self.figure_names
        matches = [n for n in names if n == name or n.split(":", 1)[1] == name]
        if len(matches) != 1:
            why = "is ambiguous" if matches else "is not a figure of this study"
            raise GrokkingError(f"{name!r} {why}{did_you_mean(name, names)}; figures: {', '.join(names)}")
        family, function = matches[0].split(":", 1)
        draw = next(f for f in get_family(family).figures if f.__name__ == function)
        if self.study.members:  # drawn on the family's own study's runs, as in the report
            own_study = get_family(family).study
            if own_study not in self.study.members:
                raise GrokkingError(f"{family}'s figures draw its own study's runs ({own_study!r}), which "
                                    f"{self.study.name!r} does not include")
            own = set(self.study.run_sets()[own_study])
            return draw(self.table[self.table["run_id"].isin(own)])
        return draw(self.table)


def run_study(name: str, scale: str = "quick", *, out=None, store=None, device: str = "auto",
              workers: Optional[int] = None, ensemble_size: Optional[int] = None, executor: str = "local",
              scheduler: Optional[str] = None, tf32: bool = False, retrain=()) -> StudyResults:
    """Train (or reuse) a study's runs, write its report and return the results.

    Parameters
    ----------
    name : str
        A study in ``studies/`` (``python -m grokking_theories.study list``) or the path of a TOML file.
    scale : {'quick', 'paper'}
    out : path, optional
        Output folder (default ``runs/NAME-SCALE``): report.html, report.json, study.json.
    store : path, optional
        Run store folder. Default: ``runs/store``, one store shared by every study run with the default
        ``out``, so ``study all`` reuses the runs of ``study omnigrok`` (and the reverse); with an explicit
        ``out``, ``OUT/store``.
    device : {'auto', 'cpu', 'cuda'}
    workers : int, optional
        Training processes, one torch thread each (default: the CPU count on cpu, 1 on cuda).
    ensemble_size : int, optional
        Most runs trained as one batched model (default: measured per architecture).
    executor : {'local', 'dask'}
        Where runs train: a local process pool, or a Dask cluster (``scheduler``'s, else a LocalCluster of
        ``workers`` processes). Every executor gives the same metric rows; only the driver writes the store.
    scheduler : str, optional
        Address of a running Dask scheduler (with ``executor='dask'``).
    tf32 : bool, default False
        On a GPU, allow TF32 matmuls (off by default; see :func:`grokking_theories.training.parse_device`).
    retrain : str or iterable of str
        Run ids of the study to train again although they are finished (a run whose checkpoint file was
        damaged, say); each keeps its old result until the new one is written over it.

    Runs whose training raises do not stop the study: they are stored as ``'failed'`` and listed in
    :attr:`StudyResults.failed` (the CLI then exits with status 1, naming them).
    """
    from .report.collect import probed_metrics_table
    from .store import RunStore
    from .studies import load_study
    from .study import (check_retrain, default_workers, print_run_table, probe_study, resolve_device,
                        train_missing, write_report)
    from .theories import get_family

    study = load_study(name, scale)  # every key and value checked before any training
    retrain = check_retrain(study, retrain)
    out, store_dir = study_folders(study, out, store)
    device = resolve_device(device, tf32)
    workers = default_workers(workers, device)
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    with RunStore(store_dir) as writer:
        counts = train_missing(study, writer, device, workers, ensemble_size, executor=executor,
                               scheduler=scheduler, retrain=retrain)
        probe_counts = probe_study(study, writer, workers=workers)
        record = {"study": study.name, "path": str(study.path.resolve()), "scale": study.scale,
                  "store": str(store_dir.resolve()), "device": device, "wall_time": time.time() - start,
                  **counts, "probes": None if probe_counts is None else probe_counts.to_dict()}
        (out / "study.json").write_text(json.dumps(record, indent=2))
        print_run_table(study, writer)
        print(f"\n{counts['trained']} runs trained, {counts['reused']} reused from {store_dir}")
        finished = sorted(writer.finished_ids() & {c.run_id for c in study.configs})
        table = probed_metrics_table(writer, finished, [get_family(n) for n in study.families])
        data = write_report(study, writer, out, table=table)
    return StudyResults(study, table, data.verdicts, out, data.comparison, failed=counts["failed"],
                        store_dir=store_dir)


#: Where studies run with the default output folder keep their runs: one store, so studies share runs.
SHARED_STORE = Path("runs") / "store"


def default_store(out: Path, *, explicit_out: bool) -> Path:
    """The run store of a study whose ``store`` was not given (see :func:`run_study`)."""
    return Path(out) / "store" if explicit_out else SHARED_STORE


def study_folders(study, out=None, store=None) -> tuple[Path, Path]:
    """``(out, store)`` of a study run: the given folders, else ``runs/NAME-SCALE`` and :func:`default_store`."""
    out_dir = Path(out) if out is not None else Path("runs") / f"{study.name}-{study.scale}"
    return out_dir, Path(store) if store is not None else default_store(out_dir, explicit_out=out is not None)


def load(out, *, store=None) -> StudyResults:
    """Reopen a finished study from its output folder, training nothing and writing nothing.

    Reads ``out/study.json`` (written by :func:`run_study` and the CLI), opens the store read-only and
    evaluates the study's families on its finished runs: the same verdicts as the report's.
    """
    from .report.collect import evaluate_study, probed_metrics_table
    from .store import RunStore
    from .studies import load_study
    from .theories import get_family

    out = Path(out)
    record_path = out / "study.json"
    if not record_path.is_file():
        raise GrokkingError(f"{record_path} not found: load() needs the output folder of a finished study")
    try:
        record = json.loads(record_path.read_text())
        study = load_study(record["path"], record["scale"])
    except (ValueError, KeyError) as exc:
        raise GrokkingError(f"{record_path} is corrupt ({exc}); rerun the study to rewrite it") from None
    store_dir = Path(store) if store is not None else Path(record.get("store", out / "store"))
    families = [get_family(n) for n in study.families]
    with RunStore(store_dir, readonly=True) as reader:
        finished = sorted(reader.finished_ids() & {c.run_id for c in study.configs})
        table = probed_metrics_table(reader, finished, families)
    verdicts, comparison = evaluate_study(table, study, families)
    return StudyResults(study, table, verdicts, out, comparison, store_dir=store_dir)
