"""Op "digits" (scikit-learn's bundled handwritten digits) and arch "dense_mlp" (Omnigrok's depth-3 MLP)."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from grokking_theories.config import DIGITS_IMAGES, ModelConfig, TaskConfig, make_run_config, validate
from grokking_theories.errors import ConfigError
from grokking_theories.models import build_model
from grokking_theories.models.reference import reference_dense_mlp
from grokking_theories.tasks import make_task, train_size

DIGITS = dict(op="digits", p=10, arch="dense_mlp")


@pytest.fixture
def digits_cfg():
    """A short digits run: a width-32 dense MLP on 20% of the images."""
    def make(**overrides):
        flat = dict(DIGITS, width=32, train_frac=0.2, lr=1e-2, weight_decay=0.0, max_steps=40,
                    stop_after_grok=None, log_points=10, log_every=10, checkpoints=8)
        flat.update(overrides)
        return make_run_config(flat)
    return make


def _rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Images with their labels as rows, in a canonical (sorted) order: the multiset of examples."""
    rows = np.concatenate([x, y[:, None].astype(x.dtype)], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


# --- the data set and the split --------------------------------------------------------------------


def test_images_are_sklearns_digits_over_16():
    from sklearn.datasets import load_digits

    from grokking_theories.tasks.digits import load_images

    x, y = load_images()
    raw = load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x * 16, raw.data)  # exact: k / 16 is a float32 for k = 0..16
    np.testing.assert_array_equal(y, raw.target)
    assert sorted(np.unique(y)) == list(range(10)) and np.bincount(y).min() >= 170  # ~180 of each digit
    task = make_task(TaskConfig(op="digits", p=10, train_frac=0.5))
    assert task.train_x.dtype == torch.float32 and task.train_x.shape[1] == 64 and task.n_classes == 10
    assert task.train_y.dtype == torch.int64 and task.train_noisy is None


@pytest.mark.parametrize("train_frac", [0.2, 0.5, 0.0557])
def test_split_is_a_seeded_partition_of_every_image(train_frac):
    from grokking_theories.tasks.digits import load_images

    cfg = TaskConfig(op="digits", p=10, train_frac=train_frac, split_seed=3)
    task = make_task(cfg)
    n_train = int(round(train_frac * 1797))
    assert DIGITS_IMAGES == 1797 and train_size(cfg) == n_train
    assert len(task.train_x) == len(task.train_y) == n_train and len(task.test_x) == 1797 - n_train
    # every image is used exactly once: train + test is the data set, as a multiset of (pixels, label)
    x, y = load_images()
    both = _rows(np.concatenate([task.train_x.numpy(), task.test_x.numpy()]),
                 np.concatenate([task.train_y.numpy(), task.test_y.numpy()]))
    np.testing.assert_array_equal(both, _rows(x, y))
    again = make_task(cfg)
    assert torch.equal(again.train_x, task.train_x) and torch.equal(again.test_y, task.test_y)
    other = make_task(TaskConfig(op="digits", p=10, train_frac=train_frac, split_seed=4))
    assert not torch.equal(other.train_x, task.train_x)


def test_split_is_independent_of_the_model_seed(digits_cfg):
    from grokking_theories.training import EnsembleTrainer

    a = EnsembleTrainer([digits_cfg(seed=0)]).task
    b = EnsembleTrainer([digits_cfg(seed=5, alpha=4.0)]).task
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)


def test_label_noise_changes_the_chosen_training_labels_only():
    clean = make_task(TaskConfig(op="digits", p=10, train_frac=0.3))
    noisy = make_task(TaskConfig(op="digits", p=10, train_frac=0.3, label_noise=0.25, noise_seed=1))
    changed = (noisy.train_y != clean.train_y).numpy()
    assert torch.equal(noisy.train_x, clean.train_x) and torch.equal(noisy.test_y, clean.test_y)
    np.testing.assert_array_equal(changed, noisy.train_noisy.numpy())  # every corrupted label is a wrong one
    assert changed.sum() == round(0.25 * len(clean.train_y))
    assert noisy.train_y.min() >= 0 and noisy.train_y.max() <= 9


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("flat, needle", [
    (dict(DIGITS, p=11), "op 'digits' classifies the digits 0-9: p must be their number, 10, got p=11"),
    (dict(DIGITS, arch="mlp"), "arch must be 'dense_mlp', got arch='mlp'"),
    (dict(DIGITS, arch="transformer"), "arch must be 'dense_mlp', got arch='transformer'"),
    (dict(op="add", p=11, arch="dense_mlp"), "arch 'dense_mlp' reads dense inputs, not token pairs: op must be "
                                             "'digits', got op='add'"),
    (dict(DIGITS, train_frac=1.0), "train_frac must lie in (0, 1), got 1.0"),
])
def test_bad_digits_configs_name_the_field(flat, needle):
    from grokking_theories.training.trainer import validate_run

    with pytest.raises(ConfigError) as err:
        validate(make_run_config(flat))
    assert needle in str(err.value)
    with pytest.raises(ConfigError) as err:  # and so before any training
        validate_run(make_run_config(flat))
    assert needle in str(err.value)


