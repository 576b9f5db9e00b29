"""The notebook API: run_study / load return a StudyResults with the report's verdicts, the tidy table,
summary(), _repr_html_ and figures drawn on demand; the CLI is a thin layer over run_study."""
import json

import pytest

import grokking_theories as gt
from grokking_theories.errors import GrokkingError
from test_study import tiny_family, write_study


def _figure_of_runs(table):
    """A family figure whose title says how many runs it was given (so the test sees the study's table)."""
    from grokking_theories.plotting import new_figure

    fig, axes = new_figure(1, 1)
    axes[0][0].set_title(f"{table['run_id'].nunique()} runs")
    return fig


@pytest.fixture
def tiny_with_figure(monkeypatch):
    import dataclasses

    import grokking_theories.theories as theories

    fam = dataclasses.replace(tiny_family(), figures=(_figure_of_runs,))
    monkeypatch.setattr(theories, "get_family", lambda name: fam)
    return fam


def test_run_study_returns_the_reports_verdicts_and_table(tmp_path, tiny_with_figure, capsys):
    out = tmp_path / "out"
    results = gt.run_study(str(write_study(tmp_path)), out=out, workers=1)
    report = json.loads((out / "report.json").read_text())
    assert results.table["run_id"].nunique() == len(report["finished"]) == 8
    head = results.headline
    assert list(head["prediction_id"]) == [h["id"] for h in report["headline"]] == ["T1"]
    assert list(head["verdict"]) == [h["verdict"] for h in report["headline"]]
    assert len(results.verdicts) == len(report["verdicts"])  # headline and secondary cells, as in the report
    text = results.summary()
    assert "tiny" in text and "T1" in text and "supported" in text and str(out / "report.html") in text
    assert "<table" in results._repr_html_() and "T1" in results._repr_html_()
    assert repr(results) == "<StudyResults tiny [quick]: 1 supported>"
    # the CLI's printed output comes from the same function
    assert "8 runs trained, 0 reused" in capsys.readouterr().out
    again = gt.run_study(str(write_study(tmp_path)), out=out, workers=1)
    assert json.loads((out / "study.json").read_text())["reused"] == 8 and len(again.verdicts) == len(results.verdicts)


def test_load_reopens_a_finished_study_without_writing(tmp_path, tiny_with_figure):
    out = tmp_path / "out"
    first = gt.run_study(str(write_study(tmp_path)), out=out, workers=1)
    def files():  # SQLite's own -wal / -shm sidecars appear on any open, read-only included: not our writes
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}

    before = files()
    loaded = gt.load(out)
    assert files() == before  # no report, record, checkpoint or index file is written
    cols = ["prediction_id", "run_set", "verdict", "p_value", "p_adjusted"]
    assert loaded.verdicts[cols].equals(first.verdicts[cols])
    assert loaded.table.sort_values(["run_id", "metric", "step"]).reset_index(drop=True).equals(
        first.table.sort_values(["run_id", "metric", "step"]).reset_index(drop=True))
    assert loaded.figure_names == ["tiny_family:_figure_of_runs"]
    fig = loaded.figure("_figure_of_runs")
    assert fig.axes[0].get_title() == "8 runs"  # drawn on the study's own finished runs
    with pytest.raises(GrokkingError, match="is not a figure of this study.*did you mean"):
        loaded.figure("_figure_of_run")


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(GrokkingError, match="study.json not found"):
        gt.load(tmp_path)
    (tmp_path / "study.json").write_text("{not json")
    with pytest.raises(GrokkingError, match="is corrupt"):
        gt.load(tmp_path)
