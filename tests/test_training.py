import dataclasses

import numpy as np
import pytest
import torch

from grokking_theories.config import BudgetConfig, make_run_config
from grokking_theories.errors import ConfigError
from grokking_theories.models import build_model
from grokking_theories.models.reference import ReferenceMLP, ReferenceTransformer
from grokking_theories.tasks import make_task
from grokking_theories.training import EnsembleTrainer, checkpoint_steps, metric_steps, train_ensemble, train_run
from grokking_theories.training.schedule import thin_checkpoints
from grokking_theories.training.trainer import validate_run


def metric_series(result, name):
    return np.array([v for s, m, v in result.metrics if m == name])


def final_params(result):
    ck = result.checkpoint
    assert ck["steps"][-1] == result.summary["steps_run"]
    return {n: t[-1] for n, t in ck["params"].items()}


@pytest.mark.parametrize("decay_target", ["zero", "init"])
def test_k1_matches_torch_adamw_on_a_plain_model(decay_target):
    """Our trainer (fast forward, ensemble AdamW, warm-up) against nn.Module + torch.optim.AdamW + LambdaLR."""
    cfg = make_run_config(dict(op="add", p=7, train_frac=0.6, arch="transformer", d_model=16, n_heads=2, d_mlp=32,
                               lr=3e-3, weight_decay=0.5, warmup_steps=5, decay_target=decay_target, max_steps=25,
                               stop_after_grok=None, log_points=0, log_every=0, checkpoints=4, seed=3))
    ours = final_params(train_run(cfg))

    task = make_task(cfg.task)
    model = build_model(cfg.model, cfg.task.p)
    init = model.init_params([cfg.seed], [1.0])
    ref = ReferenceTransformer(init)
    opt = torch.optim.AdamW(ref.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-8,
                            weight_decay=0.5 if decay_target == "zero" else 0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / 5, 1.0))
    for _ in range(25):
        logits = ref(task.train_x).double()
        loss = torch.nn.functional.cross_entropy(logits, task.train_y)
        opt.zero_grad()
        loss.backward()
        if decay_target == "init":  # decoupled decay toward theta_0, applied before the Adam step as AdamW does
            with torch.no_grad():
                lr_now = opt.param_groups[0]["lr"]
                for name, p in ref.named_parameters():
                    p.sub_(lr_now * 0.5 * (p - init[name][0]))
        opt.step()
        sched.step()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(ours[name], p.detach(), rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("decay_target, decayed", [("zero", "all"), ("init", "all"), ("zero", "matrices")])
def test_k1_mlp_fast_path_matches_torch_adamw_on_the_one_hot_linear_model(decay_target, decayed):
    """The MLP's hand-written gradient + flat ensemble AdamW against nn.Linear + torch.optim.AdamW + LambdaLR."""
    cfg = make_run_config(dict(op="add", p=11, train_frac=0.6, arch="mlp", width=32, lr=3e-3, weight_decay=0.5,
                               warmup_steps=5, decay_target=decay_target, decayed=decayed, max_steps=25,
                               stop_after_grok=None, log_points=0, log_every=0, checkpoints=4, seed=3))
    assert EnsembleTrainer([cfg]).fast_path
    ours = final_params(train_run(cfg))

    task = make_task(cfg.task)
    init = build_model(cfg.model, cfg.task.p).init_params([cfg.seed], [1.0])
    ref = ReferenceMLP(init)
    wd = 0.5 if decay_target == "zero" else 0.0
    groups = [{"params": [ref.fc1.weight, ref.fc2.weight], "weight_decay": wd},
              {"params": [ref.fc1.bias, ref.fc2.bias], "weight_decay": wd if decayed == "all" else 0.0}]
    opt = torch.optim.AdamW(groups, lr=3e-3, betas=(0.9, 0.98), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / 5, 1.0))
    anchor = {name: p.detach().clone() for name, p in ref.named_parameters()}
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(ref(task.train_x).double(), task.train_y)
        opt.zero_grad()
        loss.backward()
        if decay_target == "init":
            with torch.no_grad():
                lr_now = opt.param_groups[0]["lr"]
                for name, p in ref.named_parameters():
                    if decayed == "all" or name.endswith("weight"):
                        p.sub_(lr_now * 0.5 * (p - anchor[name]))
        opt.step()
        sched.step()
    p = cfg.task.p
    want = {"embed_a": ref.fc1.weight.T[:p], "embed_b": ref.fc1.weight.T[p:], "b_in": ref.fc1.bias,
            "W_out": ref.fc2.weight.T, "b_out": ref.fc2.bias}
    for name, t in want.items():
        torch.testing.assert_close(ours[name], t.detach(), rtol=1e-4, atol=1e-5, msg=name)


