"""The comparison report: every family's verdicts on one study's runs, as HTML and JSON.

``build_report(study, store, out_dir)`` reads the study's finished runs from a
:class:`~grokking_theories.store.RunStore`, evaluates each of the families'
predictions once on its primary design (the headline verdicts, one Holm
family) and, as a secondary robustness view, on each arm and on all runs
together; counts the runs censored at their budget; draws the grokking and
weight-norm figures plus every family's own figures, and writes a
self-contained ``report.html`` (inline CSS, figures as base64 PNG, no
scripts) next to a machine-readable ``report.json``.

The same store always gives the same bytes: nothing depends on the clock,
PNGs carry no software stamp, floats are formatted with fixed precision and
the JSON keys are sorted. That makes reports diffable and lets the tests
compare them with a golden copy.

The package's modules follow its seams: :mod:`.collect` gathers a
:class:`ReportData` (verdicts, run table, figures), :mod:`.provenance` says
what produced it and which setting its verdicts are about, :mod:`.render`
turns it into the two files, :mod:`.censoring` counts the censored runs and
:mod:`.figures` draws the report's own figures with
:mod:`grokking_theories.plotting`; :mod:`.build` joins them in
:func:`build_report`.

matplotlib, seaborn, pandas and jinja2 are imported inside the functions
that need them, so importing this package is cheap.
"""
from .build import build_report
from .censoring import CensoringSummary, censoring_summary
from .collect import ReportData, collect_report_data
from .render import render_html, render_json, write_report_files

__all__ = ["CensoringSummary", "ReportData", "build_report", "censoring_summary", "collect_report_data",
           "render_html", "render_json", "write_report_files"]
