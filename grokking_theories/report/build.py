"""The report's entry point: collect a study's report (:mod:`.collect`) and write it (:mod:`.render`)."""
from __future__ import annotations

from pathlib import Path

from .collect import collect_report_data
from .render import write_report_files


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
        computes and stores any that are missing
        (:func:`~grokking_theories.report.collect.probed_metrics_table`); a
        read-only store is enough when they are all stored (else a
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


__all__ = ["build_report"]
