"""Collecting a study's report: its runs, the families' verdicts, the run table and the figures.

:func:`collect_report_data` reads a study's finished runs from the store,
evaluates the families once (headline and secondary verdicts), tabulates the
runs, summarises censoring, asks :mod:`.provenance` what produced it and
draws every figure into PNG bytes. The result, a :class:`ReportData`, holds
everything the report shows, before formatting (:mod:`.render`).
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from .censoring import CensoringSummary, censoring_summary
from .figures import ReportFigure, _sort_key, close_figure, grokking_figure, png_bytes, weight_norm_figure
from .provenance import _provenance, scale_setting
from .render import _jsonable, _plain

#: Bumped when the layout of report.json changes in a way readers must know about.
#: 2: top-level ``headline`` (one verdict per prediction, on its primary design), ``censoring`` and
#: ``setting``; every verdict carries its ``role`` ('headline' or 'secondary').
FORMAT_VERSION = 2

#: Runs-table summary columns: (store column, report column).
SUMMARY_COLUMNS = (
    ("summary_t_fit", "t_fit"),
    ("summary_t_grok", "t_grok"),
    ("summary_final_test_acc", "final_test_acc"),
    ("summary_final_weight_norm", "final_weight_norm"),
)

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
    comparison : Comparison or None
        For a study that includes others (``study all``): every explanation's predictions on every included
        study's runs (:func:`~grokking_theories.theories.comparison.evaluate_comparison`); its verdicts
        are ``verdicts``. The report opens with it.
    matrix : ReportFigure or None
        The comparison's prediction x run-set matrix.
    gallery : list of GalleryFigure
        The anchor papers' figures redrawn from the included studies' runs (:mod:`.gallery`).
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
    comparison: Optional[Any] = None
    matrix: Optional[ReportFigure] = None
    gallery: list = field(default_factory=list)

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
            **({} if self.comparison is None else {"comparison": comparison_record(self.comparison),
                                                   "gallery": [g.entry.key for g in self.gallery]}),
        })


def collect_report_data(study, store, *, families=None, provenance_overrides=None, table=None) -> ReportData:
    """Evaluate, draw and tabulate a study's runs; see :func:`~grokking_theories.report.build_report` for the
    parameters.

    ``table``: the study's tidy table (:func:`probed_metrics_table` of its finished runs) when the caller
    already has it; read from the store when omitted.
    """
    from ..theories import get_family

    if families is None:
        families = [get_family(n) for n in study.families]
    families = list(families)
    study_ids = [c.run_id for c in study.configs]
    finished = sorted(store.finished_ids() & set(study_ids))
    if table is None:
        table = probed_metrics_table(store, finished, families)

    run_sets = study_run_sets(study)
    verdicts, comparison = evaluate_study(table, study, families)

    runs_df = store.runs_table()
    runs_df = runs_df[runs_df["run_id"].isin(set(study_ids))]
    varying, columns, runs = run_table_records(study, runs_df)
    provenance = _provenance(study, store, runs_df, finished, provenance_overrides or {})
    matrix, gallery = None, []
    if comparison is None:
        figures = _figures(study, table, families)
    else:
        # The comparison page shows the matrix and the gallery; each explanation's full figure set is in its
        # own study's report (drawn on the same stored runs without training: ``study NAME``).
        figures = []
        drawn: list = []  # the matrix, through _add_figure so that a warning lands in its caption
        _add_figure(drawn, lambda: _matrix(comparison), "comparison:matrix", "Every prediction on every study's runs",
                    "Rows: predictions, grouped by explanation; columns: the included studies' runs. Colour: the "
                    "verdict; a black frame: the headline cell (the prediction on its own study's runs); a white "
                    "cell: those runs cannot answer the prediction (the reason is in report.json).")
        matrix = drawn[0] if drawn else None
        gallery = _gallery(table, run_sets)
    return ReportData(study=study.name, scale=study.scale, description=study.description, families=families,
                      run_sets=run_sets, finished=finished, verdicts=verdicts, figures=figures,
                      run_columns=columns, runs=runs, varying=varying, provenance=provenance,
                      censoring=censoring_summary(study, table, finished), setting=scale_setting(study),
                      comparison=comparison, matrix=matrix, gallery=gallery)


def evaluate_study(table, study, families) -> tuple[list, Optional[Any]]:
    """(verdicts, comparison): the families' verdicts on a study's table, as its report and ``load`` give them.

    A study that includes others is evaluated by
    :func:`~grokking_theories.theories.comparison.evaluate_comparison` (each prediction decided on its own
    study's runs, then tried on the others'); any other by
    :func:`~grokking_theories.theories.evaluate_families` (comparison None).
    """
    from ..theories import evaluate_families

    if study.members:
        from ..theories.comparison import evaluate_comparison

        comparison = evaluate_comparison(table, families, study.run_sets())
        return comparison.verdicts, comparison
    return evaluate_families(table, families, study_run_sets(study), study=study.name), None


def comparison_record(comparison) -> dict[str, Any]:
    """report.json's ``comparison``: the evidence sentences, the conflicts and every cross-table cell."""
    record = {"run_sets": list(comparison.run_sets), "explanations": [], "conflicts": [], "not_applicable": []}
    for family in comparison.families:
        pro, con = comparison.evidence(family)
        record["explanations"].append({"family": family.name, "decided_on": comparison.own_run_set(family),
                                       "strongest_for": pro, "strongest_against": con})
    for found in comparison.conflict_findings():
        record["conflicts"].append({
            "question": found["conflict"].question, "finding": found["sentence"], "tally": found["tally"],
            "verdicts": [{k: r[k] for k in ("run_set", "prediction", "verdict", "favours", "headline")}
                         for r in found["rows"]]})
    record["not_applicable"] = [{"prediction": pid, "run_set": rs, "why": why}
                                for (pid, rs), why in comparison.not_applicable.items()]
    return record


def study_run_sets(study) -> dict[str, list[str]]:
    """Run-set label -> run ids: each arm, then every run (labelled ``all``) when the study has several arms.

    For a study that includes others: each included study's runs, by its name.
    """
    if study.members:
        return study.run_sets()
    run_sets = {arm.name: [c.run_id for c in arm.configs] for arm in study.arms}
    if len(study.arms) > 1:
        run_sets[_all_label(run_sets)] = [c.run_id for c in study.configs]
    return run_sets


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


def _matrix(comparison):
    from .comparison import matrix_figure

    return matrix_figure(comparison)


def _gallery(table, run_sets) -> list:
    from .gallery import draw_gallery

    _ensure_headless_pyplot()
    return draw_gallery(table, run_sets)


def _add_figure(figures: list, draw, key: str, title: str, caption: str, *, tight: bool = True) -> None:
    """Draw and save one figure (None: skipped), capturing warnings into its caption."""
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


__all__ = ["FORMAT_VERSION", "NOT_IN_STORE", "ReportData", "collect_report_data", "comparison_record",
           "evaluate_study", "headline_entry", "probed_metrics_table", "run_table_records", "study_run_sets"]
