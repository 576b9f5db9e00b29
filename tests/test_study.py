import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from grokking_theories.errors import ConfigError
from grokking_theories.studies import load_study
from grokking_theories.study import main

TINY = """
description = "tiny test study"
families = ["tiny_family"]

[quick]
seeds = [0, 1]
base = { op = "add", p = 11, train_frac = 0.5, arch = "mlp", width = 16, lr = 1e-2, max_steps = MAX_STEPS, stop_after_grok = 0, log_points = 10, log_every = 10, checkpoints = 4 }

[[quick.arms]]
name = "wd"
grid = { weight_decay = [0.0, 1.0], alpha = [1, 2] }

[[quick.arms]]
name = "shared"
set = { weight_decay = 1.0 }
grid = { alpha = [1.0] }
"""


def write_study(tmp_path, text=TINY, max_steps=30):
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace("MAX_STEPS", str(max_steps)))
    return path


def test_grid_expansion_and_shared_runs(tmp_path):
    study = load_study(str(write_study(tmp_path)))
    sets = study.run_sets()
    assert len(sets["wd"]) == 2 * 2 * 2 and len(sets["shared"]) == 2
    # alpha = 1 (an int in TOML) and 1.0 are the same run: the shared arm reuses the wd arm's runs
    assert set(sets["shared"]) <= set(sets["wd"])
    assert len(study.configs) == 8
    assert {c.model.alpha for c in study.configs} == {1.0, 2.0}


def test_cases_move_knobs_together_and_cross_the_grid(tmp_path):
    text = TINY + textwrap.dedent("""
        [[quick.arms]]
        name = "transformer_widths"
        seeds = [0]
        set = { arch = "transformer", n_heads = 4 }
        cases = [{ d_model = 16, d_mlp = 64 }, { d_model = 32, d_mlp = 128 }]
        grid = { label_noise = [0.0, 0.2] }
        """)
    study = load_study(str(write_study(tmp_path, text)))
    arm = next(a for a in study.arms if a.name == "transformer_widths")
    pairs = sorted((c.model.d_model, c.model.d_mlp, c.task.label_noise) for c in arm.configs)
    # each case keeps its knobs together (never d_model 16 with d_mlp 128), crossed with every grid value
    assert pairs == [(16, 64, 0.0), (16, 64, 0.2), (32, 128, 0.0), (32, 128, 0.2)]


