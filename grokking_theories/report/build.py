"""Collecting a study's report (verdicts, figures, run table, provenance) and rendering it."""
from __future__ import annotations

import hashlib
import math
import os
import platform
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..levels import ALPHA, FIT_ACC, GROK_ACC, MIN_BOOTSTRAP_RUNS, pct
from .censoring import CensoringSummary, censoring_summary
from .figures import ReportFigure, close_figure, format_value, grokking_figure, png_bytes, weight_norm_figure

#: Bumped when the layout of report.json changes in a way readers must know about.
#: 2: top-level ``headline`` (one verdict per prediction, on its primary design), ``censoring`` and
#: ``setting``; every verdict carries its ``role`` ('headline' or 'secondary').
FORMAT_VERSION = 2

#: Significant digits of every float in report.json. Enough for any reader of a report, and
#: coarse enough that last-bit differences of a BLAS or optimiser do not change the file.
JSON_DIGITS = 6

#: Runs-table summary columns: (store column, report column).
SUMMARY_COLUMNS = (
    ("summary_t_fit", "t_fit"),
    ("summary_t_grok", "t_grok"),
    ("summary_final_test_acc", "final_test_acc"),
    ("summary_final_weight_norm", "final_weight_norm"),
)

#: Libraries whose versions can change a verdict or a figure.
DEPENDENCIES = ("numpy", "scipy", "pandas", "statsmodels", "torch", "matplotlib", "seaborn", "jinja2")

#: Status shown for a run of the study that the store does not hold.
NOT_IN_STORE = "not in store"


@dataclass
class ReportData:
    """Everything a report shows, before formatting.

    Attributes
    ----------
    study, scale, description : str
        The study's name, scale and description.
    families : list of Family
        The families whose predictions were evaluated, in report order.
    run_sets : dict of str -> list of str
        Run-set label -> run ids (each arm, then ``"all"`` when there are several arms).
    finished : list of str
        Sorted ids of the study's runs that the store has finished (the runs evaluated).
    verdicts : list of Verdict
        From :func:`~grokking_theories.theories.evaluate_families`: the headline verdicts (one per
        prediction, on its primary design, one Holm family), then the secondary cells (each
        prediction on each run set, their own Holm family).
    figures : list of ReportFigure
    run_columns : list of str
        Columns of the run table.
    runs : list of dict
        The run table, one dict per (arm, run), sorted by arm, varying config values and seed.
    varying : list of str
        Config columns (seed excluded) that vary across the study's runs.
    provenance : dict
        What produced the report (package version and commit, study file, runs, devices, wall time).
    censoring : CensoringSummary or None
        Runs censored at their budget, per arm, with the budget that would resolve them.
    setting : dict
        The setting the verdicts are about (:func:`scale_setting`), with its one-sentence caveat.
    """

    study: str
    scale: str
    description: str
    families: list
    run_sets: dict
    finished: list
    verdicts: list
    figures: list
    run_columns: list
    runs: list
    varying: list
    provenance: dict
    censoring: Optional[CensoringSummary] = None
    setting: dict = field(default_factory=dict)

    @property
    def headline(self) -> list:
        """The headline verdicts (role 'headline'), one per prediction, in report order."""
        return [v for v in self.verdicts if v.role == "headline"]

    @property
    def secondary(self) -> list:
        """The secondary (robustness) cells: each prediction on each run set."""
        return [v for v in self.verdicts if v.role == "secondary"]

    def verdict(self, prediction_id: str, run_set: str, role: str = "secondary"):
        """The verdict of one prediction on one run set (a secondary cell by default), or None."""
        for v in self.verdicts:
            if v.prediction_id == prediction_id and v.run_set == run_set and v.role == role:
                return v
        return None

    def headline_verdict(self, prediction_id: str):
        """The headline verdict of one prediction, or None."""
        return next((v for v in self.headline if v.prediction_id == prediction_id), None)

    def to_dict(self) -> dict[str, Any]:
        """The content of report.json: JSON types only, non-finite floats as None."""
        return _jsonable({
            "format": "grokking_theories.report",
            "format_version": FORMAT_VERSION,
            "study": self.study,
            "scale": self.scale,
            "description": self.description,
            "families": [f.name for f in self.families],
            "run_sets": {label: list(ids) for label, ids in self.run_sets.items()},
            "finished": list(self.finished),
            "provenance": self.provenance,
            "headline": [headline_entry(v) for v in self.headline],
            "censoring": self.censoring.to_dict() if self.censoring is not None else None,
            "setting": self.setting,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "run_columns": list(self.run_columns),
            "runs": self.runs,
            "figures": [{"key": f.key, "title": f.title, "caption": f.caption} for f in self.figures],
        })