def test_fast_path_is_chosen_explicitly(tiny_cfg):
    assert EnsembleTrainer([tiny_cfg()]).fast_path
    assert not EnsembleTrainer([tiny_cfg(loss_dtype="float32")]).fast_path  # float32's collapse is the point
    assert not EnsembleTrainer([tiny_cfg()], fast=False).fast_path
    tf = tiny_cfg(arch="transformer", d_model=16, n_heads=2, d_mlp=32)
    assert EnsembleTrainer([tf]).fast_path  # the transformer has a hand-written gradient too
    assert not EnsembleTrainer([tf], fast=False).fast_path
    assert not EnsembleTrainer([tiny_cfg(arch="transformer", d_model=16, n_heads=2, d_mlp=32,
                                         loss_dtype="float32")]).fast_path
    with pytest.raises(ValueError, match="no fast path"):
        EnsembleTrainer([tiny_cfg(loss_dtype="float32")], fast=True)


TINY_TF = dict(arch="transformer", d_model=16, n_heads=2, d_mlp=32)


@pytest.mark.parametrize("arch", ["mlp", "transformer"])
@pytest.mark.parametrize("batch_size", [0, 16])
def test_fast_path_gradients_equal_autograd_for_members_with_different_hyperparameters(tiny_cfg, batch_size, arch):
    model = TINY_TF if arch == "transformer" else {}
    alpha = 2.0 if arch == "transformer" else 4.0  # alpha scales the transformer's logits like alpha^3
    cfgs = [tiny_cfg(seed=0, lr=1e-2, batch_size=batch_size, **model),
            tiny_cfg(seed=1, lr=3e-3, weight_decay=0.1, alpha=alpha, batch_size=batch_size, **model),
            tiny_cfg(seed=2, lr=3e-2, weight_decay=0.0, alpha=0.5, fixed_norm=2.0, batch_size=batch_size, **model)]
    fast, slow = EnsembleTrainer(cfgs), EnsembleTrainer(cfgs, fast=False)
    assert fast.fast_path and not slow.fast_path
    x, y = fast.task.train_x, fast.task.train_y
    if batch_size:  # one mini-batch per member (K, B, 2)
        gen = torch.Generator().manual_seed(0)
        idx = torch.stack([torch.randperm(len(x), generator=gen)[:batch_size] for _ in cfgs])
        x, y = x[idx], y[idx]
    for step in range(30):
        if step % 10 == 0:  # at several points along one trajectory: the same loss and gradient
            losses = fast.model.loss_and_grad(fast.params, x, y, fast.flat.unflatten(fast.grad), {})
            want_losses, want = fast._autograd_loss_and_grad(x, y)
            torch.testing.assert_close(losses, want_losses, rtol=1e-6, atol=0)
            torch.testing.assert_close(fast.grad, want, rtol=1e-4, atol=1e-6 * want.abs().max().item())
        fast.step()
        slow.step()
    # and the two paths train alike (their mini-batches come from the same per-member generators)
    torch.testing.assert_close(fast.flat.data, slow.flat.data, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("loss_dtype", ["float64", "float32"])  # the fast path and the autograd path
def test_ensemble_members_equal_solo_runs(tiny_cfg, loss_dtype):
    cfgs = [tiny_cfg(seed=0, lr=1e-2, loss_dtype=loss_dtype),
            tiny_cfg(seed=1, lr=3e-3, weight_decay=0.1, alpha=2.0, loss_dtype=loss_dtype)]
    together = train_ensemble(cfgs)
    for cfg, res in zip(cfgs, together):
        solo = train_run(cfg)
        for name in ("train_loss", "test_acc", "weight_norm"):
            np.testing.assert_allclose(metric_series(res, name), metric_series(solo, name), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss_dtype", ["float64", "float32"])
def test_diverged_member_is_frozen_and_batch_mate_unaffected(tiny_cfg, loss_dtype):
    good, bad = tiny_cfg(seed=0, loss_dtype=loss_dtype), tiny_cfg(seed=1, lr=1e36, loss_dtype=loss_dtype)
    res_good, res_bad = train_ensemble([good, bad])
    assert res_bad.status == "diverged" and res_bad.summary["diverged_at"] is not None
    assert res_good.status == "complete"
    solo = train_run(good)
    np.testing.assert_allclose(metric_series(res_good, "train_loss"), metric_series(solo, "train_loss"), rtol=1e-6)
    bad_params = res_bad.checkpoint["params"]
    for t in bad_params.values():  # frozen: the kept checkpoints are finite
        assert torch.isfinite(t).all()


@pytest.mark.parametrize("loss_dtype", ["float64", "float32"])
def test_fixed_norm_holds_every_member_at_its_radius(tiny_cfg, loss_dtype):
    cfgs = [tiny_cfg(seed=0, fixed_norm=2.0, weight_decay=0.0, loss_dtype=loss_dtype),
            tiny_cfg(seed=1, fixed_norm=0.5, weight_decay=0.0, loss_dtype=loss_dtype),
            tiny_cfg(seed=2, loss_dtype=loss_dtype)]
    res = train_ensemble(cfgs)
    for r, target in zip(res[:2], (2.0, 0.5)):
        norms = metric_series(r, "weight_norm")
        np.testing.assert_allclose(norms, target * r.summary["w0"], rtol=1e-4)
    free = metric_series(res[2], "weight_norm")
    assert abs(free[-1] - free[0]) > 0.01 * free[0]  # the unconstrained member's norm does move


def test_stop_rule_stops_after_grokking_and_budget_otherwise(tiny_cfg):
    # a+b mod 31 at train fraction 0.8 generalises within ~1000 steps; stop 10 steps after test acc >= 0.99
    cfg = tiny_cfg(p=31, train_frac=0.8, width=128, max_steps=2000, stop_after_grok=10, log_every=5)
    r = train_run(cfg)
    t_grok = r.summary["t_grok"]
    assert t_grok is not None and r.summary["steps_run"] == t_grok + 10
    steps = sorted({s for s, _, _ in r.metrics})
    assert steps[-1] == t_grok + 10
    budget_run = train_run(tiny_cfg(max_steps=30, stop_after_grok=None))
    assert budget_run.summary["steps_run"] == 30


def test_metrics_are_logged_on_the_schedule_with_every_metric(tiny_cfg):
    cfg = tiny_cfg()
    r = train_run(cfg)
    steps = sorted({s for s, _, _ in r.metrics})
    assert steps == metric_steps(cfg.budget).tolist()
    names = {m for _, m, _ in r.metrics}
    for split in ("train", "test"):
        for m in ("loss", "acc", "margin_mean", "margin_q10", "margin_q50", "margin_q90", "correct_prob"):
            assert f"{split}_{m}" in names
    assert {"weight_norm", "dist_from_init", "norm_embed_a", "norm_W_out"} <= names
    assert metric_series(r, "dist_from_init")[0] == 0.0


def test_accuracy_equals_fraction_of_positive_margins(tiny_cfg):
    from grokking_theories.probes import classification_metrics
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [0.0, 0.0, 1.0]]])
    labels = torch.tensor([0, 2, 2, 1])
    m = classification_metrics(logits, labels, "test")
    assert m["test_acc"].item() == 0.5
    np.testing.assert_allclose(m["test_margin_mean"].item(), np.mean([1.0, -2.0, 4.0, -1.0]))
    np.testing.assert_allclose(m["test_loss"].item(),
                               torch.nn.functional.cross_entropy(logits[0].double(), labels).item())


