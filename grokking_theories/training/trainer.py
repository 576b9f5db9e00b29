"""Train K same-shape runs as one batched model.

A worker is pure: configs in, :class:`RunResult` out (metric rows, checkpoints,
status, summary); only the driver writes to the run store. A member's result
does not depend on which ensemble it trained in: it has its own init
generator, its own mini-batch generator, its own learning rate and decay, and
frozen members (diverged, or stopped after grokking) are left untouched.

The step has two paths. Models that provide ``loss_and_grad`` (the embedding
MLP and the transformer) compute the loss and its gradient by hand, without
autograd; every other model, and every run with ``optim.loss_dtype =
"float32"`` (whose point is float32's softmax collapse, which the hand-written
gradient would not reproduce), takes the autograd path. ``EnsembleTrainer.fast_path`` says
which one a trainer uses; both give the same gradients to float32 precision
(``tests/test_training.py``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ..config import RunConfig
from ..levels import FIT_ACC, GROK_ACC
from ..models import build_model
from ..probes import cross_entropy, evaluate
from ..tasks import make_task
from .adamw import EnsembleAdamW
from .flat import FlatParams
from .schedule import checkpoint_steps, metric_steps, thin_checkpoints

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}  # config.LOSS_DTYPES -> torch


@dataclass
class RunResult:
    """What one run produced; the driver hands it to the run store."""

    config: RunConfig
    metrics: list = field(default_factory=list)  # (step, metric, value) rows
    checkpoint: Optional[dict] = None  # {"steps": (n,), "params": {name: (n, ...)}}
    status: str = "complete"  # "complete" or "diverged" (loss turned NaN/Inf; the member was frozen)
    summary: dict = field(default_factory=dict)
    wall_time: float = 0.0
    device: str = "cpu"


def validate_run(cfg: RunConfig) -> None:
    """Reject bad values before any training: the config layer's checks (:func:`grokking_theories.config.validate`)."""
    from ..config import validate

    validate(cfg)


class _Batches:
    """Per-member shuffled mini-batches (epoch-wise without replacement), each from its own seed."""

    def __init__(self, n: int, size: int, seeds: Sequence[int], device):
        self.n, self.size, self.device = n, size, device
        self.gens = [torch.Generator().manual_seed(10_000_019 + int(s)) for s in seeds]
        self.perms = [torch.randperm(n, generator=g) for g in self.gens]
        self.pos = [0] * len(seeds)

    def next(self) -> torch.Tensor:
        out = []
        for k, g in enumerate(self.gens):
            if self.pos[k] + self.size > self.n:
                self.perms[k], self.pos[k] = torch.randperm(self.n, generator=g), 0
            out.append(self.perms[k][self.pos[k]:self.pos[k] + self.size])
            self.pos[k] += self.size
        return torch.stack(out).to(self.device)  # (K, B)


def _total_norm(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach().pow(2).flatten(1).sum(1) for t in params.values()]).sum(0).sqrt()