# ---------------------------------------------------------------------- public entry point


def build_report(study, store, out_dir, *, families=None, provenance_overrides=None) -> tuple[Path, Path]:
    """Write the comparison report of a study: ``out_dir/report.html`` and ``out_dir/report.json``.

    Parameters
    ----------
    study : Study
        From :func:`grokking_theories.studies.load_study`. Its arms are the
        run sets; with more than one arm, ``"all"`` (every run) is added.
    store : RunStore
        Where the runs live. Only the study's finished runs are evaluated and
        drawn; the run table lists every run of the study, those the store
        lacks as ``'not in store'``. The rows of the probes the families
        declare (``Family.probes``) are read from the store: a writer first
        computes and stores any that are missing (:func:`probed_metrics_table`);
        a read-only store is enough when they are all stored (else a
        ``ProbeRowsMissingWarning`` names the missing ones).
    out_dir : str or os.PathLike
        Created if needed. Nothing is written anywhere else.
    families : sequence of Family, optional
        Whose predictions to evaluate. Default: the families the study file
        lists (``[get_family(n) for n in study.families]``).
    provenance_overrides : mapping, optional
        Replaces provenance fields (keys of ``ReportData.provenance``), e.g.
        ``{"git_commit": "golden"}`` to pin machine-specific values in tests.

    Returns
    -------
    (Path, Path)
        The HTML and JSON paths.

    Raises
    ------
    ValueError
        ``provenance_overrides`` names a field the provenance does not have.

    Notes
    -----
    Deterministic: the same store (and package and library versions) gives
    byte-identical files. If pyplot has not been imported yet it is set to
    the Agg backend, because family figure functions may use pyplot and a
    report must build on a machine without a display.
    """
    data = collect_report_data(study, store, families=families, provenance_overrides=provenance_overrides)
    return write_report_files(data, out_dir)


def collect_report_data(study, store, *, families=None, provenance_overrides=None, table=None) -> ReportData:
    """Evaluate, draw and tabulate a study's runs; see :func:`build_report` for the parameters.

    ``table``: the study's tidy table (:func:`probed_metrics_table` of its finished runs) when the caller
    already has it; read from the store when omitted.
    """
    from ..theories import evaluate_families, get_family

    if families is None:
        families = [get_family(n) for n in study.families]
    families = list(families)
    study_ids = [c.run_id for c in study.configs]
    finished = sorted(store.finished_ids() & set(study_ids))
    if table is None:
        table = probed_metrics_table(store, finished, families)

    run_sets = study_run_sets(study)
    verdicts = evaluate_families(table, families, run_sets, study=study.name)

    runs_df = store.runs_table()
    runs_df = runs_df[runs_df["run_id"].isin(set(study_ids))]
    varying, columns, runs = run_table_records(study, runs_df)
    provenance = _provenance(study, store, runs_df, finished, provenance_overrides or {})
    figures = _figures(study, table, families)
    return ReportData(study=study.name, scale=study.scale, description=study.description, families=families,
                      run_sets=run_sets, finished=finished, verdicts=verdicts, figures=figures,
                      run_columns=columns, runs=runs, varying=varying, provenance=provenance,
                      censoring=censoring_summary(study, table, finished), setting=scale_setting(study))


def study_run_sets(study) -> dict[str, list[str]]:
    """Run-set label -> run ids: each arm, then every run (labelled ``all``) when the study has several arms."""
    run_sets = {arm.name: [c.run_id for c in arm.configs] for arm in study.arms}
    if len(study.arms) > 1:
        run_sets[_all_label(run_sets)] = [c.run_id for c in study.configs]
    return run_sets


