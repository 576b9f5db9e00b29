import numpy as np
import pytest

from grokking_theories.config import TaskConfig
from grokking_theories.errors import ConfigError
from grokking_theories.tasks import OPS, make_task

FORMULAS = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "x2_plus_y2": lambda a, b, p: (a ** 2 + b ** 2) % p,
    "x2_plus_xy_plus_y2": lambda a, b, p: (a ** 2 + a * b + b ** 2) % p,
    "x3_plus_xy": lambda a, b, p: (a ** 3 + a * b) % p,
}


@pytest.mark.parametrize("op", OPS)
def test_labels_match_the_formula_on_every_pair(op):
    p = 13
    task = make_task(TaskConfig(op=op, p=p, train_frac=0.5))
    x = np.concatenate([task.train_x.numpy(), task.test_x.numpy()])
    y = np.concatenate([task.train_y.numpy(), task.test_y.numpy()])
    n_pairs = p * (p - 1) if op == "div" else p * p
    assert len(x) == n_pairs and len({tuple(r) for r in x}) == n_pairs  # every pair exactly once
    for (a, b), c in zip(x, y):
        if op == "div":
            assert b != 0 and (c * b) % p == a  # c = a / b  <=>  c * b = a
        else:
            assert c == FORMULAS[op](int(a), int(b), p)


def test_split_sizes_and_seeds():
    cfg = TaskConfig(op="add", p=23, train_frac=0.3, split_seed=1)
    task = make_task(cfg)
    assert len(task.train_x) == round(0.3 * 23 * 23) and len(task.test_x) == 23 * 23 - len(task.train_x)
    again = make_task(cfg)
    assert (again.train_x == task.train_x).all()  # the split is a function of split_seed only
    other = make_task(TaskConfig(op="add", p=23, train_frac=0.3, split_seed=2))
    assert not (other.train_x == task.train_x).all()


@pytest.mark.parametrize("kwargs, needle", [
    (dict(op="div", p=12), "needs a prime modulus, got p=12"),
    (dict(op="mul", p=15), "needs a prime modulus, got p=15"),
    (dict(op="add", train_frac=0.0), "train_frac must lie in (0, 1), got 0.0"),
    (dict(op="add", train_frac=1.0), "train_frac must lie in (0, 1), got 1.0"),
    (dict(op="add", train_frac=-0.2), "got -0.2"),
    (dict(op="ad"), "unknown op 'ad' (did you mean 'add'?)"),
    (dict(op="pow"), "unknown op 'pow'"),
    (dict(op="add", p=1), "p must be an integer >= 2, got 1"),
])
def test_bad_task_input_names_the_value(kwargs, needle):
    with pytest.raises(ConfigError) as err:
        make_task(TaskConfig(**kwargs))
    assert needle in str(err.value)


def test_composite_modulus_is_fine_for_add():
    assert len(make_task(TaskConfig(op="add", p=12, train_frac=0.5)).train_x) == 72


# --- label noise (Nakkiran et al.): training answers only, its own seed ---------------------------------


def test_label_noise_changes_the_right_fraction_of_training_answers_only():
    p = 23
    clean = make_task(TaskConfig(op="add", p=p, train_frac=0.5))
    noisy = make_task(TaskConfig(op="add", p=p, train_frac=0.5, label_noise=0.2, noise_seed=4))
    assert (noisy.train_x == clean.train_x).all() and (noisy.test_x == clean.test_x).all()  # same split
    assert (noisy.test_y == clean.test_y).all()  # test labels never change
    changed = (noisy.train_y != clean.train_y).numpy()
    assert changed.sum() == round(0.2 * len(clean.train_y))  # exactly the fraction, each to a *wrong* answer
    assert (changed == noisy.train_noisy.numpy()).all()
    # the untouched answers are still op(a, b); the changed ones never are
    a, b = noisy.train_x[:, 0].numpy(), noisy.train_x[:, 1].numpy()
    truth = (a + b) % p
    assert (noisy.train_y.numpy()[~changed] == truth[~changed]).all()
    assert (noisy.train_y.numpy()[changed] != truth[changed]).all()


def test_label_noise_is_a_function_of_its_own_seed():
    cfg = TaskConfig(op="add", p=23, train_frac=0.5, label_noise=0.3, noise_seed=1)
    first, again = make_task(cfg), make_task(cfg)
    assert (first.train_y == again.train_y).all()
    other = make_task(TaskConfig(op="add", p=23, train_frac=0.5, label_noise=0.3, noise_seed=2))
    assert not (other.train_y == first.train_y).all()
    # the split seed moves the split, not the noise draw: with another split the same count is corrupted
    moved = make_task(TaskConfig(op="add", p=23, train_frac=0.5, split_seed=3, label_noise=0.3, noise_seed=1))
    assert int(moved.train_noisy.sum()) == int(first.train_noisy.sum())


def test_wrong_answers_are_uniform_over_the_other_classes():
    p = 7
    task = make_task(TaskConfig(op="add", p=p, train_frac=0.9, label_noise=1.0, noise_seed=0))
    a, b = task.train_x[:, 0].numpy(), task.train_x[:, 1].numpy()
    offsets = (task.train_y.numpy() - (a + b)) % p  # 1..p-1, each about equally often
    counts = np.bincount(offsets, minlength=p)
    assert counts[0] == 0 and counts[1:].min() > 0.5 * counts[1:].mean()


def test_label_noise_is_part_of_the_run_id_but_old_ids_are_kept():
    from grokking_theories.config import RunConfig, canonical_json, run_id

    plain = RunConfig()
    assert "label_noise" not in canonical_json(plain) and "noise_seed" not in canonical_json(plain)
    noisy = RunConfig(task=TaskConfig(label_noise=0.2))
    reseeded = RunConfig(task=TaskConfig(label_noise=0.2, noise_seed=1))
    assert len({run_id(plain), run_id(noisy), run_id(reseeded)}) == 3
    # a config written before the knob existed (no key in its JSON) still names the same run
    assert run_id(plain) == "7655e953594a804b"


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_bad_label_noise_names_the_value(value):
    with pytest.raises(ConfigError, match=f"label_noise must lie in \\[0, 1\\], got {value}"):
        make_task(TaskConfig(label_noise=value))
