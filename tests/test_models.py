import pytest
import torch

from grokking_theories.config import ModelConfig
from grokking_theories.errors import ConfigError
from grokking_theories.models import build_model
from grokking_theories.models.reference import ReferenceMLP, ReferenceTransformer

P = 13
SMALL_TF = ModelConfig(arch="transformer", d_model=32, n_heads=4, d_mlp=64)


def test_transformer_logits_equal_full_sequence_reference():
    model = build_model(ModelConfig(arch="transformer"), P)  # Nanda's exact sizes
    params = model.init_params([0, 1], [1.0, 3.0])
    x = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    out = model.forward(params, x)
    for k in range(2):
        ref = ReferenceTransformer(params, k)(x)
        # float32 summation order differs; alpha=3 makes logits ~100x larger, so scale atol with them
        torch.testing.assert_close(out[k], ref, rtol=1e-5, atol=2e-6 * ref.abs().max().item())
    per_member = torch.stack([x[:50], x[50:100]])  # (K, N, 2): one mini-batch per member
    out_pm = model.forward(params, per_member)
    ref = ReferenceTransformer(params, 1)(x[50:100])
    torch.testing.assert_close(out_pm[1], ref, rtol=1e-5, atol=2e-6 * ref.abs().max().item())


def test_transformer_gradients_equal_reference():
    model = build_model(SMALL_TF, P)
    params = {n: t.requires_grad_() for n, t in model.init_params([4], [1.0]).items()}
    x = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    y = (x[:, 0] + x[:, 1]) % P
    loss = torch.nn.functional.cross_entropy(model.forward(params, x)[0], y)
    grads = torch.autograd.grad(loss, list(params.values()))
    ref = ReferenceTransformer({n: t.detach() for n, t in params.items()})
    torch.nn.functional.cross_entropy(ref(x), y).backward()
    for (name, _), g in zip(params.items(), grads):
        torch.testing.assert_close(g[0], getattr(ref, name).grad, rtol=1e-4, atol=1e-6, msg=name)


def test_mlp_equals_one_hot_linear_reference():
    model = build_model(ModelConfig(arch="mlp", width=24), P)
    params = model.init_params([0, 1], [1.0, 2.0])
    x = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    for k in range(2):
        torch.testing.assert_close(model.forward(params, x)[k], ReferenceMLP(params, k)(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg", [ModelConfig(arch="mlp", width=8), SMALL_TF])
def test_members_depend_on_their_own_seed_only_and_alpha_scales(cfg):
    model = build_model(cfg, P)
    ens = model.init_params([3, 7], [1.0, 2.5])
    solo = model.init_params([7], [1.0])
    for name in ens:
        torch.testing.assert_close(ens[name][1], 2.5 * solo[name][0])
    assert not torch.equal(ens["W_out"][0], solo["W_out"][0])


def test_nanda_init_statistics():
    model = build_model(ModelConfig(arch="transformer"), 113)
    params = model.init_params([0], [1.0])
    assert params["W_E"].shape == (1, 114, 128) and params["W_U"].shape == (1, 128, 113)
    assert abs(params["W_in"].std().item() - 128 ** -0.5) < 0.003
    assert abs(params["W_U"].std().item() - 114 ** -0.5) < 0.005
    assert params["b_in"].abs().max() == 0 and params["b_out"].abs().max() == 0


def test_hook_points_are_filled_by_name():
    for cfg in (ModelConfig(arch="mlp", width=8), SMALL_TF):
        model = build_model(cfg, P)
        cache = {}
        logits = model.forward(model.init_params([0], [1.0]), torch.tensor([[1, 2], [3, 4]]), cache)
        assert set(cache) == set(model.hook_points)
        assert torch.equal(cache["hook_logits"], logits)


def test_decayed_names():
    model = build_model(ModelConfig(arch="mlp", width=8), P)
    assert model.decayed_names("all") == ["embed_a", "embed_b", "b_in", "W_out", "b_out"]
    assert model.decayed_names("matrices") == ["embed_a", "embed_b", "W_out"]


@pytest.mark.parametrize("cfg, needle", [
    (ModelConfig(arch="lstm"), "unknown arch 'lstm'"),
    (ModelConfig(arch="transfomer"), "did you mean 'transformer'"),
    (ModelConfig(alpha=0.0), "alpha (init scale) must be > 0, got 0.0"),
    (ModelConfig(width=0), "model.width must be >= 1, got 0"),
    (ModelConfig(arch="transformer", d_model=30, n_heads=4), "d_model=30 is not divisible by n_heads=4"),
])
def test_bad_model_config(cfg, needle):
    with pytest.raises(ConfigError) as err:
        build_model(cfg, P)
    assert needle in str(err.value)


def _autograd_loss_and_grads(model, params, x, y, dtype=torch.float64):
    from grokking_theories.probes import cross_entropy
    leaves = {n: t.detach().clone().requires_grad_() for n, t in params.items()}
    losses = cross_entropy(model.forward(leaves, x), y, dtype)
    grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
    return losses.detach(), dict(zip(leaves, grads))


def _hand_written(model, params, x, y):
    grads = {n: torch.full_like(t, float("nan")) for n, t in params.items()}  # every entry must be written
    return model.loss_and_grad(params, x, y, grads), grads


def test_mlp_hand_written_gradient_equals_autograd_on_the_float64_loss():
    model = build_model(ModelConfig(arch="mlp", width=24), P)
    params = model.init_params([0, 1, 2], [1.0, 4.0, 30.0])  # alpha 30: logits in the hundreds
    _assert_hand_written_equals_autograd(model, params)


def _assert_hand_written_equals_autograd(model, params) -> None:
    """On every pair, shared by all members, and on one 60-example mini-batch per member: the hand-written
    float64 loss equals autograd's to 1e-6 and every gradient to float32 precision."""
    x = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    y = (x[:, 0] + x[:, 1]) % P
    K = next(iter(params.values())).shape[0]
    per_member = torch.stack([x[50 * k:50 * k + 60] for k in range(K)])  # (K, N, 2): one mini-batch each
    for xs, ys in ((x, y), (per_member, (per_member[..., 0] + per_member[..., 1]) % P)):
        want_loss, want = _autograd_loss_and_grads(model, params, xs, ys)
        loss, grads = _hand_written(model, params, xs, ys)
        assert loss.dtype == torch.float64
        torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=0)
        for name, g in want.items():
            torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6 * g.abs().max().item(), msg=name)


