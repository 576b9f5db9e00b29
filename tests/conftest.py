import pytest
import torch

torch.set_num_threads(1)  # the CI machine has 2 cores; one thread per process is the robust choice


@pytest.fixture(autouse=True, scope="session")
def step_rate_cache(tmp_path_factory):
    """Measured step rates go to a temporary cache, never the user's (studies run in subprocesses inherit it)."""
    import os

    from grokking_theories.execution.throughput import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("step_rates"))
    yield os.environ[CACHE_ENV]
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture
def tiny_cfg():
    """A run that trains in well under a second: a+b mod 11, a small MLP."""
    from grokking_theories.config import make_run_config

    def make(**overrides):
        flat = dict(op="add", p=11, train_frac=0.5, arch="mlp", width=16, lr=1e-2, weight_decay=1.0,
                    max_steps=40, stop_after_grok=None, log_points=10, log_every=10, checkpoints=8)
        flat.update(overrides)
        return make_run_config(flat)
    return make


@pytest.fixture
def tiny_composite(tmp_path, monkeypatch):
    """Two tiny studies ('sharpness', so the gallery's Power et al. figure is drawn, and 'tinyb') with a family
    each, and a composite study including both by path."""
    import dataclasses

    import grokking_theories.theories as theories
    from test_study import TINY, tiny_family

    base = tiny_family()
    fam_a = dataclasses.replace(base, name="fam_a", title="Planted A", study="sharpness",
                                predictions=(dataclasses.replace(base.predictions[0], id="A1", family="fam_a"),))
    fam_b = dataclasses.replace(base, name="fam_b", title="Planted B", study="tinyb",
                                predictions=(dataclasses.replace(base.predictions[0], id="B1", family="fam_b"),))
    families = {"fam_a": fam_a, "fam_b": fam_b}
    monkeypatch.setattr(theories, "get_family", lambda name: families[name])
    (tmp_path / "sharpness.toml").write_text(TINY.replace("MAX_STEPS", "30").replace("tiny_family", "fam_a"))
    (tmp_path / "tinyb.toml").write_text(TINY.replace("MAX_STEPS", "30").replace("tiny_family", "fam_b")
                                         .replace("p = 11", "p = 13"))
    path = tmp_path / "mix.toml"
    path.write_text(f'description = "planted composite"\ninclude = ["{tmp_path / "sharpness.toml"}", '
                    f'"{tmp_path / "tinyb.toml"}"]\n')
    return path