def write_report_files(data: ReportData, out_dir) -> tuple[Path, Path]:
    """Render ``data`` into ``out_dir/report.html`` and ``out_dir/report.json`` (atomic writes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "report.html", out / "report.json"
    _atomic_write(html_path, render_html(data).encode("utf-8"))
    _atomic_write(json_path, render_json(data).encode("utf-8"))
    return html_path, json_path


def headline_entry(v) -> dict[str, Any]:
    """One entry of report.json's ``headline`` list (floats rounded by :func:`_jsonable` later)."""
    return {"id": v.prediction_id, "verdict": v.verdict, "test": v.test, "effect": v.effect_size,
            "effect_name": v.effect_name, "ci": [v.ci_low, v.ci_high], "p": v.p_value,
            "p_adjusted": v.p_adjusted, "n": v.n_runs, "run_filter": v.design, "notes": v.notes}


def probed_metrics_table(store, run_ids, families, *, progress: bool = False):
    """The tidy table of ``run_ids`` with the stored rows of the probes ``families`` declare.

    On a writer, every declared probe that is missing or out of date for a run
    is first computed and stored (:func:`~grokking_theories.probes.stage.run_probes`;
    after the study driver has run them this computes nothing). A read-only
    store cannot store them: if some are missing, a
    :class:`~grokking_theories.probes.stage.ProbeRowsMissingWarning` says which
    and how to get them, and the table holds what is stored. Either way only
    rows of the probes' current versions, computed from the runs' current
    checkpoints, are read; nothing is recomputed on the fly.
    """
    from ..probes.stage import (ProbeRowsMissingWarning, family_probes, missing_probes_message, pending_probes,
                                run_probes)

    probes = family_probes(families)
    if probes and run_ids:
        if store.readonly:
            pending = pending_probes(store, run_ids, probes)
            if pending:
                warnings.warn(missing_probes_message(store, pending, len(run_ids)), ProbeRowsMissingWarning,
                              stacklevel=2)
        else:
            run_probes(store, run_ids, probes, progress=progress)
    return store.metrics_table(run_ids, probes={p.name: p.version for p in probes})