def test_task_checks_reject_digits_with_p_not_10_and_an_empty_split():
    with pytest.raises(ConfigError, match="p must be their number, 10, got p=59"):
        make_task(TaskConfig(op="digits", p=59))
    with pytest.raises(ConfigError, match="empty train or test set"):
        make_task(TaskConfig(op="digits", p=10, train_frac=1e-4))
    validate(make_run_config(dict(DIGITS)))  # the right pairing passes


# --- the model -----------------------------------------------------------------------------------------


def test_dense_mlp_equals_plain_sequential_logits_and_gradients():
    model = build_model(ModelConfig(arch="dense_mlp", width=24), 10)
    params = {n: t.requires_grad_() for n, t in model.init_params([0, 1], [1.0, 3.0]).items()}
    task = make_task(TaskConfig(op="digits", p=10, train_frac=0.1))
    x, y = task.train_x, task.train_y
    logits = model.forward(params, x)
    assert logits.shape == (2, len(x), 10)
    losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(2), reduction="none").view(2, -1)
    grads = torch.autograd.grad(losses.mean(1).sum(), list(params.values()))
    names = {"W_1": (0, "weight"), "b_1": (0, "bias"), "W_2": (2, "weight"), "b_2": (2, "bias"),
             "W_out": (4, "weight"), "b_out": (4, "bias")}
    for k in range(2):  # each member equals its own plain model, in logits and in the loss gradient
        ref = reference_dense_mlp({n: t.detach() for n, t in params.items()}, k)
        ref_logits = ref(x)
        torch.testing.assert_close(logits[k], ref_logits, rtol=1e-5, atol=1e-6)
        torch.nn.functional.cross_entropy(ref_logits, y).backward()
        for (name, _), g in zip(params.items(), grads):
            layer, attr = names[name]
            want = getattr(ref[layer], attr).grad
            torch.testing.assert_close(g[k], want.T if attr == "weight" else want, rtol=1e-4, atol=1e-6, msg=name)
    # one mini-batch per member: (K, N, 64)
    per_member = torch.stack([x[:50], x[50:100]])
    with torch.no_grad():
        out = model.forward(params, per_member)
        torch.testing.assert_close(out[1], reference_dense_mlp(params, 1)(x[50:100]), rtol=1e-5, atol=1e-6)


def test_dense_mlp_init_is_torch_default_times_alpha():
    model = build_model(ModelConfig(arch="dense_mlp", width=200), 10)
    ens = model.init_params([7, 7, 8], [1.0, 8.0, 1.0])
    shapes = {"W_1": (64, 200), "b_1": (200,), "W_2": (200, 200), "b_2": (200,), "W_out": (200, 10), "b_out": (10,)}
    assert {n: tuple(t.shape[1:]) for n, t in ens.items()} == shapes
    for name, fan_in in (("W_1", 64), ("W_2", 200), ("W_out", 200)):
        bound = fan_in ** -0.5  # nn.Linear: U(+-1/sqrt(fan_in))
        w = ens[name][0]
        assert w.abs().max() <= bound and w.abs().max() > 0.97 * bound
        assert abs(w.std().item() - bound / 3 ** 0.5) < 0.05 * bound
    norm = [torch.sqrt(sum(t[k].pow(2).sum() for t in ens.values())).item() for k in range(3)]
    assert norm[1] == pytest.approx(8.0 * norm[0], rel=1e-6)  # alpha scales the whole init by alpha
    for name in ens:
        torch.testing.assert_close(ens[name][1], 8.0 * ens[name][0])
    assert not torch.equal(ens["W_2"][2], ens["W_2"][0])  # members draw from their own seed