def test_schedules():
    b = BudgetConfig(max_steps=10_000, log_points=50, log_every=500, checkpoints=64)
    steps = metric_steps(b)
    assert steps[0] == 0 and steps[-1] == 10_000 and (np.diff(steps) > 0).all()
    assert {1, 2, 3, 500, 9500} <= set(steps.tolist())
    ck = checkpoint_steps(b)
    assert ck[0] == 0 and ck[-1] == 10_000
    for last in (10_000, 4_000, 1_500):  # a run may stop long before its budget
        reached = ck[ck <= last]
        kept = reached[thin_checkpoints(reached, last, 64)]
        assert len(kept) >= 64 and kept[0] == 0 and kept[-1] == reached[-1]
        assert len(np.unique(kept)) == len(kept)
        assert (kept <= last / 10).sum() >= 10  # dense early (log-spaced half) ...
        assert (kept >= last / 2).sum() >= 12  # ... and spread through the late phase (linear half)


def test_runs_keep_their_checkpoint_count_when_they_stop_early(tiny_cfg):
    cfg = tiny_cfg(p=31, train_frac=0.8, width=128, max_steps=4000, stop_after_grok=10, log_every=5, checkpoints=30)
    r = train_run(cfg)
    assert r.summary["steps_run"] < 2000  # stopped long before its budget
    assert r.summary["n_checkpoints"] >= 30 and r.checkpoint["steps"][-1] == r.summary["steps_run"]


