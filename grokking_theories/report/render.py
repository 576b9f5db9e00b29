"""Rendering a report: ReportData into report.json and a self-contained report.html.

Every value is formatted here, with fixed precision, so the same data always
gives the same bytes; the Jinja2 template (``templates/report.html``) only
lays the formatted strings out.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

import numpy as np

from ..levels import ALPHA, FIT_ACC, GROK_ACC, MIN_BOOTSTRAP_RUNS, pct

if TYPE_CHECKING:
    from .collect import ReportData

#: Significant digits of every float in report.json. Enough for any reader of a report, and
#: coarse enough that last-bit differences of a BLAS or optimiser do not change the file.
JSON_DIGITS = 6


def write_report_files(data: ReportData, out_dir) -> tuple[Path, Path]:
    """Render ``data`` into ``out_dir/report.html`` and ``out_dir/report.json`` (atomic writes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "report.html", out / "report.json"
    _atomic_write(html_path, render_html(data).encode("utf-8"))
    _atomic_write(json_path, render_json(data).encode("utf-8"))
    return html_path, json_path


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


def format_value(value) -> str:
    """A config value as the report prints it: ``0.5``, ``1``, ``add``, ``none``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, (float, np.floating)):
        return format(float(value), "g")
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


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


def _cell(data: ReportData, prediction_id: str, label: str) -> dict[str, Any]:
    """One cell of the secondary table. In a composite study a prediction's own study's cell is its headline
    verdict, and a run set that cannot answer it says why (as in the comparison's matrix)."""
    if data.comparison is None:
        return _verdict_cell(data.verdict(prediction_id, label))
    v = data.comparison.cells.get((prediction_id, label))
    if v is not None:
        return _verdict_cell(v)
    why = data.comparison.not_applicable.get((prediction_id, label), "not evaluated")
    return {**_verdict_cell(None), "verdict": "n/a", "title": f"not applicable: {why}",
            "details": [("not applicable", why)]}


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
                         "cells": [_cell(data, pred.id, label) for label in labels]})
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
        "comparison": _comparison_view(data),
    }


def _comparison_view(data: ReportData) -> Optional[dict[str, Any]]:
    """The comparison page and the gallery of a study that includes others (None for any other study)."""
    if data.comparison is None:
        return None
    import base64

    from .comparison import comparison_view
    from .gallery import gallery_view

    view = comparison_view(data.comparison)
    view["matrix"] = None if data.matrix is None else {
        "title": data.matrix.title, "caption": data.matrix.caption,
        "src": "data:image/png;base64," + base64.b64encode(data.matrix.png).decode("ascii")}
    view["gallery"] = gallery_view(data.gallery, data.comparison, scale=data.scale)
    return view


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


__all__ = ["JSON_DIGITS", "fmt_num", "fmt_step", "format_value", "render_html", "render_json", "write_report_files"]