def test_hook_points_are_filled_by_name():
    model = build_model(ModelConfig(arch="dense_mlp", width=8), 10)
    cache = {}
    x = torch.rand(5, 64)
    logits = model.forward(model.init_params([0], [1.0]), x, cache)
    assert set(cache) == set(model.hook_points)
    assert torch.equal(cache["hook_logits"], logits)
    assert torch.equal(cache["hook_hidden_2"], torch.relu(cache["hook_pre_2"]))
    assert cache["hook_hidden_1"].shape == (1, 5, 8)


# --- training ------------------------------------------------------------------------------------------


def test_a_short_digits_run_fits_and_generalises(digits_cfg):
    from grokking_theories.training import EnsembleTrainer, train_run

    cfg = digits_cfg(width=64, max_steps=300, log_points=20, log_every=100)
    assert not EnsembleTrainer([cfg]).fast_path  # no hand-written gradient: the autograd path
    r = train_run(cfg)
    assert r.status == "complete"
    assert r.summary["final_train_acc"] >= 0.99, r.summary
    assert r.summary["final_test_acc"] >= 0.8, r.summary  # chance is 0.1


def test_sync_free_path_and_mini_batches_train_the_same(digits_cfg):
    """Float inputs through both step loops (the GPU's sync-free one, here on the CPU) and through mini-batches."""
    from grokking_theories.training.trainer import _train

    def series(result):
        return [v for s, m, v in result.metrics if m == "train_loss"]

    for cfg in (digits_cfg(max_steps=20), digits_cfg(max_steps=20, batch_size=64)):
        (plain,) = _train([cfg], "cpu", None, sync_free=False)
        (free,) = _train([cfg], "cpu", None, sync_free=True)
        np.testing.assert_allclose(series(free), series(plain), rtol=1e-6)
        assert series(plain)[-1] < series(plain)[0]
    (full,) = _train([digits_cfg(max_steps=20)], "cpu", None)
    assert not np.allclose(series(full), series(plain))  # the mini-batches were really used


def test_members_of_one_ensemble_train_as_they_would_alone(digits_cfg):
    from grokking_theories.training import train_ensemble, train_run

    configs = [digits_cfg(seed=0), digits_cfg(seed=1, alpha=3.0)]
    assert configs[0].shape_key() == configs[1].shape_key()
    together = train_ensemble(configs)
    for cfg, res in zip(configs, together):
        alone = train_run(cfg)
        np.testing.assert_allclose([v for _, m, v in res.metrics if m == "train_loss"],
                                   [v for _, m, v in alone.metrics if m == "train_loss"], rtol=1e-5)


# --- probes --------------------------------------------------------------------------------------------


def test_fourier_is_not_defined_for_digits_and_collapse_and_flips_are(digits_cfg, tmp_path):
    from grokking_theories.probes.collapse import collapse_shares
    from grokking_theories.probes.stage import get_probe, run_probes
    from grokking_theories.store import RunStore
    from grokking_theories.training import train_run

    cfg = digits_cfg(alpha=4.0, max_steps=60)
    assert not get_probe("fourier").defined_for(cfg)
    assert get_probe("collapse").defined_for(cfg) and get_probe("flips").defined_for(cfg)
    r = train_run(cfg)
    shares = collapse_shares(cfg, r.checkpoint)
    steps = r.checkpoint["steps"].tolist()
    assert set(shares["metric"]) == {"collapse_train_frac"}
    assert sorted(shares.loc[shares["metric"] == "collapse_train_frac", "step"]) == steps
    assert shares["value"].between(0, 1).all()
    with RunStore(tmp_path) as store:
        store.write_result(cfg, r.metrics, checkpoint=r.checkpoint, summary=r.summary)
        counts = run_probes(store, [cfg.run_id], [get_probe(n) for n in ("fourier", "flips", "collapse")],
                            progress=False)
        table = store.metrics_table(run_ids=[cfg.run_id])
    assert counts.not_defined == 1 and counts.computed == 2
    assert {"collapse_train_frac", "flip_censored_frac"} <= set(table["metric"])


def test_sklearn_is_imported_only_when_a_digits_task_is_built():
    code = ("import sys, grokking_theories, grokking_theories.tasks, grokking_theories.training, "
            "grokking_theories.probes\n"
            "from grokking_theories.config import TaskConfig\n"
            "from grokking_theories.tasks import make_task\n"
            "make_task(TaskConfig(op='add', p=7))\n"
            "assert 'sklearn' not in sys.modules, 'sklearn imported too early'\n"
            "make_task(TaskConfig(op='digits', p=10))\n"
            "assert 'sklearn' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
