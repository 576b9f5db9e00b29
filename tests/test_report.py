"""Tests of grokking_theories.report: content, determinism, golden files, side effects.

No model is trained: the store is filled with synthetic tidy rows with planted
grokking curves (:func:`grokking_theories.theories.synthetic.synthetic_table`).

Golden files (``tests/golden/report.json`` and ``tests/golden/report_text.html``,
the HTML with its base64 figures replaced by placeholders) pin the rendering.
After a deliberate change to the report, regenerate them with::

    GT_REGENERATE_GOLDEN=1 python -m pytest tests/test_report.py -k golden

and review the diff before committing it.
"""
from __future__ import annotations

import base64
import builtins
import hashlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from grokking_theories.report import ReportData, build_report, collect_report_data
from grokking_theories.store import RunStore

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("GT_REGENERATE_GOLDEN") == "1"
REGENERATE_HINT = ("the report no longer matches the golden copy in tests/golden/. If the change is deliberate, "
                   "regenerate with `GT_REGENERATE_GOLDEN=1 python -m pytest tests/test_report.py -k golden` "
                   "and review the diff of tests/golden/")

# Two arms: a grid over the init scale where every run groks (so the sharpness predictions are
# decided), and a low-decay arm whose two runs never grok within the budget (so both predictions
# lack data there and must come out 'inconclusive' with a note).
STUDY_TOML = """\
description = "Report test: synthetic grokking curves, no training"
families = ["sharpness"]

[quick]
seeds = [0, 1, 2]
base = { op = "add", p = 11, train_frac = 0.5, arch = "mlp", width = 16, lr = 1e-2, weight_decay = 1.0, max_steps = 3000, stop_after_grok = 300, log_points = 20, log_every = 100, checkpoints = 8 }

[[quick.arms]]
name = "alpha"
grid = { alpha = [0.5, 1.0, 2.0] }

[[quick.arms]]
name = "low_decay"
set = { weight_decay = 0.1 }
seeds = [0, 1]
"""
RUN_SETS = ("alpha", "low_decay", "all")
N_RUNS = 11
PREDICTIONS = ("S1", "S2")

# Everything machine-specific is pinned, so the golden files hold on any checkout.
PINNED = {"git_commit": "golden", "git_dirty": False, "study_path": "<study>/report_study.toml",
          "store": "<store>", "python": "<python>", "dependencies": {}}

IMG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _summary(rows) -> dict:
    """The trainer's summary keys, computed from synthetic rows."""
    def series(metric):
        r = rows[rows["metric"] == metric].sort_values("step")
        return r["step"].to_numpy(), r["value"].to_numpy()

    out = {}
    for key, metric in (("t_fit", "train_acc"), ("t_grok", "test_acc")):
        steps, values = series(metric)
        hit = steps[values >= 0.99]
        out[key] = int(hit[0]) if len(hit) else None
    out["final_test_acc"] = float(series("test_acc")[1][-1])
    out["final_weight_norm"] = float(series("weight_norm")[1][-1])
    return out


def make_study_and_store(root: Path):
    """Write the study file, fill a store with synthetic runs; return (study, store root)."""
    from grokking_theories.studies import load_study
    from grokking_theories.theories.synthetic import synthetic_table

    root.mkdir(parents=True, exist_ok=True)
    path = root / "report_study.toml"
    path.write_text(STUDY_TOML)
    study = load_study(str(path), "quick")
    table = synthetic_table(study.configs, seed=0)
    store_root = root / "store"
    with RunStore(store_root) as store:
        for cfg in study.configs:
            rows = table[table["run_id"] == cfg.run_id][["step", "metric", "value"]]
            store.write_result(cfg, rows, summary=_summary(rows), wall_time=1.0, device="cpu")
    return study, store_root


def text_html(html: str) -> str:
    """The HTML with each figure's base64 payload replaced by a numbered placeholder."""
    counter = iter(range(1, 1000))
    return IMG.sub(lambda m: f"data:image/png;base64,<figure {next(counter)}>", html)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    study, store_root = make_study_and_store(root)
    store = RunStore(store_root, readonly=True)
    out = root / "out"
    html_path, json_path = build_report(study, store, out, provenance_overrides=PINNED)
    yield {"root": root, "study": study, "store": store, "store_root": store_root, "out": out,
           "html_path": html_path, "json_path": json_path,
           "html": html_path.read_text(encoding="utf-8"),
           "json": json.loads(json_path.read_text(encoding="utf-8"))}
    store.close()