def test_mlp_hand_written_gradient_keeps_float64_precision_where_float32_collapses():
    """Correct logit ahead by ~25: the float32 loss rounds to 0 (softmax collapse), the float64 one does not."""
    model = build_model(ModelConfig(arch="mlp", width=P), P)
    gen = torch.Generator().manual_seed(0)
    eye = torch.eye(P)[None]
    params = {"embed_a": eye.clone(), "embed_b": torch.zeros(1, P, P), "b_in": torch.zeros(1, P),
              "W_out": 25 * eye + torch.rand(1, P, P, generator=gen), "b_out": torch.rand(1, P, generator=gen)}
    x = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    y = x[:, 0]  # the argmax class: every example is confidently correct
    assert _autograd_loss_and_grads(model, params, x, y, torch.float32)[0].item() == 0.0
    want_loss, want = _autograd_loss_and_grads(model, params, x, y)
    loss, grads = _hand_written(model, params, x, y)
    assert 0 < loss.item() < 1e-8
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=0)
    for name in ("W_out", "b_out", "embed_a", "b_in"):  # gradients of size ~1e-10, compared relatively
        torch.testing.assert_close(grads[name], want[name], rtol=1e-4, atol=1e-6 * want[name].abs().max().item(),
                                   msg=name)
    assert grads["W_out"][0].diagonal().lt(0).all()  # the correct class is pushed up, not ignored


@pytest.mark.parametrize("seeds, alphas", [([5], [1.0]), ([0, 1, 2], [1.0, 2.0, 4.0])])
def test_transformer_hand_written_gradient_equals_autograd_on_the_float64_loss(seeds, alphas):
    model = build_model(SMALL_TF, P)
    params = model.init_params(seeds, alphas)  # alpha 4: attention scores ~250x, near one-hot patterns
    _assert_hand_written_equals_autograd(model, params)


def test_transformer_hand_written_step_is_the_trainers_fast_path_and_keeps_forward():
    from grokking_theories.config import make_run_config
    from grokking_theories.training import EnsembleTrainer

    cfg = make_run_config(dict(op="add", p=P, train_frac=0.5, arch="transformer", d_model=32, n_heads=4, d_mlp=64,
                               max_steps=10, log_points=0, log_every=0, checkpoints=0))
    ens = EnsembleTrainer([cfg, cfg])
    assert ens.fast_path
    x, y = ens.task.train_x, ens.task.train_y
    logits = ens.model.forward(ens.params, x)
    work = {}
    for _ in range(2):  # reused work buffers give the same result
        losses = ens.model.loss_and_grad(ens.params, x, y, ens.flat.unflatten(ens.grad), work)
    want_losses, want = ens._autograd_loss_and_grad(x, y)
    torch.testing.assert_close(losses, want_losses, rtol=1e-6, atol=0)
    torch.testing.assert_close(ens.grad, want, rtol=1e-4, atol=1e-6 * want.abs().max().item())
    assert torch.equal(ens.model.forward(ens.params, x), logits)  # the step does not touch params or forward
