"""Known answers for the issue-13 interventions (StableMax, ⊥Grad, Grokfast filters) as ensemble operations."""
import math

import pytest
import torch

from grokking_theories.training.interventions import (GrokfastEMA, GrokfastMA, orthogonal_gradient, stablemax,
                                                      stablemax_cross_entropy)


def test_stablemax_is_its_formula():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.5, 4.0], dtype=torch.float64)
    want = torch.tensor([1 / 4, 1 / 1.5, 1.0, 1.5, 5.0], dtype=torch.float64)
    assert torch.equal(stablemax(x), want)
    # loss of one example by hand: logits (2, 0, -1), label 0 -> s = (3, 1, 1/2), p_0 = 3 / 4.5
    logits = torch.tensor([[[2.0, 0.0, -1.0]]])
    loss = stablemax_cross_entropy(logits, torch.tensor([0]))
    assert loss.shape == (1,) and math.isclose(loss.item(), -math.log(3 / 4.5), rel_tol=1e-12)


def test_stablemax_does_not_collapse_in_float32_where_softmax_does():
    """A confidently right example: float32 softmax loss is exactly 0 (softmax collapse), StableMax's is not."""
    logits = torch.tensor([[[40.0, 0.0, 0.0]]])
    label = torch.tensor([0])
    softmax_loss = -torch.log_softmax(logits, -1)[..., 0]
    assert softmax_loss.item() == 0.0
    assert stablemax_cross_entropy(logits, label, dtype=torch.float32).item() > 0


def test_stablemax_gradient_matches_autograd_of_the_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 7, (5,))
    stablemax_cross_entropy(logits, labels).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.autograd.gradcheck(lambda z: stablemax_cross_entropy(z, labels), (logits.detach().requires_grad_(),))