def _cells(html: str) -> dict[tuple[str, str], str]:
    """(prediction id, run set) -> the verdict class of its matrix cell, read back from the HTML."""
    matrix = html[html.index('id="verdict-matrix"'):html.index("</table>", html.index('id="verdict-matrix"'))]
    headers = re.findall(r'<th class="runset" data-run-set="([^"]+)"', matrix)
    out = {}
    for pid, body in re.findall(r'<tr id="pred-([^"]+)">(.*?)</tr>', matrix, flags=re.S):
        classes = re.findall(r'<td class="verdict (\w+)"', body)
        assert len(classes) == len(headers), f"row {pid} has {len(classes)} cells for {len(headers)} run sets"
        out.update({(pid, h): c for h, c in zip(headers, classes)})
    return out


# ---------------------------------------------------------------------- content


def test_report_files_and_returned_paths(env):
    assert env["html_path"] == env["out"] / "report.html"
    assert env["json_path"] == env["out"] / "report.json"
    assert env["html_path"].stat().st_size > 10_000
    # Only the two report files: no stray temporaries or figure files beside them.
    assert sorted(p.name for p in env["out"].iterdir()) == ["report.html", "report.json"]


def test_verdict_matrix_has_every_prediction_and_run_set(env):
    html, data = env["html"], env["json"]
    cells = _cells(html)
    assert set(cells) == {(p, r) for p in PREDICTIONS for r in RUN_SETS}
    # Each cell's colour class is the verdict report.json records for it (and the stats layer decided).
    from_json = {(v["prediction_id"], v["run_set"]): v["verdict"] for v in data["verdicts"]}
    assert cells == from_json
    # The planted curves: accuracy switches faster than the smooth metrics and margins explain accuracy.
    assert cells[("S1", "alpha")] == cells[("S1", "all")] == "supported"
    assert cells[("S2", "alpha")] == cells[("S2", "all")] == "supported"
    for pid in PREDICTIONS:
        assert f'<span class="pid">{pid}</span>' in html
    assert "Test accuracy&#39;s transition" in html  # the statement, escaped, in the row header
    for label in RUN_SETS:
        assert f'data-run-set="{label}"' in html
    # Effect with CI and Holm p in a supported cell; the rule is available in a <details>.
    s1 = next(v for v in data["verdicts"] if v["prediction_id"] == "S1" and v["run_set"] == "alpha")
    assert s1["p_adjusted"] is not None and s1["p_adjusted"] >= s1["p_value"]
    assert f"[{s1['ci_low']:.4g}, {s1['ci_high']:.4g}]" in html
    assert f"Holm p {s1['p_adjusted']:.3g}" in html
    assert "<summary>decision rule</summary>" in html and "Wilcoxon signed-rank" in html


def test_predictions_without_data_are_inconclusive_with_the_note(env):
    html, data = env["html"], env["json"]
    low = [v for v in data["verdicts"] if v["run_set"] == "low_decay"]
    assert sorted(v["prediction_id"] for v in low) == list(PREDICTIONS)
    for v in low:
        assert v["verdict"] == "inconclusive"
        assert v["notes"].startswith("insufficient data")
        assert v["effect_size"] is None and v["ci_low"] is None  # NaN -> null
        # The note is shown in the cell itself, not only in report.json.
        row = re.search(rf'<tr id="pred-{v["prediction_id"]}">(.*?)</tr>', html, flags=re.S).group(1)
        cell = row.split('<td class="verdict ')[1 + RUN_SETS.index("low_decay")]
        assert cell.startswith("inconclusive")
        assert f'<span class="note">{v["notes"]}</span>' in cell