@pytest.mark.parametrize("edit, needle", [
    (('name = "shared"', 'name = "shared"\ncases = [{ widht = 8 }]'), "unknown key 'widht' in"),
    (('name = "shared"', 'name = "shared"\ncases = []'), "cases in"),
    (('families = ["tiny_family"]', 'familys = ["tiny_family"]'), "unknown key 'familys' in"),
    (("seeds = [0, 1]", "seed = [0, 1]"), "unknown key 'seed' in"),
    (('name = "shared"', 'nme = "shared"'), "unknown key 'nme'"),
    (("width = 16", "widht = 16"), "unknown key 'widht' in"),
    (("grid = { weight_decay", "grid = { weight_dcay"), "did you mean 'weight_decay'?"),
    (("lr = 1e-2", 'lr = "fast"'), "lr must be a number, got 'fast'"),
    (("op = \"add\"", "op = \"addd\""), "unknown op 'addd' (did you mean 'add'?)"),
    (("train_frac = 0.5", "train_frac = 1.5"), "train_frac must lie in (0, 1), got 1.5"),
    (("alpha = [1, 2]", "alpha = 2"), "must be a non-empty list"),
])
def test_study_typos_fail_before_training_and_name_the_key(tmp_path, edit, needle):
    path = write_study(tmp_path, TINY.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_study(str(path))
    assert needle in str(err.value)


def test_unknown_study_and_scale(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'omnigrok'"):
        load_study("omnigrk")
    with pytest.raises(ConfigError, match="has no scale 'paper'"):
        load_study(str(write_study(tmp_path)), "paper")


def test_shipped_studies_load_at_every_scale():
    from grokking_theories.studies import available_studies
    import tomllib
    studies = available_studies()
    assert "omnigrok" in studies
    for name, path in studies.items():
        for scale in ("quick", "paper"):
            if scale in tomllib.loads(path.read_text()):
                assert load_study(name, scale).configs


def _tiny_outcome(table):
    from grokking_theories.stats import Outcome

    n = int(table["run_id"].nunique())
    return Outcome(verdict="supported", test="planted exact test", effect_name="planted effect", effect_size=1.0,
                   ci_low=0.5, ci_high=1.5, p_value=0.001, p_supports="supported", n_runs=n)


def tiny_family():
    """A family defined here, so the CLI test does not depend on the shipped families' state."""
    from grokking_theories.stats import Design, Prediction
    from grokking_theories.theories import Family

    return Family(name="tiny_family", title="Tiny planted family", explanation="planted", study="tiny",
                  predictions=(Prediction(id="T1", family="tiny_family", statement="A planted effect.",
                                          rule="planted", test=_tiny_outcome, metrics_needed=("test_acc",),
                                          design=Design(runs="weight_decay > 0")),))


@pytest.fixture
def tiny_families(monkeypatch):
    import grokking_theories.theories as theories

    fam = tiny_family()
    monkeypatch.setattr(theories, "get_family", lambda name: fam)
    return fam


def test_cli_trains_then_reuses_everything(tmp_path, capsys, tiny_families):
    path = write_study(tmp_path)
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out), "--workers", "1"]) == 0
    first = json.loads((out / "study.json").read_text())
    assert first["trained"] == 8 and first["reused"] == 0
    printed = capsys.readouterr().out
    assert "t_grok" in printed and "weight_decay" in printed
    # 30 steps: no run generalises, and the CLI says so (per arm) before it names the report.
    assert "censoring: 8 of 8 finished runs are censored at their budget (test accuracy never reached 0.99)" \
        in printed
    assert "arm wd: 8 of 8 finished runs censored (budget 30 steps)" in printed
    assert "arm shared: 2 of 2 finished runs censored" in printed
    assert printed.index("censoring:") < printed.index("report: ")
    report = (out / "report.html").read_text()
    assert 'id="censoring"' in report and 'id="headline-T1"' in report and "wd" in report
    data = json.loads((out / "report.json").read_text())
    assert [(h["id"], h["n"], h["run_filter"]) for h in data["headline"]] == [("T1", 4, "weight_decay > 0")]
    verdicts = data["verdicts"]
    assert {v["run_set"] for v in verdicts} == {"primary design", "wd", "shared", "all"}
    assert {v["role"] for v in verdicts if v["run_set"] == "primary design"} == {"headline"}
    assert data["censoring"]["n_censored"] == 8
    assert main([str(path), "--out", str(out), "--workers", "1"]) == 0
    second = json.loads((out / "study.json").read_text())
    assert second["trained"] == 0 and second["reused"] == 8
    # rebuilding the report trains nothing and gives the same bytes
    (out / "report.html").unlink()
    assert main(["report", "--out", str(out)]) == 0
    assert (out / "report.html").read_text() == report


def test_cost_is_estimated_before_training_and_dry_run_trains_nothing(tmp_path, capsys, tiny_families):
    """The study says how long it will take (measured step rates) before it starts; --dry-run stops there."""
    path = write_study(tmp_path)
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out), "--workers", "1", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "8 to train on cpu" in printed and "estimated training time on cpu with 1 worker(s): at most" in printed
    assert not (out / "store").exists()  # nothing opened for writing, nothing trained
    assert main([str(path), "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("estimated training time") < printed.index("report: ")
    assert main([str(path), "--out", str(out), "--workers", "1", "--dry-run"]) == 0
    assert "8 already in" in capsys.readouterr().out


def test_retrain_takes_only_runs_of_the_study(tmp_path, capsys, tiny_families):
    path = write_study(tmp_path)
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out), "--workers", "1"]) == 0
    from grokking_theories.store import RunStore
    with RunStore(out / "store", readonly=True) as store:
        victim = sorted(store.finished_ids())[0]
    capsys.readouterr()
    assert main([str(path), "--out", str(out), "--workers", "1", "--retrain", victim[:-1] + "x"]) == 2
    assert "is not a run of study tiny" in capsys.readouterr().err
    assert main([str(path), "--out", str(out), "--workers", "1", "--retrain", victim]) == 0
    record = json.loads((out / "study.json").read_text())
    assert record["trained"] == 1 and record["reused"] == 7
    with RunStore(out / "store", readonly=True) as store:
        assert store.status(victim) == "complete" and store.attempts([victim]) == {victim: 2}  # trained twice