def test_orthogonal_gradient_is_orthogonal_to_each_tensor_with_the_gradients_norm():
    torch.manual_seed(1)
    weights = {"w": torch.randn(3, 4, 5, dtype=torch.float64), "b": torch.randn(3, 5, dtype=torch.float64)}
    grads = {"w": torch.randn(3, 4, 5, dtype=torch.float64), "b": torch.randn(3, 5, dtype=torch.float64)}
    out = orthogonal_gradient(weights, grads)
    for name in weights:
        w, g, o = (t[name].reshape(3, -1) for t in (weights, grads, out))
        assert torch.allclose((w * o).sum(1), torch.zeros(3, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(o.norm(dim=1), g.norm(dim=1), rtol=1e-12)
        # per member: member 0's answer does not depend on member 1's tensors
        solo = orthogonal_gradient({name: weights[name][:1]}, {name: grads[name][:1]})[name]
        assert torch.allclose(solo, out[name][:1], rtol=1e-12)
    # a gradient along the weights has no orthogonal part: nothing is invented (zero stays zero in direction)
    along = orthogonal_gradient({"w": weights["w"]}, {"w": 2 * weights["w"]})["w"]
    assert along.abs().max() < 1e-6 * weights["w"].abs().max()


def test_grokfast_ema_by_hand():
    g1, g2, g3 = (torch.tensor([[1.0, -2.0], [3.0, 0.5]]) * s for s in (1.0, 2.0, -1.0))
    ema = GrokfastEMA(alpha=[0.5, 0.9], lamb=[2.0, 1.0])
    alpha, lamb = torch.tensor([[0.5], [0.9]]), torch.tensor([[2.0], [1.0]])
    h = g1
    assert torch.allclose(ema(g1), g1 + lamb * h)  # h starts at the first gradient
    h = alpha * h + (1 - alpha) * g2
    assert torch.allclose(ema(g2), g2 + lamb * h)
    h = alpha * h + (1 - alpha) * g3
    assert torch.allclose(ema(g3), g3 + lamb * h)


def test_grokfast_ma_by_hand():
    grads = [torch.full((2, 3), float(v)) for v in (1, 2, 3, 4)]
    ma = GrokfastMA(window=3, lamb=[5.0, 0.0])
    assert torch.equal(ma(grads[0]), grads[0]) and torch.equal(ma(grads[1]), grads[1])  # warm-up: unchanged
    out = ma(grads[2])  # mean of 1, 2, 3 = 2
    assert torch.allclose(out[0], torch.full((3,), 3.0 + 5.0 * 2.0)) and torch.equal(out[1], grads[2][1])
    out = ma(grads[3])  # window slides: mean of 2, 3, 4 = 3
    assert torch.allclose(out[0], torch.full((3,), 4.0 + 5.0 * 3.0))
    with pytest.raises(ValueError, match="window"):
        GrokfastMA(window=0, lamb=[1.0])


# ------------------------------------------------------------------ in the trainer, in the run's hash

def test_the_new_fields_stay_out_of_old_run_ids_and_enter_new_ones(tiny_cfg):
    from grokking_theories.config import canonical_json, run_id

    base = tiny_cfg()
    assert not any(k in canonical_json(base) for k in ("loss_fn", "orthograd", "grokfast"))  # old ids kept
    ids = {run_id(c) for c in (base, tiny_cfg(loss_fn="stablemax"), tiny_cfg(orthograd=True),
                               tiny_cfg(grokfast="ema"), tiny_cfg(grokfast="ema", grokfast_lamb=5.0))}
    assert len(ids) == 5


@pytest.mark.parametrize("key, value, words", [("grokfast", "emaa", "optim.grokfast"),
                                               ("loss_fn", "sparsemax", "optim.loss_fn"),
                                               ("grokfast_alpha", 1.0, "optim.grokfast_alpha")])
def test_bad_intervention_values_name_the_key(tiny_cfg, key, value, words):
    from grokking_theories.errors import ConfigError
    from grokking_theories.training import train_run

    with pytest.raises(ConfigError, match=words):
        train_run(tiny_cfg(**{key: value}))


def test_stablemax_runs_train_on_the_autograd_path_with_the_stablemax_loss(tiny_cfg, monkeypatch):
    from grokking_theories.training import EnsembleTrainer
    from grokking_theories.training import trainer as trainer_module

    ens = EnsembleTrainer([tiny_cfg(loss_fn="stablemax", weight_decay=0.0)])
    assert not ens.fast_path and "stablemax" in ens.fast_path_available()[1]
    seen = []
    real = trainer_module.stablemax_cross_entropy
    monkeypatch.setattr(trainer_module, "stablemax_cross_entropy", lambda *a, **k: seen.append(1) or real(*a, **k))
    first = ens.step()
    for _ in range(30):
        last = ens.step()
    assert seen and float(last[0]) < float(first[0])  # the StableMax loss is what it descends


def test_orthograd_hands_adamw_a_gradient_orthogonal_to_every_tensor(tiny_cfg, monkeypatch):
    from grokking_theories.training import EnsembleTrainer

    ens = EnsembleTrainer([tiny_cfg(seed=0, orthograd=True), tiny_cfg(seed=1, orthograd=True, lr=3e-3)])
    ens.step()  # off the initialisation
    handed = []
    real = ens.opt.step
    monkeypatch.setattr(ens.opt, "step", lambda grad, active=None: handed.append((grad.clone(), ens.flat.data.clone()))
                        or real(grad, active))
    ens.step()
    grads, weights = (ens.flat.unflatten(t) for t in handed[0])  # the gradient and the weights it was taken at
    for name, w in weights.items():
        dots = (w.reshape(2, -1).double() * grads[name].reshape(2, -1).double()).sum(1)
        scale = w.reshape(2, -1).norm(dim=1).double() * grads[name].reshape(2, -1).norm(dim=1).double()
        assert (dots.abs() <= 1e-5 * scale + 1e-12).all(), name


def test_grokfast_is_per_member_and_lamb_zero_is_the_plain_run(tiny_cfg):
    import numpy as np

    from grokking_theories.training import train_ensemble, train_run

    plain = tiny_cfg(seed=0, max_steps=60)
    amplified, off = tiny_cfg(seed=1, max_steps=60, grokfast="ema", grokfast_lamb=2.0), \
        tiny_cfg(seed=0, max_steps=60, grokfast="ema", grokfast_lamb=0.0)
    res_amp, res_off = train_ensemble([amplified, off])

    def series(r, name="train_loss"):
        return np.array([v for s, m, v in r.metrics if m == name])
    np.testing.assert_allclose(series(res_off), series(train_run(plain)), rtol=1e-5, atol=1e-7)
    solo_amp = train_run(amplified)
    np.testing.assert_allclose(series(res_amp), series(solo_amp), rtol=1e-5, atol=1e-7)
    assert not np.allclose(series(solo_amp), series(train_run(tiny_cfg(seed=1, max_steps=60))), rtol=1e-3)


# ------------------------------------------------------------------ softmax collapse (P2's measure)

def test_collapse_is_an_exactly_zero_float32_loss():
    from grokking_theories.probes.collapse import collapsed

    labels = torch.tensor([0, 1, 2])
    # margin 20: float32's loss is exactly 0 and so is p_y - 1; margin 5 and a wrong answer are not collapsed
    logits = torch.tensor([[[20.0, 0.0, 0.0], [0.0, 5.0, 0.0], [20.0, 0.0, 0.0]]])
    assert collapsed(logits, labels).tolist() == [[True, False, False]]
    assert torch.softmax(logits[0, 0], -1)[0] - 1 == 0
    # in float64 the same example still has a loss: collapse is float32's
    assert -torch.log_softmax(logits.double(), -1)[0, 0, 0] > 0
    # the threshold: margin 16 keeps a float32 loss, margin 18 does not (2 other classes: log 2 + ~16.6)
    assert collapsed(torch.tensor([[[16.0, 0.0, 0.0], [18.0, 0.0, 0.0]]]), torch.tensor([0, 0])).tolist() == \
        [[False, True]]


def test_collapse_probe_rises_on_a_run_without_weight_decay(tiny_cfg, tmp_path):
    """A run without weight decay at a high learning rate fits its training set with growing margins: its
    collapsed share of training examples starts at 0 and rises (the stall Prieto et al. describe)."""
    from grokking_theories.probes.stage import get_probe, run_probes
    from grokking_theories.store import RunStore
    from grokking_theories.training import train_run

    cfg = tiny_cfg(weight_decay=0.0, lr=3e-2, max_steps=1500, log_points=10, log_every=500, checkpoints=12)
    r = train_run(cfg)
    with RunStore(tmp_path) as store:
        store.write_result(cfg, r.metrics, checkpoint=r.checkpoint, summary=r.summary)
        counts = run_probes(store, [cfg.run_id], [get_probe("collapse")], progress=False)
        table = store.metrics_table(run_ids=[cfg.run_id], metrics=["collapse_train_frac"])
    assert counts.computed == 1
    share = table.sort_values("step")["value"].to_numpy()
    assert share[0] == 0.0 and share[-1] > 0.5, share


def test_a_stablemax_run_is_measured_on_its_own_loss():
    """A margin that collapses float32 softmax leaves StableMax's loss positive (s(20) = 21 against s(0) = 1),
    so the same logits are collapsed for a softmax run and not for a StableMax run."""
    from grokking_theories.probes.collapse import collapsed

    logits = torch.tensor([[[20.0, 0.0, 0.0]]])
    labels = torch.tensor([0])
    assert collapsed(logits, labels, "softmax").tolist() == [[True]]
    assert collapsed(logits, labels, "stablemax").tolist() == [[False]]
