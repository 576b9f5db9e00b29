"""Plumbing of benchmarks/calibration.py, on planted families defined here (the shipped ones are not used).

A planted rule ("the per-run effect is positive", a one-sample t-test) is
calibrated on the run configs of small study files written to a temporary
folder; the script's study and family look-ups are monkeypatched. The tests
check the plan (a prediction once per scale, on its primary study; an
uncalibrated prediction listed, never skipped), the JSON keys, that every
rate lies in [0, 1], the text table, and the process pool.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from grokking_theories.stats import Calibration, InsufficientDataError, Prediction, directional_outcome
from grokking_theories.theories import Family
from grokking_theories.theories.planted import concat, run_frame

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

STUDY_A = """
description = "calibration CLI test: primary study of family calib_a"
families = ["calib_a", "calib_b"]

[quick]
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
base = { op = "add", p = 11, train_frac = 0.5, arch = "mlp", width = 16, lr = 1e-2, max_steps = 100 }

[[quick.arms]]
name = "only"

[paper]
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
base = { op = "add", p = 11, train_frac = 0.5, arch = "mlp", width = 16, lr = 1e-2, max_steps = 200 }

[[paper.arms]]
name = "only"
"""

# A second study that also includes calib_a: the family must still be calibrated once, on calib_a_study.
STUDY_C = """
description = "calibration CLI test: another study using family calib_a"
families = ["calib_a"]

[quick]
seeds = [0, 1, 2]
base = { op = "add", p = 11, train_frac = 0.5, arch = "mlp", width = 16, lr = 1e-2, max_steps = 100 }

[[quick.arms]]
name = "only"
"""

EFFECT = 1.5  # planted mean of the per-run effect, in units of its run-to-run sd


def plant_effect(configs, scenario, rng):
    """Per-run 'effect' metric: mean 0 (null), +EFFECT (effect) or -EFFECT (opposite), sd 1."""
    mean = {"null": 0.0, "effect": EFFECT, "opposite": -EFFECT}[scenario]
    frames = []
    for cfg in configs:
        v = mean + rng.normal()
        frames.append(run_frame(cfg, [0, cfg.budget.max_steps], {"effect": [v, v], "test_acc": [0.1, 0.2]}))
    return concat(frames)


def test_effect(table):
    values = table[table["metric"] == "effect"].groupby("run_id")["value"].last().to_numpy()
    if len(values) < 3:
        raise InsufficientDataError("fewer than 3 runs")
    return directional_outcome(estimate=float(values.mean()), se=float(values.std(ddof=1) / np.sqrt(len(values))),
                               df=len(values) - 1, expected="positive", test="one-sample t-test",
                               statistic_name="mean effect", n_runs=len(values))


test_effect.__test__ = False  # a rule, not a pytest test


def families() -> dict:
    a = Family(name="calib_a", title="planted A", explanation="", study="calib_a_study", predictions=(
        Prediction(id="CA1", family="calib_a", statement="The planted effect is positive.", rule="t-test",
                   test=test_effect, metrics_needed=("effect",),
                   calibration=Calibration(plant=plant_effect, effect=f"mean {EFFECT} sd, planted")),
        Prediction(id="CA2", family="calib_a", statement="Has no planter.", rule="none", test=test_effect,
                   metrics_needed=("effect",)),
    ))
    b = Family(name="calib_b", title="planted B", explanation="", study="not_shipped", predictions=(
        Prediction(id="CB1", family="calib_b", statement="Primary study not shipped.", rule="t-test",
                   test=test_effect, metrics_needed=("effect",),
                   calibration=Calibration(plant=plant_effect, effect="planted")),
    ))
    return {"calib_a": a, "calib_b": b}


@pytest.fixture
def bench(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # spawned workers import the script as `calibration`
    module = importlib.import_module("calibration")
    (tmp_path / "calib_a_study.toml").write_text(STUDY_A)
    (tmp_path / "calib_c_study.toml").write_text(STUDY_C)
    studies = {"calib_a_study": tmp_path / "calib_a_study.toml", "calib_c_study": tmp_path / "calib_c_study.toml"}
    fams = families()
    monkeypatch.setattr(module, "shipped_studies", lambda: studies)
    monkeypatch.setattr(module, "family_by_name", lambda name: fams[name])
    return module


def _run(bench, capsys, *args) -> tuple[int, str, str]:
    code = bench.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_lists_every_prediction_once_per_scale_with_rates_in_unit_interval(bench, capsys):
    code, out, err = _run(bench, capsys, "--draws", "20", "--json", "--workers", "1")
    assert code == 0
    rows = json.loads(out)
    keys = [(r["prediction"], r["scale"]) for r in rows]
    # Once per scale (calib_c_study also includes calib_a, but CA1 is calibrated on calib_a_study only);
    # CA2 (no planter) and CB1 (primary study not shipped) are listed, not skipped.
    assert sorted(keys) == sorted([(p, s) for p in ("CA1", "CA2", "CB1") for s in ("quick", "paper")])
    ca1 = {r["scale"]: r for r in rows if r["prediction"] == "CA1"}
    for scale, seeds in (("quick", 8), ("paper", 10)):
        r = ca1[scale]
        assert r["calibrated"] is True and r["study"] == "calib_a_study" and r["seeds"] == seeds
        assert r["draws"] == 20
        for name in ("false_supported", "false_contradicted", "power", "power_to_contradict"):
            assert 0.0 <= r[name] <= 1.0
        for name in ("false_supported", "false_contradicted", "power"):
            lo, hi = r[f"{name}_ci"]
            assert 0.0 <= lo <= r[name] <= hi <= 1.0
        assert isinstance(r["passes"], bool) and r["effect"].startswith("mean 1.5")
        assert r["power"] >= 0.5  # 1.5 sd with 8-10 runs: the planted effect is found
    for r in rows:
        if r["prediction"] == "CA2":
            assert r["calibrated"] is False and "no Calibration planter" in r["reason"]
            assert r["false_supported"] is None and r["power"] is None
        if r["prediction"] == "CB1":
            assert r["calibrated"] is False and "'not_shipped' is not shipped" in r["reason"]
    assert "calibrating" in err  # the progress bar is on stderr


def test_table_only_scale_and_strict(bench, capsys):
    code, out, _ = _run(bench, capsys, "--draws", "20", "--only", "CA1,CA2", "--scale", "quick", "--workers", "1",
                        "--strict")
    assert code == 1  # CA2 is not calibrated
    assert "false supported" in out and "false contradicted" in out and "power" in out
    line = next(line for line in out.splitlines() if line.startswith("CA1"))
    assert "quick" in line and "calib_a_study" in line and line.rstrip().endswith(("pass", "FAIL"))
    assert line.count("%") == 3
    assert any(line.startswith("CA2") and "not calibrated" in line for line in out.splitlines())
    assert "CB1" not in out and "paper" not in out.split("planted effects:")[0].split("\n", 3)[-1]
    code, _, err = _run(bench, capsys, "--draws", "5", "--only", "ZZ9")
    assert code == 2 and "ZZ9" in err


def test_process_pool_gives_the_in_process_result(bench, capsys):
    """Workers get the pickled prediction and the same seed: the pool and the loop agree draw for draw."""
    args = ("--draws", "10", "--json", "--only", "CA1")
    code, serial, _ = _run(bench, capsys, *args, "--workers", "1")
    assert code == 0
    code, pooled, _ = _run(bench, capsys, *args, "--workers", "2")
    assert code == 0
    assert json.loads(serial) == json.loads(pooled)
