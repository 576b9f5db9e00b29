"""Sphinx configuration of the grokking_theories documentation.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

No network is used at build time (no intersphinx). Nothing is mocked: the
API pages import the package, so torch, pandas, scipy and statsmodels must be
installed (``pip install -e ".[docs]"``).
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import sys
import textwrap

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import grokking_theories  # noqa: E402

# -- project -------------------------------------------------------------------------------

project = "grokking_theories"
author = "the grokking_theories authors"
copyright = "the grokking_theories authors"
version = grokking_theories.__version__
release = grokking_theories.__version__

# -- general -------------------------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.mathjax",
    # MathJax's files copied into the build and loaded from there, not from a CDN: equations render for a
    # reader without internet (the docs are also read offline, beside a study's report)
    "sphinx-mathjax-offline",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# MyST: ::: fences, definition lists, $math$, and #-anchors for headings up to level 3.
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

# autodoc / numpydoc
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # no torch.nn.Module boilerplate under our forward()
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- HTML ----------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"grokking_theories {release}"
html_static_path: list[str] = []


# -- the run-config field table, read from grokking_theories/config.py ---------------------

def _field_comments(cls) -> dict[str, str]:
    """Field name -> the trailing ``# comment`` of its line in the dataclass source.

    Continuation comments on the following lines (``#   ...``) are appended.
    """
    lines, _ = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    body = tree.body[0].body
    out = {}
    for node in body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        row = node.lineno - 1
        text = lines[row]
        comment = text.split("#", 1)[1].strip() if "#" in text else ""
        nxt = row + 1
        while nxt < len(lines) and lines[nxt].strip().startswith("#"):
            comment += " " + lines[nxt].strip().lstrip("#").strip()
            nxt += 1
        out[node.target.id] = comment
    return out


class RunConfigFields(Directive):
    """``.. run-config-fields::`` -- one table row per run-config field (section, default, meaning)."""

    has_content = False

    def run(self):
        from grokking_theories import config

        rows = []
        for section, cls in config.SECTIONS.items():
            comments = _field_comments(cls)
            for f in dataclasses.fields(cls):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                rows.append((f.name, section, str(f.type), repr(default), comments.get(f.name, "")))
        run_comments = _field_comments(config.RunConfig)
        rows.append(("seed", "(top level)", "int", "0", run_comments.get("seed", "")))

        def cell(text: str) -> list[str]:
            return [f"     - {text}" if text else "     -"]

        rst = [".. list-table::", "   :header-rows: 1", "   :widths: 14 9 12 10 55", "",
               "   * - field", "     - section", "     - type", "     - default", "     - meaning"]
        for name, section, typ, default, comment in rows:
            rst.append(f"   * - ``{name}``")
            rst += cell(section)
            rst += cell(f"``{typ}``")
            rst += cell(f"``{default}``")
            rst += cell(_escape(comment))
        container = nodes.container()
        self.state.nested_parse(StringList(rst, source="grokking_theories/config.py"), self.content_offset, container)
        return container.children


def _escape(text: str) -> str:
    """Plain text -> reST inline text (no markup is interpreted)."""
    for ch in "\\*`|_":
        text = text.replace(ch, "\\" + ch)
    return " ".join(text.split())


class FamilyPredictions(Directive):
    """``.. family-predictions:: NAME`` -- a registered family's predictions, rules and metrics, from the code."""

    required_arguments = 1
    has_content = False

    def run(self):
        import importlib

        from grokking_theories.theories import FAMILIES

        name = self.arguments[0]
        # Import only this family's module, so a family being edited elsewhere cannot break the build.
        importlib.import_module(f"grokking_theories.theories.{name}")
        family = FAMILIES[name]
        rst = [f"**{_escape(family.title)}** (family ``{family.name}``, study ``{family.study}``)", "",
               _escape(family.explanation), "", "References: " + "; ".join(_escape(r) for r in family.references), "",
               ".. list-table::", "   :header-rows: 1", "   :widths: 6 30 40 24", "",
               "   * - id", "     - prediction", "     - decision rule (fixed in advance)", "     - metrics read"]
        for pred in family.predictions:
            rst += [f"   * - **{_escape(pred.id)}**", f"     - {_escape(pred.statement)}",
                    f"     - {_escape(pred.rule)}",
                    "     - " + ", ".join(f"``{m}``" for m in pred.metrics_needed)]
        container = nodes.container()
        self.state.nested_parse(StringList(rst, source=f"family {family.name}"), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("run-config-fields", RunConfigFields)
    app.add_directive("family-predictions", FamilyPredictions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
