import pytest
import torch

torch.set_num_threads(1)  # the CI machine has 2 cores; one thread per process is the robust choice


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
