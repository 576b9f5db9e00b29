"""Collecting a study's report (verdicts, figures, run table, provenance) and rendering it."""
from __future__ import annotations

import hashlib
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .figures import ReportFigure, close_figure, format_value, grokking_figure, png_bytes, weight_norm_figure

#: Bumped when the layout of report.json changes in a way readers must know about.
FORMAT_VERSION = 1

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
        Holm-adjusted together (:func:`~grokking_theories.theories.evaluate_families`).
    figures : list of ReportFigure
    run_columns : list of str
        Columns of the run table.
    runs : list of dict
        The run table, one dict per (arm, run), sorted by arm, varying config values and seed.
    varying : list of str
        Config columns (seed excluded) that vary across the study's runs.
    provenance : dict
        What produced the report (package version and commit, study file, runs, devices, wall time).
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

    def verdict(self, prediction_id: str, run_set: str):
        """The verdict on one prediction for one run set, or None."""
        for v in self.verdicts:
            if v.prediction_id == prediction_id and v.run_set == run_set:
                return v
        return None

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
        Where the runs live (a read-only store is enough). Only the study's
        finished runs are evaluated and drawn; the run table lists every run
        of the study, those the store lacks as ``'not in store'``.
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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "report.html", out / "report.json"
    _atomic_write(html_path, render_html(data).encode("utf-8"))
    _atomic_write(json_path, render_json(data).encode("utf-8"))
    return html_path, json_path


def collect_report_data(study, store, *, families=None, provenance_overrides=None) -> ReportData:
    """Evaluate, draw and tabulate a study's runs; see :func:`build_report` for the parameters."""
    from ..theories import evaluate_families, get_family

    if families is None:
        families = [get_family(n) for n in study.families]
    families = list(families)
    study_ids = [c.run_id for c in study.configs]
    finished = sorted(store.finished_ids() & set(study_ids))
    table = store.metrics_table(finished)

    run_sets = {arm.name: [c.run_id for c in arm.configs] for arm in study.arms}
    if len(study.arms) > 1:
        run_sets[_all_label(run_sets)] = study_ids
    verdicts = evaluate_families(table, families, run_sets)

    runs_df = store.runs_table()
    runs_df = runs_df[runs_df["run_id"].isin(set(study_ids))]
    varying, columns, runs = run_table_records(study, runs_df)
    provenance = _provenance(study, store, runs_df, finished, provenance_overrides or {})
    figures = _figures(study, table, families)
    return ReportData(study=study.name, scale=study.scale, description=study.description, families=families,
                      run_sets=run_sets, finished=finished, verdicts=verdicts, figures=figures,
                      run_columns=columns, runs=runs, varying=varying, provenance=provenance)


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


# ---------------------------------------------------------------------- figures


def _hue_columns(configs) -> list[str]:
    return _varying([c.flat() for c in configs])


def _figures(study, table, families) -> list[ReportFigure]:
    figures = []
    arms = [(arm.name, [c.run_id for c in arm.configs], _hue_columns(arm.configs)) for arm in study.arms]
    for name, ids, hue in arms:
        fig = grokking_figure(table, name, ids, hue)
        if fig is not None:
            varies = ", ".join(hue) if hue else "nothing but the seed"
            figures.append(_save(fig, f"grokking:{name}", f"Grokking curves, arm {name}",
                                 f"Accuracy and loss against training step (log scale) for the arm {name!r}; "
                                 f"colour: {varies}. Thin faded lines are single seeds, bold lines the mean "
                                 f"over seeds (a seed that stopped early keeps its last value).", tight=False))
    fig = weight_norm_figure(table, arms)
    if fig is not None:
        figures.append(_save(fig, "weight_norm", "Weight norm",
                             "Total parameter norm against training step (log scale), one panel per arm; "
                             "same colours and seed/mean convention as the grokking curves.", tight=False))
    _ensure_headless_pyplot()
    for family in families:
        for func in family.figures:
            fig = func(table)
            if fig is None:
                continue
            name = getattr(func, "__name__", type(func).__name__)
            doc = (getattr(func, "__doc__", None) or "").strip().splitlines()
            figures.append(_save(fig, f"{family.name}:{name}", f"{family.title} ({family.name}: {name})",
                                 doc[0] if doc else ""))
    return figures


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
                "title": "not evaluated", "details": [("notes", "not evaluated")]}
    conf = f"{100 * v.confidence:.0f}%"
    ci = ""
    if _plain(v.ci_low) is not None or _plain(v.ci_high) is not None:
        ci = f"[{fmt_num(v.ci_low)}, {fmt_num(v.ci_high)}]"
    details = [
        ("effect", f"{v.effect_name or 'effect size'} = {fmt_num(v.effect_size)}" + (f" ({conf} CI {ci})" if ci else "")),
        ("statistic", f"{v.statistic_name or 'statistic'} = {fmt_num(v.statistic)}"),
        ("p (raw / Holm)", f"{fmt_num(v.p_value, '.3g')} / {fmt_num(v.p_adjusted, '.3g')}"),
        ("runs used", str(v.n_runs)),
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


def _view(data: ReportData) -> dict[str, Any]:
    """Template context: every value already a formatted string, so the template only lays out."""
    import base64

    from ..stats import VERDICTS

    finished = set(data.finished)
    run_sets = [{"label": label, "n": len(set(ids)), "n_finished": len(set(ids) & finished),
                 "counts": {k: sum(1 for v in data.verdicts if v.run_set == label and v.verdict == k)
                            for k in VERDICTS}}
                for label, ids in data.run_sets.items()]
    rows = []
    for family in data.families:
        for pred in family.predictions:
            rows.append({"id": pred.id, "family": family.name, "statement": pred.statement, "rule": pred.rule,
                         "cells": [_verdict_cell(data.verdict(pred.id, label)) for label in data.run_sets]})
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


__all__ = ["ReportData", "build_report", "collect_report_data", "render_html", "render_json", "fmt_num"]