@pytest.mark.parametrize("loss_dtype", ["float64", "float32"])
def test_mini_batches_are_per_member_and_reproducible(tiny_cfg, loss_dtype):
    cfg = tiny_cfg(batch_size=16, loss_dtype=loss_dtype)
    a, b = train_run(cfg), train_run(cfg)
    np.testing.assert_array_equal(metric_series(a, "train_loss"), metric_series(b, "train_loss"))
    together = train_ensemble([cfg, dataclasses.replace(cfg, seed=5)])
    np.testing.assert_allclose(metric_series(together[0], "train_loss"), metric_series(a, "train_loss"), rtol=1e-6)
    full = train_run(tiny_cfg(loss_dtype=loss_dtype))
    assert not np.allclose(metric_series(full, "train_loss"), metric_series(a, "train_loss"))


@pytest.mark.parametrize("override, needle", [
    (dict(lr=0.0), "optim.lr must be > 0, got 0.0"),
    (dict(weight_decay=-1.0), "optim.weight_decay must be >= 0"),
    (dict(decay_target="one"), "optim.decay_target must be one of zero, init"),
    (dict(loss_dtype="float16"), "loss_dtype must be one of"),
    (dict(max_steps=0), "budget.max_steps must be >= 1"),
    (dict(fixed_norm=-1.0), "fixed_norm must be > 0"),
])
def test_bad_optimiser_and_budget_values(tiny_cfg, override, needle):
    with pytest.raises(ConfigError) as err:
        validate_run(tiny_cfg(**override))
    assert needle in str(err.value)
    with pytest.raises(ConfigError, match="must be"):  # the config layer owns the check, wherever it is called from
        from grokking_theories.config import validate
        validate(tiny_cfg(**override))


def test_ensemble_rejects_mixed_shapes(tiny_cfg):
    with pytest.raises(ValueError, match="share"):
        train_ensemble([tiny_cfg(), tiny_cfg(width=8)])


def test_quick_mlp_groks(tiny_cfg):
    """A known transition: a+b mod 59 at train fraction 0.5 fits early and generalises much later."""
    cfg = tiny_cfg(p=59, width=256, lr=3e-3, weight_decay=1.0, max_steps=4000, stop_after_grok=0,
                   log_points=40, log_every=50, checkpoints=0)
    r = train_run(cfg)
    t_fit, t_grok = r.summary["t_fit"], r.summary["t_grok"]
    assert t_fit is not None and t_fit <= 400, r.summary
    assert t_grok is not None, r.summary
    assert t_grok >= 4 * t_fit  # delayed generalisation, not simultaneous learning
    test_acc = metric_series(r, "test_acc")
    steps = np.array(sorted({s for s, _, _ in r.metrics}))
    assert test_acc[steps <= t_fit].max() < 0.5  # at chance-ish when train accuracy is already 0.99


def test_offline_probes_on_stored_checkpoints_equal_the_online_metrics(tiny_cfg, tmp_path):
    """Offline evaluation of the trainer's float32 checkpoints reproduces the online metrics; from the store's
    compact (float16) checkpoints, the losses and norms agree to float16's precision."""
    from grokking_theories.probes import checkpoint_metrics, stored_checkpoint_metrics
    from grokking_theories.store import RunStore
    cfg = tiny_cfg(max_steps=40, log_points=0, log_every=5, checkpoints=8)  # checkpoints every 5 steps too
    r = train_run(cfg)
    with RunStore(tmp_path / "store") as store:
        store.write_result(cfg, r.metrics, checkpoint=r.checkpoint, summary=r.summary)
        stored = stored_checkpoint_metrics(store, cfg.run_id)
    online = {(s, m): v for s, m, v in r.metrics}
    offline = checkpoint_metrics(cfg, r.checkpoint)
    shared = [(s, m, v) for s, m, v in offline.itertuples(index=False) if (s, m) in online]
    assert len({s for s, _, _ in shared}) >= 5 and {m for _, m, _ in shared} == {m for _, m in online}
    for s, m, v in shared:
        np.testing.assert_allclose(v, online[(s, m)], rtol=1e-5, atol=1e-6, err_msg=f"{m} at step {s}")
    for s, m, v in stored.itertuples(index=False):
        if (s, m) in online and ("loss" in m or m == "weight_norm"):
            np.testing.assert_allclose(v, online[(s, m)], rtol=2e-3, err_msg=f"{m} at step {s} (float16 checkpoint)")


