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


@pytest.mark.parametrize("op", [op for op in OPS if op not in ("s5", "digits")])  # S5, digits: own tests
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


def test_s5_is_composition_of_permutations():
    """Known answers: the identity, a transposition squared, a non-commuting pair, associativity, a Latin square."""
    import itertools

    from grokking_theories.tasks.modular import s5_table

    perms = list(itertools.permutations(range(5)))
    table = s5_table()
    assert table.shape == (120, 120)
    assert (table[0] == np.arange(120)).all() and (table[:, 0] == np.arange(120)).all()  # 0 is the identity
    swap01 = perms.index((1, 0, 2, 3, 4))
    assert table[swap01, swap01] == 0
    cycle = perms.index((1, 2, 3, 4, 0))  # k -> k + 1
    # (cycle o swap01)(k) = cycle(swap01(k)): 0 -> 2, 1 -> 1, 2 -> 3, 3 -> 4, 4 -> 0
    assert perms[table[cycle, swap01]] == (2, 1, 3, 4, 0)
    assert table[cycle, swap01] != table[swap01, cycle]  # non-abelian
    rng = np.random.default_rng(0)
    a, b, c = rng.integers(0, 120, (3, 200))
    assert (table[table[a, b], c] == table[a, table[b, c]]).all()
    assert all(len(set(row)) == 120 for row in table) and all(len(set(col)) == 120 for col in table.T)
    task = make_task(TaskConfig(op="s5", p=120, train_frac=0.5))
    x = np.concatenate([task.train_x.numpy(), task.test_x.numpy()])
    y = np.concatenate([task.train_y.numpy(), task.test_y.numpy()])
    assert len(x) == 120 * 120 and (table[x[:, 0], x[:, 1]] == y).all()


def test_s5_needs_p_120_and_has_no_fourier_measures():
    from grokking_theories.config import make_run_config
    from grokking_theories.probes.stage import get_probe

    with pytest.raises(ConfigError, match="p must be their number, 120"):
        make_task(TaskConfig(op="s5", p=113))
    fourier = get_probe("fourier")
    assert not fourier.defined_for(make_run_config({"op": "s5", "p": 120}))
    assert fourier.defined_for(make_run_config({"op": "add", "p": 113}))


def test_an_s5_run_trains_and_its_probe_stage_leaves_out_fourier(tmp_path):
    from grokking_theories.config import make_run_config
    from grokking_theories.probes.stage import get_probe, run_probes
    from grokking_theories.store import RunStore
    from grokking_theories.training import train_run

    cfg = make_run_config(dict(op="s5", p=120, arch="mlp", width=16, max_steps=5, log_points=2, log_every=5,
                               checkpoints=2))
    r = train_run(cfg)
    assert r.status == "complete" and r.checkpoint is not None
    with RunStore(tmp_path) as store:
        store.write_result(cfg, r.metrics, checkpoint=r.checkpoint, summary=r.summary)
        counts = run_probes(store, [cfg.run_id], [get_probe("fourier"), get_probe("flips")], progress=False)
    assert counts.not_defined == 1 and counts.computed == 1  # flips are defined for any task, Fourier is not