def test_figures_are_inline_pngs_without_software_stamp(env):
    html, data = env["html"], env["json"]
    payloads = IMG.findall(html)
    keys = [f["key"] for f in data["figures"]]
    assert keys == ["grokking:alpha", "grokking:low_decay", "weight_norm"]
    assert len(payloads) == len(keys)
    assert html.count('<img src="data:image/png;base64,') == len(keys)
    for payload in payloads:
        png = base64.b64decode(payload)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert b"Software" not in png and b"matplotlib" not in png.lower()
        # Not a giant image: width and height from the IHDR chunk.
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert 300 < width <= 1400 and 200 < height <= 1400
    # Self-contained: no scripts, no external resources.
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_run_table_lists_every_run_with_its_summary(env):
    html, data = env["html"], env["json"]
    cols = data["run_columns"]
    assert cols[:2] == ["arm", "run_id"]
    assert {"alpha", "weight_decay"} <= set(cols)  # what varies across the study
    assert "lr" not in cols and "p" not in cols  # what does not vary is not a column
    for c in ("seed", "status", "t_fit", "t_grok", "final_test_acc", "final_weight_norm"):
        assert c in cols
    runs = data["runs"]
    assert len(runs) == N_RUNS
    assert [r["arm"] for r in runs] == ["alpha"] * 9 + ["low_decay"] * 2
    # Sorted by arm, varying values, seed.
    assert [(r["alpha"], r["seed"]) for r in runs[:9]] == [(a, s) for a in (0.5, 1.0, 2.0) for s in (0, 1, 2)]
    assert all(r["status"] == "complete" for r in runs)
    assert all(r["t_grok"] is not None for r in runs[:9])
    assert all(r["t_grok"] is None for r in runs[9:])  # never grokked: null, shown as a dash
    table = html[html.index('id="run-table"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == N_RUNS + 1
    for cfg in env["study"].configs:
        assert cfg.run_id in table
    first = runs[0]
    assert f'<td class="num">{first["final_test_acc"]:.3f}</td>' in table


def test_provenance_block(env):
    html, prov = env["html"], env["json"]["provenance"]
    import grokking_theories

    assert prov["version"] == grokking_theories.__version__
    assert prov["git_commit"] == "golden"  # the override replaced the detected commit
    assert prov["study"] == "report_study" and prov["scale"] == "quick"
    assert prov["total_wall_time_s"] == pytest.approx(N_RUNS * 1.0)
    assert prov["devices"] == ["cpu"]
    assert prov["seeds"] == [0, 1, 2]
    assert prov["run_ids"] == sorted(c.run_id for c in env["study"].configs)
    assert prov["n_finished"] == prov["n_runs"] == N_RUNS
    expected_sha = hashlib.sha256(STUDY_TOML.encode()).hexdigest()
    assert prov["study_sha256"] == expected_sha
    block = html[html.index('<section id="provenance">'):]
    for text in ("golden", grokking_theories.__version__, "<study>/report_study.toml".replace("<", "&lt;")
                 .replace(">", "&gt;"), "11.0 s", expected_sha, "report_study / quick"):
        assert text in block, text
    for rid in prov["run_ids"]:
        assert rid in block


def test_json_is_sorted_and_has_no_nan(env):
    text = env["json_path"].read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["study"] == "report_study" and data["scale"] == "quick"
    assert data["families"] == ["sharpness"]
    assert data["run_sets"]["all"] == [c.run_id for c in env["study"].configs]
    assert set(data) >= {"provenance", "verdicts", "runs"}


def test_verdicts_match_a_direct_evaluation(env):
    """report.json holds exactly what evaluate_families decides (rounded to 6 significant digits)."""
    from grokking_theories.theories import evaluate_families, get_family

    study, store = env["study"], env["store"]
    table = store.metrics_table([c.run_id for c in study.configs])
    run_sets = {**study.run_sets(), "all": [c.run_id for c in study.configs]}
    direct = evaluate_families(table, [get_family("sharpness")], run_sets)
    got = env["json"]["verdicts"]
    assert [(v["prediction_id"], v["run_set"], v["verdict"]) for v in got] == \
           [(v.prediction_id, v.run_set, v.verdict) for v in direct]
    for g, d in zip(got, direct):
        for name in ("effect_size", "ci_low", "ci_high", "p_value", "p_adjusted"):
            value = getattr(d, name)
            if value is None or not np.isfinite(value):
                assert g[name] is None
            else:
                assert g[name] == pytest.approx(value, rel=1e-5)


# ---------------------------------------------------------------------- determinism, golden, side effects


class _WriteMonitor:
    """Records every path opened for writing through open(), io.open and os.open."""

    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real_open, real_os_open = builtins.open, os.open

        def watched_open(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and any(ch in mode for ch in "wax+"):
                self.paths.append(os.fsdecode(os.fspath(file)))
            return real_open(file, mode, *args, **kwargs)

        def watched_os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND):
                self.paths.append(os.fsdecode(os.fspath(path)))
            return real_os_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", watched_open)
        monkeypatch.setattr(io, "open", watched_open)
        monkeypatch.setattr(os, "open", watched_os_open)


def _tree(root: Path, skip: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root outside ``skip``.

    SQLite's shared-memory file is listed but not hashed: every read transaction updates it.
    """
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and skip not in path.parents:
            rel = str(path.relative_to(root))
            out[rel] = "" if rel.endswith("-shm") else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_rebuild_is_byte_identical_and_writes_nothing_outside_out_dir(env, tmp_path, monkeypatch):
    import jinja2  # noqa: F401  (imports, and their caches, happen before monitoring starts)
    import matplotlib.pyplot  # noqa: F401
    import seaborn  # noqa: F401

    monkeypatch.chdir(tmp_path)  # a relative write would land here
    out = tmp_path / "nested" / "again"
    before = _tree(env["root"], env["out"])
    monitor = _WriteMonitor(monkeypatch)
    html_path, json_path = build_report(env["study"], env["store"], out, provenance_overrides=PINNED)
    monkeypatch.undo()
    outside = [p for p in monitor.paths if out.resolve() not in Path(os.path.abspath(p)).resolve().parents]
    assert outside == [], f"report wrote outside its folder: {outside}"
    assert monitor.paths, "the write monitor saw nothing: it is not hooked in"
    assert _tree(env["root"], env["out"]) == before, "files next to the store or study changed"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == \
           ["nested/again/report.html", "nested/again/report.json"]
    # Same store -> same bytes, even into another folder.
    assert html_path.read_bytes() == env["html_path"].read_bytes()
    assert json_path.read_bytes() == env["json_path"].read_bytes()


def test_golden_report(env):
    """The rendered report equals the stored golden copy (figures replaced by placeholders)."""
    got_html = text_html(env["html"])
    got_json = env["json_path"].read_text(encoding="utf-8")
    html_file, json_file = GOLDEN_DIR / "report_text.html", GOLDEN_DIR / "report.json"
    if REGENERATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        html_file.write_text(got_html, encoding="utf-8")
        json_file.write_text(got_json, encoding="utf-8")
        pytest.skip("golden files regenerated; review `git diff tests/golden/`")
    assert html_file.is_file() and json_file.is_file(), REGENERATE_HINT
    want_json = json_file.read_text(encoding="utf-8")
    # Verdicts first: the clearest message if a statistic moved.
    got_v = json.loads(got_json)["verdicts"]
    want_v = json.loads(want_json)["verdicts"]
    assert got_v == want_v, f"verdicts changed; {REGENERATE_HINT}"
    assert got_json == want_json, f"report.json changed; {REGENERATE_HINT}"
    assert got_html == html_file.read_text(encoding="utf-8"), f"report.html changed; {REGENERATE_HINT}"


# ---------------------------------------------------------------------- families, figures, overrides


def _planted_family():
    """A family outside the registry with fixed verdicts and two figure functions (one declines)."""
    from grokking_theories.stats import Outcome, Prediction
    from grokking_theories.theories import Family

    def contradicted(table):
        return Outcome("contradicted", "planted", 2.0, 2.0, "planted effect", 1.5, 2.5, notes="planted")

    def needs_alpha(table):
        return Outcome("supported", "planted", -1.0, -1.0, "planted effect", -1.5, -0.5)

    def final_accuracy(table):
        """Final test accuracy per run."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 3))
        last = table[table["metric"] == "test_acc"].groupby("run_id")["value"].last()
        ax.bar(range(len(last)), last.to_numpy())
        return fig

    def declines(table):
        return None

    return Family(
        name="planted", title="A planted family for the report tests",
        explanation="Fixed outcomes, to check colours and figure handling without statistics.",
        references=("none",),
        predictions=(
            Prediction(id="PL-1", family="planted", statement="Always contradicted, whatever the runs.",
                       metrics_needed=("test_acc",), rule="planted rule one", test=contradicted),
            Prediction(id="PL-2", family="planted", statement="Needs an alpha sweep, then supported.",
                       metrics_needed=("test_acc",), config_needed=("alpha",), rule="planted rule two",
                       test=needs_alpha),
        ),
        figures=(final_accuracy, declines),
    )


def test_explicit_families_colours_and_family_figures(env, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    rc_before = dict(matplotlib.rcParams)
    html_path, json_path = build_report(env["study"], env["store"], tmp_path, families=[_planted_family()],
                                        provenance_overrides=PINNED)
    html = html_path.read_text(encoding="utf-8")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert plt.get_fignums() == open_before, "a family figure was left open"
    assert dict(matplotlib.rcParams) == rc_before, "the report changed the caller's matplotlib style"
    cells = _cells(html)
    assert set(cells) == {(p, r) for p in ("PL-1", "PL-2") for r in RUN_SETS}  # only the families passed
    assert "S1" not in {v["prediction_id"] for v in data["verdicts"]}
    assert all(cells[("PL-1", r)] == "contradicted" for r in RUN_SETS)
    assert cells[("PL-2", "alpha")] == cells[("PL-2", "all")] == "supported"
    # alpha does not vary within low_decay: the prediction cannot be answered there.
    assert cells[("PL-2", "low_decay")] == "inconclusive"
    low = next(v for v in data["verdicts"] if v["prediction_id"] == "PL-2" and v["run_set"] == "low_decay")
    assert "does not vary" in low["notes"] and "does not vary" in html
    keys = [f["key"] for f in data["figures"]]
    assert keys == ["grokking:alpha", "grokking:low_decay", "weight_norm", "planted:final_accuracy"]
    assert len(IMG.findall(html)) == 4  # the declining figure function is skipped
    assert "Final test accuracy per run" in html
    assert "A planted family for the report tests" in html and "Fixed outcomes" in html


def test_unknown_provenance_override_is_refused(env, tmp_path):
    with pytest.raises(ValueError, match="git_comit"):
        collect_report_data(env["study"], env["store"], families=[], provenance_overrides={"git_comit": "x"})


def test_missing_runs_are_listed_and_not_evaluated(env, tmp_path):
    """A study asking for runs the store lacks: they appear as 'not in store', the rest is evaluated."""
    from grokking_theories.studies import load_study

    path = tmp_path / "bigger.toml"
    path.write_text(STUDY_TOML.replace("seeds = [0, 1]", "seeds = [0, 1, 7]"))
    study = load_study(str(path), "quick")
    data = collect_report_data(study, env["store"], families=[], provenance_overrides=PINNED)
    assert isinstance(data, ReportData)
    missing = [r for r in data.runs if r["status"] == "not in store"]
    assert [(r["arm"], r["seed"]) for r in missing] == [("low_decay", 7)]
    assert missing[0]["t_grok"] is None and missing[0]["device"] is None
    assert data.provenance["n_runs"] == N_RUNS + 1 and data.provenance["n_finished"] == N_RUNS
    assert len(data.finished) == N_RUNS


# ---------------------------------------------------------------------- pieces


def test_seed_mean_holds_a_stopped_seed_at_its_last_value():
    from grokking_theories.report.figures import seed_mean

    long = (np.array([1.0, 10.0, 100.0]), np.array([0.0, 0.5, 1.0]))
    short = (np.array([1.0, 10.0]), np.array([0.0, 1.0]))
    grid, mean = seed_mean([long, short])
    assert grid.tolist() == [1.0, 10.0, 100.0]
    assert mean.tolist() == [0.0, 0.75, 1.0]  # the short seed stays at 1.0 after step 10


def test_hue_groups_follow_the_varying_columns(env):
    from grokking_theories.report.figures import _groups

    table = env["store"].metrics_table([c.run_id for c in env["study"].configs])
    alpha = env["study"].arms[0]
    groups, _ = _groups(table, [c.run_id for c in alpha.configs], ["alpha"], "alpha")
    assert [label for label, _ in groups] == ["alpha=0.5", "alpha=1", "alpha=2"]
    assert all(len(ids) == 3 for _, ids in groups)  # three seeds per colour
    single, _ = _groups(table, [c.run_id for c in env["study"].arms[1].configs], [], "low_decay")
    assert [label for label, _ in single] == ["low_decay"] and len(single[0][1]) == 2


def test_git_state_outside_a_checkout(tmp_path):
    from grokking_theories.report.build import _git_state

    assert _git_state(tmp_path) == ("none", None)
    commit, dirty = _git_state(Path(__file__).resolve().parents[1] / "grokking_theories")
    assert commit == "none" or re.fullmatch(r"[0-9a-f]{40}", commit)