def test_sync_free_update_freezes_exactly_and_matches_the_masked_one():
    """The GPU path's arithmetic masking (no host sync) gives the saved-and-restored path's update: frozen
    members bit-for-bit unchanged (even with a NaN gradient), live members equal to float precision."""
    from grokking_theories.training.adamw import EnsembleAdamW
    from grokking_theories.training.flat import FlatParams

    torch.manual_seed(0)
    init = {"w": torch.randn(3, 5, 4), "b": torch.randn(3, 4)}
    flats = [FlatParams({n: t.clone() for n, t in init.items()}) for _ in range(2)]
    opts = [EnsembleAdamW(f, lr=[1e-2, 3e-3, 1e-2], weight_decay=[1.0, 0.1, 0.0], decay_target=target,
                          init=init, sync_free=free)
            for f, free, target in zip(flats, (False, True), ("init", "init"))]
    active = torch.tensor([True, False, True])
    for step in range(6):
        grad = torch.randn_like(flats[0].data)
        if step % 2:
            grad[1] = float("nan")  # a frozen member's gradient may be anything
        frozen_before = flats[1].data[1].clone(), opts[1].m[1].clone(), opts[1].v[1].clone()
        for f, opt in zip(flats, opts):
            opt.step(grad.clone(), active if step % 2 else torch.ones(3, dtype=torch.bool))
        if step % 2:
            assert torch.equal(flats[1].data[1], frozen_before[0])
            assert torch.equal(opts[1].m[1], frozen_before[1]) and torch.equal(opts[1].v[1], frozen_before[2])
    torch.testing.assert_close(flats[1].data, flats[0].data, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(opts[1].v, opts[0].v, rtol=1e-6, atol=1e-9)


def test_sync_free_training_equals_the_cpu_path_and_reads_the_device_only_at_sync_points(tiny_cfg, monkeypatch):
    """Forced on the CPU, the GPU loop gives the same results (a diverging member included), and it reads tensor
    values on the host only at the steps where it logs, checkpoints or stops, not once per step."""
    from grokking_theories.training import trainer

    cfgs = [tiny_cfg(seed=0, max_steps=300, log_points=0, log_every=100, checkpoints=3),
            tiny_cfg(seed=1, lr=30.0, max_steps=300, log_points=0, log_every=100, checkpoints=3)]
    want = trainer._train(cfgs, "cpu", None, sync_free=False)
    reads = []
    for name in ("__bool__", "item", "tolist", "nonzero", "__float__", "__int__", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            reads.append(1)
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    got = trainer._train(cfgs, "cpu", None, sync_free=True)
    n_300 = len(reads)
    longer = [dataclasses.replace(c, budget=dataclasses.replace(c.budget, max_steps=600)) for c in cfgs]
    trainer._train(longer, "cpu", None, sync_free=True)
    monkeypatch.undo()
    # 300 more steps bring 3 more sync points (logging every 100 steps), not 300 more reads
    assert len(reads) - 2 * n_300 < 100, f"{len(reads) - 2 * n_300} more host reads in 300 more steps"
    for a, b in zip(want, got):
        assert (a.status, a.summary["diverged_at"], a.summary["steps_run"]) == (b.status, b.summary["diverged_at"],
                                                                                b.summary["steps_run"])
        assert [(s, m) for s, m, _ in a.metrics] == [(s, m) for s, m, _ in b.metrics]
        np.testing.assert_allclose([v for *_, v in a.metrics], [v for *_, v in b.metrics], rtol=1e-5, atol=1e-7)
    # known answer: the loop that looked at every step's loss (before the sync-free loop) found this member's
    # loss non-finite at step 16, between two sync points (logging every 100 steps); both paths still say 16
    assert want[1].status == "diverged" and want[1].summary["diverged_at"] == 16 == got[1].summary["diverged_at"]


def test_tf32_is_a_cuda_mode_recorded_in_the_device():
    from grokking_theories.training import parse_device

    assert parse_device("cuda+tf32") == ("cuda", True) and parse_device("cuda:1") == ("cuda:1", False)
    assert parse_device("cpu") == ("cpu", False)
    with pytest.raises(ValueError, match="CUDA mode"):
        parse_device("cpu+tf32")
    with pytest.raises(ValueError, match="only mode"):
        parse_device("cuda+fast")