def test_tf32_on_a_cpu_is_refused(tmp_path, capsys):
    assert main([str(write_study(tmp_path)), "--out", str(tmp_path / "o"), "--device", "cpu", "--tf32"]) == 2
    assert "--tf32 is a CUDA setting" in capsys.readouterr().err


def test_report_subcommand_needs_a_study_folder(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "study.json not found" in capsys.readouterr().err
    (tmp_path / "study.json").write_text("{not json")
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "is corrupt" in capsys.readouterr().err


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    path = write_study(tmp_path, TINY.replace("width = 16", "widht = 16"))
    assert main([str(path), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key 'widht'" in capsys.readouterr().err


def test_killed_study_resumes_without_retraining(tmp_path, tiny_families):
    """SIGKILL the study after some runs finished; the rerun trains exactly the missing ones."""
    path = write_study(tmp_path, max_steps=1500)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "grokking_theories.study", str(path), "--out", str(out), "--workers", "1",
           "--ensemble-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from grokking_theories.store import RunStore
    deadline = time.time() + 120
    done_before = set()
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if (out / "store" / "index.sqlite").exists():
            try:
                with RunStore(out / "store", readonly=True) as store:
                    done_before = store.finished_ids()
            except Exception:
                continue
            if len(done_before) >= 2:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= len(done_before) < 8, "the study finished before it could be killed; make runs longer"
    with RunStore(out / "store", readonly=True) as store:
        done_at_kill = store.finished_ids()
    assert main([str(path), "--out", str(out), "--workers", "1"]) == 0
    record = json.loads((out / "study.json").read_text())
    assert record["reused"] == len(done_at_kill) and record["trained"] == 8 - len(done_at_kill)


def test_second_driver_on_the_same_store_is_refused(tmp_path, capsys):
    from grokking_theories.store import RunStore
    path = write_study(tmp_path)
    out = tmp_path / "out"
    with RunStore(out / "store"):
        assert main([str(path), "--out", str(out)]) == 2
    assert "in use by another driver" in capsys.readouterr().err


def test_executor_rebuilds_the_pool_when_a_worker_dies(tmp_path, monkeypatch, tiny_cfg):
    from grokking_theories.execution import LocalExecutor
    sys.path.insert(0, str(Path(__file__).parent))
    monkeypatch.setenv("GT_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    import study_helpers
    groups = [[tiny_cfg(seed=0)], [tiny_cfg(seed=1)]]
    ex = LocalExecutor(workers=2, fn=study_helpers.die_once_then_train)
    progress = []
    results = [r for _, batch in ex.run(groups, "cpu", lambda i, n: progress.append((i, n))) for r in batch]
    assert sorted(r.config.seed for r in results) == [0, 1]
    assert (tmp_path / "marker").read_text() == "died"
    # workers reported their steps through the queue: at least each group's budget in total
    steps = {i: sum(n for j, n in progress if j == i) for i in (0, 1)}
    assert all(steps[i] >= tiny_cfg().budget.max_steps for i in (0, 1)), steps


def test_in_process_executor_reports_every_step(tiny_cfg):
    from grokking_theories.execution import LocalExecutor
    progress = []
    out = list(LocalExecutor(workers=1).run([[tiny_cfg(seed=0)], [tiny_cfg(seed=1)]], "cpu",
                                            lambda i, n: progress.append((i, n))))
    assert [i for i, _ in out] == [0, 1]
    for i in (0, 1):
        assert sum(n for j, n in progress if j == i) == tiny_cfg().budget.max_steps


def test_help_is_instant_and_imports_no_heavy_module():
    code = textwrap.dedent("""
        import sys
        from grokking_theories import study
        try:
            study.parse_args(["--help"])
        except SystemExit:
            pass
        heavy = [m for m in ("torch", "pandas", "scipy", "statsmodels", "matplotlib") if m in sys.modules]
        assert not heavy, heavy
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--scale" in proc.stdout and "--workers" in proc.stdout


def test_list_names_every_shipped_study(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("omnigrok", "weight_decay", "sharpness"):
        assert name in out
    assert "[quick, paper]" in out


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main([str(write_study(tmp_path)), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
