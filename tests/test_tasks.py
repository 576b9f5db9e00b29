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