def render_json(data: ReportData) -> str:
    """report.json text: sorted keys, two-space indent, no NaN (null instead)."""
    import json

    return json.dumps(data.to_dict(), sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def render_html(data: ReportData) -> str:
    """report.html text from the packaged Jinja2 template."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("grokking_theories.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field must fail the build, not render blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html").render(**_view(data))


# ---------------------------------------------------------------------- run sets and run table


def _all_label(run_sets: Mapping[str, Any]) -> str:
    # An arm may itself be called "all"; the union must not overwrite it.
    label = "all"
    while label in run_sets:
        label = f"{label}*"
    return label


def _config_order() -> list[str]:
    from ..config import RunConfig

    return list(RunConfig().flat())


def _varying(flats: Sequence[dict]) -> list[str]:
    """Config fields (seed excluded) with more than one value across ``flats``, in config order."""
    out = []
    for name in _config_order():
        if name == "seed":
            continue
        if len({repr(f.get(name)) for f in flats}) > 1:
            out.append(name)
    return out


def run_table_records(study, runs_df) -> tuple[list[str], list[str], list[dict]]:
    """(varying columns, column names, records): one record per (arm, run) of the study."""
    from .figures import _sort_key

    flats = [c.flat() for c in study.configs]
    varying = _varying(flats)
    stored = {str(r["run_id"]): r for r in runs_df.to_dict("records")}
    records = []
    for arm_index, arm in enumerate(study.arms):
        for cfg in arm.configs:
            flat = cfg.flat()
            row = stored.get(cfg.run_id, {})
            rec = {"arm": arm.name, "run_id": cfg.run_id, **{c: flat[c] for c in varying}, "seed": cfg.seed,
                   "status": str(row.get("status", NOT_IN_STORE))}
            for src, dst in SUMMARY_COLUMNS:
                rec[dst] = row.get(src)
            rec["wall_time"] = row.get("wall_time")
            rec["device"] = row.get("device")
            rec = {k: _plain(v) for k, v in rec.items()}
            sort_key = (arm_index, tuple(_sort_key(flat[c]) for c in varying), cfg.seed, cfg.run_id)
            records.append((sort_key, rec))
    records.sort(key=lambda kr: kr[0])
    columns = (["arm", "run_id", *varying, "seed", "status"] + [dst for _, dst in SUMMARY_COLUMNS]
               + ["wall_time", "device"])
    return varying, columns, [rec for _, rec in records]


# ---------------------------------------------------------------------- the setting a verdict is about

#: Config fields that make up "the setting" the report's caveat names (task, modulus, model size, lr).
SETTING_FIELDS = ("op", "p", "train_frac", "arch", "width", "d_model", "lr")

_OP_TEXT = {"add": "a+b", "sub": "a-b", "mul": "a*b", "div": "a/b", "x2_plus_y2": "a^2+b^2",
            "x2_plus_xy_plus_y2": "a^2+ab+b^2", "x3_plus_xy": "a^3+ab"}


def _scale_base(data: Mapping[str, Any], scale: str) -> Optional[dict[str, Any]]:
    """The setting fields of one scale of a study file: its ``base`` over the run-config defaults."""
    from ..config import RunConfig

    spec = data.get(scale)
    if not isinstance(spec, Mapping):
        return None
    base = spec.get("base", {}) if isinstance(spec.get("base", {}), Mapping) else {}
    defaults = RunConfig().flat()
    return {f: _plain(base.get(f, defaults.get(f))) for f in SETTING_FIELDS}


def describe_setting(values: Mapping[str, Any]) -> str:
    """'a+b mod 59, train fraction 0.5, an embedding MLP of width 128, AdamW lr 0.01'."""
    task = f"{_OP_TEXT.get(values.get('op'), values.get('op'))} mod {values.get('p')}, " \
           f"train fraction {format_value(values.get('train_frac'))}"
    arch = values.get("arch")
    if arch == "mlp":
        model = f"an embedding MLP of width {values.get('width')}"
    elif arch == "transformer":
        model = f"Nanda et al.'s 1-layer transformer (d_model {values.get('d_model')})"
    else:
        model = f"a {arch} model"
    return f"{task}, {model}, AdamW lr {format_value(values.get('lr'))}"


def scale_setting(study) -> dict[str, Any]:
    """The setting the study's verdicts are about, from its file's base config, and the caveat sentence.

    Returns ``{"scale", "setting", "description", "paper_setting", "sentence"}``; ``paper_setting`` is the
    paper scale's description when the report is at another scale and the file declares one.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data = tomllib.loads(Path(study.path).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        data = {}
    values = _scale_base(data, study.scale)
    if values is None:  # the file changed since the study was loaded: the configs' most common values
        from collections import Counter

        flats = [c.flat() for c in study.configs]
        values = {}
        for f in SETTING_FIELDS if flats else ():
            by_repr = {repr(x.get(f)): x.get(f) for x in flats}
            values[f] = _plain(by_repr[Counter(repr(x.get(f)) for x in flats).most_common(1)[0][0]])
    here = describe_setting(values) if values else "unknown"
    paper = _scale_base(data, "paper") if study.scale != "paper" else None
    paper_text = describe_setting(paper) if paper else None
    if study.scale == "paper":
        sentence = (f"Paper scale: the papers' setting ({here}, the study's base config); still one task, one "
                    f"modulus, one model and one learning rate, so every verdict is a finding about that setting.")
    elif paper_text:
        sentence = (f"{study.scale.capitalize()} scale: every verdict is a finding about one setting ({here}, "
                    f"the study's base config), and the papers' setting is different ({paper_text}, this study's "
                    f"paper scale): a verdict here does not carry over to it untested.")
    else:
        sentence = (f"{study.scale.capitalize()} scale: every verdict is a finding about one setting ({here}, "
                    f"the study's base config), and the papers' settings are different (this study file "
                    f"declares no paper scale): a verdict here does not carry over to them untested.")
    return {"scale": study.scale, "setting": values, "description": here, "paper_setting": paper_text,
            "sentence": sentence}


# ---------------------------------------------------------------------- figures


def _hue_columns(configs) -> list[str]:
    return _varying([c.flat() for c in configs])


def _figures(study, table, families) -> list[ReportFigure]:
    """The report's figures; a warning raised while drawing one is quoted in its caption, never printed."""
    figures = []
    arms = [(arm.name, [c.run_id for c in arm.configs], _hue_columns(arm.configs)) for arm in study.arms]
    for name, ids, hue in arms:
        varies = ", ".join(hue) if hue else "nothing but the seed"
        _add_figure(figures, lambda: grokking_figure(table, name, ids, hue), f"grokking:{name}",
                    f"Grokking curves, arm {name}",
                    f"Accuracy and loss against training step (log scale) for the arm {name!r}; "
                    f"colour: {varies}. Thin faded lines are single seeds, bold lines the mean "
                    f"over seeds (a seed that stopped early keeps its last value).", tight=False)
    _add_figure(figures, lambda: weight_norm_figure(table, arms), "weight_norm", "Weight norm",
                "Total parameter norm against training step (log scale), one panel per arm; "
                "same colours and seed/mean convention as the grokking curves.", tight=False)
    _ensure_headless_pyplot()
    for family in families:
        for func in family.figures:
            name = getattr(func, "__name__", type(func).__name__)
            doc = (getattr(func, "__doc__", None) or "").strip().splitlines()
            _add_figure(figures, lambda: func(table), f"{family.name}:{name}",
                        f"{family.title} ({family.name}: {name})", doc[0] if doc else "")
    return figures


def _add_figure(figures: list, draw, key: str, title: str, caption: str, *, tight: bool = True) -> None:
    """Draw and save one figure (None: skipped), capturing warnings into its caption."""
    import warnings

    from ..theories.base import warning_note

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = draw()
        saved = None if fig is None else _save(fig, key, title, caption, tight=tight)
    if saved is None:
        return
    note = warning_note(caught, verdict=False)
    if note:
        saved = ReportFigure(saved.key, saved.title, f"{saved.caption} (Note: {note}.)".lstrip(), saved.png)
    figures.append(saved)


def _save(fig, key: str, title: str, caption: str, *, tight: bool = True) -> ReportFigure:
    try:
        return ReportFigure(key, title, caption, png_bytes(fig, tight=tight))
    finally:
        close_figure(fig)


def _ensure_headless_pyplot() -> None:
    """Agg for pyplot-based family figures, unless the caller already chose a backend by importing pyplot."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


# ---------------------------------------------------------------------- provenance


def _provenance(study, store, runs_df, finished, overrides: Mapping[str, Any]) -> dict[str, Any]:
    import grokking_theories

    study_path = Path(study.path)
    try:
        study_sha = hashlib.sha256(study_path.read_bytes()).hexdigest()
    except OSError:
        study_sha = "none"
    walls = [float(w) for w in runs_df["wall_time"].tolist() if _plain(w) is not None]
    devices = sorted({str(d) for d in runs_df["device"].tolist() if _plain(d) is not None})
    prov: dict[str, Any] = {
        "package": "grokking_theories",
        "version": grokking_theories.__version__,
        "git_commit": None,
        "git_dirty": None,
        "python": platform.python_version(),
        "dependencies": None,
        "study": study.name,
        "study_path": str(study_path.resolve()),
        "study_sha256": study_sha,
        "scale": study.scale,
        "store": str(store.root),
        "n_runs": len(study.configs),
        "n_finished": len(finished),
        "run_ids": sorted(c.run_id for c in study.configs),
        "seeds": sorted({c.seed for c in study.configs}),
        "devices": devices,
        "total_wall_time_s": float(sum(walls)),
    }
    unknown = sorted(set(overrides) - set(prov))
    if unknown:
        raise ValueError(f"provenance_overrides has unknown field(s) {unknown}; fields: {sorted(prov)}")
    # Git and the package metadata are only asked when not pinned (tests pin them).
    if "git_commit" not in overrides or "git_dirty" not in overrides:
        prov["git_commit"], prov["git_dirty"] = _git_state(Path(grokking_theories.__file__).resolve().parent)
    if "dependencies" not in overrides:
        prov["dependencies"] = _dependency_versions()
    prov.update(overrides)
    return prov


def _git_state(package_dir: Path) -> tuple[str, Optional[bool]]:
    """(commit, dirty) of the checkout holding the package source, or ("none", None) outside one.

    Read-only git calls: ``GIT_OPTIONAL_LOCKS=0`` stops ``git status`` from
    refreshing (writing) the index, so a report writes nothing outside its folder.
    """
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args) -> Optional[str]:
        try:
            res = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True,
                                 timeout=20, env=env, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout if res.returncode == 0 else None

    # The package must be tracked by the checkout it sits in: a site-packages copy inside some
    # unrelated repository would otherwise report that repository's commit.
    if git("ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return "none", None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return "none", None
    status = git("status", "--porcelain", "--", ".")
    return commit.strip(), None if status is None else bool(status.strip())


def _dependency_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ---------------------------------------------------------------------- values and formatting


def _plain(v):
    """A pandas/numpy cell as a plain Python value; every kind of missing as None."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _jsonable(obj):
    """Recursively: dicts/lists/tuples kept, floats rounded to JSON_DIGITS, NaN/inf -> None."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    obj = _plain(obj)
    if isinstance(obj, float):
        return float(format(obj, f".{JSON_DIGITS}g"))
    return obj


def fmt_num(v, spec: str = ".4g", missing: str = "–") -> str:
    """A number with fixed precision; missing/NaN as a dash."""
    v = _plain(v)
    if v is None:
        return missing
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return format(v, spec)
    return str(v)


def fmt_step(v) -> str:
    """Steps are integers; summaries may hold them as floats (NaN-padded columns)."""
    v = _plain(v)
    if v is None:
        return "–"
    return str(int(round(float(v))))


_CELL_FORMATS = {
    "t_fit": fmt_step,
    "t_grok": fmt_step,
    "final_test_acc": lambda v: fmt_num(v, ".3f"),
    "final_weight_norm": lambda v: fmt_num(v, ".4g"),
    "wall_time": lambda v: fmt_num(v, ".1f"),
    "seed": lambda v: fmt_num(v, "d"),
}


def _format_cell(column: str, value) -> str:
    if column in _CELL_FORMATS:
        return _CELL_FORMATS[column](value)
    if _plain(value) is None and column in ("device", "status"):
        return "–"
    return format_value(_plain(value))


# ---------------------------------------------------------------------- template context


def _verdict_cell(v) -> dict[str, Any]:
    if v is None:
        return {"verdict": "inconclusive", "effect": "–", "ci": "", "p": "–", "p_holm": "–", "n": "0",
                "notes": "", "title": "not evaluated", "details": [("notes", "not evaluated")]}
    conf = f"{100 * v.confidence:.0f}%"
    ci = ""
    if _plain(v.ci_low) is not None or _plain(v.ci_high) is not None:
        ci = f"[{fmt_num(v.ci_low)}, {fmt_num(v.ci_high)}]"
    details = [
        ("effect", f"{v.effect_name or 'effect size'} = {fmt_num(v.effect_size)}" + (f" ({conf} CI {ci})" if ci else "")),
        ("statistic", f"{v.statistic_name or 'statistic'} = {fmt_num(v.statistic)}"),
        ("p (raw / Holm)", f"{fmt_num(v.p_value, '.3g')} / {fmt_num(v.p_adjusted, '.3g')}"),
        ("runs used", str(v.n_runs)),
        ("run filter", v.design or "every run"),
    ]
    if v.notes:
        details.append(("notes", v.notes))
    title = f"{v.prediction_id} on {v.run_set}: {v.verdict}"
    if v.notes:
        title += f". Notes: {v.notes}"
    title += f". Rule: {v.rule}"
    return {"verdict": v.verdict, "effect": fmt_num(v.effect_size), "ci": ci,
            "p": fmt_num(v.p_value, ".3g"), "p_holm": fmt_num(v.p_adjusted, ".3g"), "n": str(v.n_runs),
            "notes": v.notes, "title": title, "details": details}


def _headline_row(pred, family, v) -> dict[str, Any]:
    """One row of the headline table (a prediction never evaluated shows as inconclusive)."""
    if v is None:
        return {"id": pred.id, "family": family.name, "statement": pred.statement, "rule": pred.rule,
                "paper": getattr(pred, "paper", ""), "verdict": "inconclusive", "test": "–", "effect": "–",
                "ci": "", "p": "–", "p_holm": "–", "n": "0", "run_filter": "–", "notes": "not evaluated"}
    cell = _verdict_cell(v)
    conf = f"{100 * v.confidence:.0f}%"
    effect = cell["effect"]
    if v.effect_name and effect != "–":
        effect = f"{v.effect_name} = {effect}"
    return {"id": pred.id, "family": family.name, "statement": pred.statement, "rule": pred.rule,
            "paper": getattr(pred, "paper", ""), "verdict": v.verdict, "test": v.test or "–",
            "effect": effect, "ci": f"{conf} CI {cell['ci']}" if cell["ci"] else "", "p": cell["p"],
            "p_holm": cell["p_holm"], "n": cell["n"], "run_filter": v.design or "every run", "notes": v.notes}


def _view(data: ReportData) -> dict[str, Any]:
    """Template context: every value already a formatted string, so the template only lays out."""
    import base64

    from ..stats import VERDICTS
    from ..theories.base import CROSS_STUDY

    finished = set(data.finished)
    secondary = data.secondary
    run_sets = [{"label": label, "n": len(set(ids)), "n_finished": len(set(ids) & finished),
                 "counts": {k: sum(1 for v in secondary if v.run_set == label and v.verdict == k)
                            for k in VERDICTS}}
                for label, ids in data.run_sets.items()]
    # a family decided in another study (Family.study) has no headline here: its cells are cross-study, secondary
    headline = [_headline_row(pred, family, data.headline_verdict(pred.id))
                for family in data.families for pred in family.predictions
                if data.headline_verdict(pred.id) is not None]
    labels = list(data.run_sets)
    if any(v.run_set == CROSS_STUDY for v in secondary):
        labels.append(CROSS_STUDY)
        run_sets.append({"label": CROSS_STUDY, "n": len(finished), "n_finished": len(finished),
                         "counts": {k: sum(1 for v in secondary if v.run_set == CROSS_STUDY and v.verdict == k)
                                    for k in VERDICTS}})
    headline_counts = {k: sum(1 for v in data.headline if v.verdict == k) for k in VERDICTS}
    holm = {"headline": sum(1 for v in data.headline if _plain(v.p_value) is not None),
            "secondary": sum(1 for v in secondary if _plain(v.p_value) is not None)}
    cens = data.censoring
    censoring = None
    if cens is not None and cens.any:
        censoring = {"headline": cens.headline(), "arms": [a.text() for a in cens.arms], "method": cens.method}
    rows = []
    for family in data.families:
        for pred in family.predictions:
            rows.append({"id": pred.id, "family": family.name, "statement": pred.statement, "rule": pred.rule,
                         "cells": [_verdict_cell(data.verdict(pred.id, label)) for label in labels]})
    families = [{"name": f.name, "title": f.title, "explanation": f.explanation,
                 "references": list(f.references),
                 "predictions": [{"id": p.id, "statement": p.statement} for p in f.predictions]}
                for f in data.families]
    figures = [{"key": f.key, "title": f.title, "caption": f.caption,
                "src": "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")}
               for f in data.figures]
    run_rows = [[_format_cell(c, rec.get(c)) for c in data.run_columns] for rec in data.runs]
    prov = data.provenance
    deps = prov.get("dependencies") or {}
    provenance = [
        ("package", f"{prov.get('package')} {prov.get('version')}"),
        ("git commit", str(prov.get("git_commit"))
         + (" (uncommitted changes in the package)" if prov.get("git_dirty") else "")),
        ("python", str(prov.get("python"))),
        ("libraries", ", ".join(f"{k} {deps[k]}" for k in sorted(deps)) or "–"),
        ("study file", f"{prov.get('study_path')} (sha256 {prov.get('study_sha256')})"),
        ("study / scale", f"{prov.get('study')} / {prov.get('scale')}"),
        ("run store", str(prov.get("store"))),
        ("runs", f"{prov.get('n_finished')} finished of {prov.get('n_runs')}"),
        ("seeds", ", ".join(str(s) for s in prov.get("seeds") or []) or "–"),
        ("devices", ", ".join(prov.get("devices") or []) or "–"),
        ("total wall time", f"{fmt_num(prov.get('total_wall_time_s'), '.1f')} s (sum over the runs' training)"),
    ]
    return {
        "study": data.study, "scale": data.scale, "description": data.description,
        "version": str(prov.get("version")),
        "run_sets": run_sets, "rows": rows, "families": families, "figures": figures,
        "headline": headline, "headline_counts": headline_counts, "holm": holm, "censoring": censoring,
        "setting_sentence": (data.setting or {}).get("sentence", ""),
        "alpha": format(ALPHA, "g"), "grok_acc": pct(GROK_ACC), "fit_acc": pct(FIT_ACC),
        "min_bootstrap_runs": MIN_BOOTSTRAP_RUNS,
        "run_columns": list(data.run_columns), "run_rows": run_rows, "varying": data.varying,
        "provenance": provenance, "run_ids": list(prov.get("run_ids") or []),
        "verdict_kinds": list(VERDICTS),
    }


def _atomic_write(path: Path, blob: bytes) -> None:
    """Replace ``path`` in one rename, so a browser or reader never sees half a report.

    The temporary file is created next to ``path``: nothing is written outside the output folder.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


__all__ = ["ReportData", "build_report", "collect_report_data", "describe_setting", "headline_entry",
           "probed_metrics_table", "render_html", "render_json", "scale_setting", "fmt_num", "write_report_files"]