class EnsembleTrainer:
    """The state of K same-shape runs training as one batched model, and one optimiser step.

    All configs must share :meth:`RunConfig.shape_key`; seed, alpha, lr,
    weight decay and fixed norm may differ per member. ``params`` are named
    views of one (K, P) buffer, ``flat.data``. ``fast`` chooses the step's
    path: None (default) takes the hand-written gradient where the model and
    loss dtype allow it (:attr:`fast_path`), False forces autograd, True
    raises where the fast path is not available.
    """

    def __init__(self, configs: Sequence[RunConfig], device: str = "cpu", fast: Optional[bool] = None):
        configs = list(configs)
        key = configs[0].shape_key()
        for cfg in configs:
            validate_run(cfg)
            if cfg.shape_key() != key:
                raise ValueError("configs of one ensemble must share task, architecture, optimiser shape and budget")
        self.configs = configs
        first = configs[0]
        self.device = dev = torch.device(device)
        self.task = make_task(first.task).to(dev)
        self.model = build_model(first.model, first.task.p)
        self.K = K = len(configs)
        seeds = [c.seed for c in configs]
        alphas = torch.tensor([c.model.alpha for c in configs], dtype=torch.float32, device=dev)
        params = self.model.init_params(seeds, alphas.tolist(), dev)
        self.init = {n: t.detach().clone() for n, t in params.items()}
        # w0: norm of each member's alpha = 1 init, the unit of Omnigrok's fixed-norm radius.
        self.w0 = _total_norm(self.init) / alphas
        self.fixed = torch.tensor([c.optim.fixed_norm is not None for c in configs], device=dev)
        self.target_norm = self.w0 * torch.tensor([c.optim.fixed_norm or 1.0 for c in configs], device=dev)
        self.flat = FlatParams(params)
        self.params = params = self.flat.views
        self.active = torch.ones(K, dtype=torch.bool, device=dev)
        self.project()  # fixed-norm members start on their constraint sphere, as every later step ends there
        o = first.optim
        self.decayed = self.model.decayed_names(o.decayed)
        self.opt = EnsembleAdamW(self.flat, lr=[c.optim.lr for c in configs],
                                 weight_decay=[c.optim.weight_decay for c in configs],
                                 betas=(o.beta1, o.beta2), eps=o.eps, warmup_steps=o.warmup_steps,
                                 decayed=self.decayed, decay_target=o.decay_target, init=self.init)
        self.loss_dtype = TORCH_DTYPES[o.loss_dtype]
        n_train = self.task.train_x.shape[0]
        self.batches = _Batches(n_train, o.batch_size, seeds, dev) if 0 < o.batch_size < n_train else None
        available, why = self.fast_path_available()
        if fast and not available:
            raise ValueError(f"no fast path: {why}")
        self.fast_path = available if fast is None else bool(fast)
        self.grad = torch.zeros_like(self.flat.data)  # (K, P) gradient, written in place by the fast path
        self._grad_views = self.flat.unflatten(self.grad)
        self._work: dict = {}

    def fast_path_available(self) -> tuple[bool, str]:
        """Whether the hand-written loss gradient applies, and if not, why."""
        if not hasattr(self.model, "loss_and_grad"):
            return False, f"{type(self.model).__name__} has no hand-written gradient (autograd is used)"
        if self.loss_dtype != torch.float64:
            return False, "loss_dtype float32 keeps autograd's float32 softmax (and its collapse)"
        return True, ""

    @torch.no_grad()
    def project(self) -> None:
        """Fixed-norm mode: rescale each constrained, live member to its target total norm."""
        if not bool(self.fixed.any()):
            return
        scale = self.target_norm / self.flat.data.pow(2).sum(1).sqrt()
        scale = torch.where(self.fixed & self.active, scale, torch.ones_like(scale))
        self.flat.data.mul_(scale[:, None])

    def evaluate(self) -> dict[str, torch.Tensor]:
        return evaluate(self.model, self.params, self.task, self.init)

    def step(self) -> torch.Tensor:
        """One optimiser step of every live member; returns the per-member training loss (K,)."""
        task = self.task
        if self.batches is None:
            x, y = task.train_x, task.train_y
        else:
            idx = self.batches.next()
            x, y = task.train_x[idx], task.train_y[idx]
        if self.fast_path:
            # Members' losses are independent, so every member gets its own gradient; those of
            # frozen members are computed too but never applied (the optimiser leaves them as they are).
            losses = self.model.loss_and_grad(self.params, x, y, self._grad_views, self._work)
            grad = self.grad
        else:
            losses, grad = self._autograd_loss_and_grad(x, y)
        finite = torch.isfinite(losses)
        # A member whose loss is not finite keeps its last finite parameters (the caller freezes it).
        update = self.active & finite
        self.opt.step(grad, None if bool(update.all()) else update)
        self.project()
        return losses.detach()

    def _autograd_loss_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss (K,) and its (K, P) gradient by autograd, through ``model.forward``."""
        leaf = self.flat.data.detach().requires_grad_(True)
        losses = cross_entropy(self.model.forward(self.flat.unflatten(leaf), x), y, self.loss_dtype)
        # Each member's loss depends on its own parameters only, so the gradient of the
        # masked sum is every live member's own gradient; dead members get zeros.
        total = torch.where(self.active, losses, torch.zeros_like(losses)).sum()
        (grad,) = torch.autograd.grad(total, [leaf])
        return losses.detach(), grad


def train_ensemble(configs: Sequence[RunConfig], device: str = "cpu",
                   on_step: Optional[Callable[[int], None]] = None) -> list[RunResult]:
    """Train the given runs as one ensemble and return one RunResult per config.

    Metrics are logged on :func:`metric_steps`; checkpoints are taken on
    :func:`checkpoint_steps` and thinned to ``budget.checkpoints`` per run by
    :func:`thin_checkpoints`; a member stops at its budget, ``stop_after_grok``
    steps after its test accuracy first reaches 0.99, or when its loss turns
    NaN/Inf (status "diverged"; its batch-mates train on unaffected).
    ``on_step(n)`` is called with the number of steps just taken.
    """
    configs = list(configs)
    if not configs:
        return []
    start = time.perf_counter()
    ens = EnsembleTrainer(configs, device)
    K, budget, active = ens.K, configs[0].budget, ens.active
    log_at = set(metric_steps(budget).tolist())
    ckpt_at = set(checkpoint_steps(budget).tolist())
    stop_at = [budget.max_steps] * K
    rows: list[list] = [[] for _ in range(K)]
    ckpts: list[list] = [[] for _ in range(K)]
    t_fit: list[Optional[int]] = [None] * K
    t_grok: list[Optional[int]] = [None] * K
    diverged_at: list[Optional[int]] = [None] * K
    last_step = [0] * K

    def freeze(k: int, step: int, diverged: bool) -> None:
        active[k] = False
        last_step[k] = step
        if diverged:
            diverged_at[k] = step

    step = 0
    while True:
        live = [k for k in range(K) if active[k]]
        if step in log_at or any(stop_at[k] == step for k in live):  # a run's last step is always logged
            values = {n: v.detach().cpu().numpy() for n, v in ens.evaluate().items()}
            for k in live:
                member = {n: float(v[k]) for n, v in values.items()}
                rows[k].extend((step, n, v) for n, v in member.items())
                if not all(math.isfinite(v) for v in member.values()):
                    freeze(k, step, diverged=True)
                    continue
                if t_fit[k] is None and member["train_acc"] >= FIT_ACC:
                    t_fit[k] = step
                if t_grok[k] is None and member["test_acc"] >= GROK_ACC:
                    t_grok[k] = step
                    if budget.stop_after_grok is not None:
                        stop_at[k] = min(stop_at[k], step + budget.stop_after_grok)
        if step in ckpt_at or any(stop_at[k] == step for k in live):  # stop_at may have just been set
            for k in live:
                if active[k]:
                    ckpts[k].append((step, {n: t[k].detach().cpu().clone() for n, t in ens.params.items()}))
        for k in live:
            if active[k] and stop_at[k] == step:
                freeze(k, step, diverged=False)
        if step >= budget.max_steps or not bool(active.any()):
            break
        losses = ens.step()
        step += 1
        bad = active & ~torch.isfinite(losses)
        if bool(bad.any()):  # one device sync per step, not one per member
            for k in torch.nonzero(bad).flatten().tolist():
                freeze(k, step - 1, diverged=True)
        if on_step is not None:
            on_step(1)

    wall = time.perf_counter() - start
    results = []
    for k, cfg in enumerate(configs):
        if active[k]:
            last_step[k] = step
        kept = [ckpts[k][i] for i in thin_checkpoints([s for s, _ in ckpts[k]], last_step[k], budget.checkpoints)]
        steps = [s for s, _ in kept]
        checkpoint = None
        if steps:
            checkpoint = {"steps": torch.tensor(steps, dtype=torch.long),
                          "params": {n: torch.stack([c[n] for _, c in kept]) for n in ens.params}}
        final = {m: v for s, m, v in rows[k] if s == rows[k][-1][0]} if rows[k] else {}
        summary = {
            "t_fit": t_fit[k], "t_grok": t_grok[k], "steps_run": last_step[k],
            "diverged_at": diverged_at[k], "w0": float(ens.w0[k]), "n_checkpoints": len(steps),
            "decayed_tensors": ens.decayed,
            "final_train_acc": final.get("train_acc"), "final_test_acc": final.get("test_acc"),
            "final_weight_norm": final.get("weight_norm"),
        }
        results.append(RunResult(cfg, rows[k], checkpoint, "diverged" if diverged_at[k] is not None else "complete",
                                 summary, wall / K, str(ens.device)))
    return results


def train_run(config: RunConfig, device: str = "cpu", on_step=None) -> RunResult:
    """Train one run (an ensemble of one)."""
    return train_ensemble([config], device, on_step)[0]
