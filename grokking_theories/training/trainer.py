"""Train K same-shape runs as one batched model.

A worker is pure: configs in, :class:`RunResult` out (metric rows, checkpoints,
status, summary); only the driver writes to the run store. A member's result
does not depend on which ensemble it trained in: it has its own init
generator, its own mini-batch generator, its own learning rate and decay, and
frozen members (diverged, or stopped after grokking) are left untouched.

The step has two paths. Models that provide ``loss_and_grad`` (the embedding
MLP and the transformer) compute the loss and its gradient by hand, without
autograd; every other model (the digits task's dense-input MLP, whose inputs
are float pixels rather than token indices), every run with ``optim.loss_dtype =
"float32"`` (whose point is float32's softmax collapse, which the hand-written
gradient would not reproduce) and every StableMax run (``optim.loss_fn``) takes
the autograd path. Grokfast's filter and ⊥Grad (``optim.grokfast``,
``optim.orthograd``; :mod:`grokking_theories.training.interventions`) act on the gradient of either path
before AdamW. ``EnsembleTrainer.fast_path`` says
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
from .interventions import GrokfastEMA, GrokfastMA, orthogonal_gradient, stablemax_cross_entropy
from .schedule import checkpoint_steps, metric_steps, thin_checkpoints

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}  # config.LOSS_DTYPES -> torch


@dataclass
class RunResult:
    """What one run produced; the driver hands it to the run store."""

    config: RunConfig
    metrics: list = field(default_factory=list)  # (step, metric, value) rows
    checkpoint: Optional[dict] = None  # {"steps": (n,), "params": {name: (n, ...)}}
    status: str = "complete"  # "complete", "diverged" (loss turned NaN/Inf; the member was frozen) or "failed"
    summary: dict = field(default_factory=dict)
    wall_time: float = 0.0
    device: str = "cpu"

    @classmethod
    def failed(cls, config: RunConfig, error: str, device: str = "cpu") -> "RunResult":
        """A run whose training raised: no rows, status ``'failed'``, the traceback in ``summary['error']``."""
        return cls(config, status="failed", summary={"error": error}, device=str(device))

    @property
    def error(self) -> Optional[str]:
        """The last line of a failed run's traceback (None for a run that trained)."""
        text = self.summary.get("error") if self.status == "failed" else None
        return text.strip().splitlines()[-1] if text else None


def validate_run(cfg: RunConfig) -> None:
    """Reject bad values before any training: the config layer's checks (:func:`grokking_theories.config.validate`)."""
    from ..config import validate

    validate(cfg)


class _Batches:
    """Per-member shuffled mini-batches (epoch-wise without replacement), each from its own seed."""

    def __init__(self, n: int, size: int, seeds: Sequence[int], device):
        self.n, self.size, self.device = n, size, device
        self.gens = [torch.Generator().manual_seed(10_000_019 + int(s)) for s in seeds]
        # Drawn on the CPU (the same indices on every device), copied to the device once per epoch, not per
        # step; on a GPU from pinned memory without waiting (a copy from pageable memory would sync the host).
        self.cuda = torch.device(device).type == "cuda"
        self.perms = [self._draw(g) for g in self.gens]
        self.pos = [0] * len(seeds)

    def _draw(self, gen: torch.Generator) -> torch.Tensor:
        perm = torch.randperm(self.n, generator=gen)
        return perm.pin_memory().to(self.device, non_blocking=True) if self.cuda else perm

    def next(self) -> torch.Tensor:
        out = []
        for k, g in enumerate(self.gens):
            if self.pos[k] + self.size > self.n:
                self.perms[k], self.pos[k] = self._draw(g), 0
            out.append(self.perms[k][self.pos[k]:self.pos[k] + self.size])
            self.pos[k] += self.size
        return torch.stack(out)  # (K, B)


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

    ``device`` is a torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``),
    optionally with ``"+tf32"`` (:func:`parse_device`). On a GPU a step never
    waits for the device (``sync_free``): the optimiser masks frozen members
    arithmetically, and :func:`train_ensemble` reads divergence back only at
    the steps where it logs, checkpoints or stops anyway.
    """

    def __init__(self, configs: Sequence[RunConfig], device: str = "cpu", fast: Optional[bool] = None,
                 sync_free: Optional[bool] = None):
        configs = list(configs)
        key = configs[0].shape_key()
        for cfg in configs:
            validate_run(cfg)
            if cfg.shape_key() != key:
                raise ValueError("configs of one ensemble must share task, architecture, optimiser shape and budget")
        self.configs = configs
        first = configs[0]
        self.device = dev = torch.device(parse_device(device)[0])
        # A host sync per step would idle a GPU; on a CPU it is free. None: decide by device (tests force it).
        self.sync_free = dev.type == "cuda" if sync_free is None else bool(sync_free)
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
        self.any_fixed = any(c.optim.fixed_norm is not None for c in configs)  # known on the host: no sync
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
                                 decayed=self.decayed, decay_target=o.decay_target, init=self.init,
                                 sync_free=self.sync_free)
        self.loss_dtype = TORCH_DTYPES[o.loss_dtype]
        self.loss_fn = o.loss_fn
        # Interventions on the gradient (training/interventions.py), applied before AdamW in this order:
        # Grokfast's filter (per member alpha and lamb), then ⊥Grad.
        self.orthograd = o.orthograd
        lambs = [c.optim.grokfast_lamb for c in configs]
        self.grad_filter = (GrokfastEMA([c.optim.grokfast_alpha for c in configs], lambs) if o.grokfast == "ema"
                            else GrokfastMA(o.grokfast_window, lambs) if o.grokfast == "ma" else None)
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
        if self.loss_fn != "softmax":
            return False, f"the hand-written gradient is softmax cross-entropy's, not {self.loss_fn}'s"
        return True, ""

    @torch.no_grad()
    def project(self) -> None:
        """Fixed-norm mode: rescale each constrained, live member to its target total norm."""
        if not self.any_fixed:
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
        if self.grad_filter is not None:
            grad = self.grad_filter(grad)
        if self.orthograd:
            grad = self.flat.flatten(orthogonal_gradient(self.params, self.flat.unflatten(grad)))
        finite = torch.isfinite(losses)
        # A member whose loss is not finite keeps its last finite parameters (the caller freezes it).
        update = self.active & finite
        if self.sync_free:
            self.opt.step(grad, update)
        else:
            self.opt.step(grad, None if bool(update.all()) else update)
        self.project()
        return losses.detach()

    def _autograd_loss_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss (K,) and its (K, P) gradient by autograd, through ``model.forward``."""
        leaf = self.flat.data.detach().requires_grad_(True)
        loss = stablemax_cross_entropy if self.loss_fn == "stablemax" else cross_entropy
        losses = loss(self.model.forward(self.flat.unflatten(leaf), x), y, self.loss_dtype)
        # Each member's loss depends on its own parameters only, so the gradient of the
        # masked sum is every live member's own gradient; dead members get zeros.
        total = torch.where(self.active, losses, torch.zeros_like(losses)).sum()
        (grad,) = torch.autograd.grad(total, [leaf])
        return losses.detach(), grad


def parse_device(device: str) -> tuple[str, bool]:
    """``"cuda+tf32"`` -> ``("cuda", True)``; ``"cpu"`` -> ``("cpu", False)``.

    TF32 (float32 matmuls with a 10-bit mantissa on tensor cores) is off unless asked for: it rounds
    every matmul input to about 3 significant digits, so a GPU run would no longer match its CPU twin,
    and the slow late-training dynamics grokking is about (weight norms shrinking under decay, logit
    margins growing on fitted examples) are exactly where such rounding accumulates. The loss is kept
    in float64 either way (``optim.loss_dtype``). A run trained with TF32 records ``cuda+tf32`` as its
    device, so it is never mistaken for a full-precision one.
    """
    base, _, mode = str(device).partition("+")
    if mode not in ("", "tf32"):
        raise ValueError(f"device {device!r}: the only mode after '+' is 'tf32'")
    if mode and not base.startswith("cuda"):
        raise ValueError(f"device {device!r}: TF32 is a CUDA mode")
    return base, mode == "tf32"


class _Float32Matmuls:
    """Set CUDA's float32 matmul precision for a block (IEEE by default, TF32 when asked), then restore it."""

    def __init__(self, tf32: bool):
        self.want = "tf32" if tf32 else "ieee"

    def __enter__(self):
        backends = (torch.backends.cuda.matmul, torch.backends.cudnn)
        self.saved = [b.fp32_precision for b in backends]
        for b in backends:
            b.fp32_precision = self.want

    def __exit__(self, *exc):
        for b, old in zip((torch.backends.cuda.matmul, torch.backends.cudnn), self.saved):
            b.fp32_precision = old


def train_ensemble(configs: Sequence[RunConfig], device: str = "cpu",
                   on_step: Optional[Callable[[int], None]] = None) -> list[RunResult]:
    """Train the given runs as one ensemble and return one RunResult per config.

    Metrics are logged on :func:`metric_steps`; checkpoints are taken on
    :func:`checkpoint_steps` and thinned to ``budget.checkpoints`` per run by
    :func:`thin_checkpoints`; a member stops at its budget, ``stop_after_grok``
    steps after its test accuracy first reaches 0.99, or when its loss turns
    NaN/Inf (status "diverged"; its batch-mates train on unaffected).
    ``on_step(n)`` is called with the number of steps just taken.
    ``device``: see :func:`parse_device` (``"cuda+tf32"`` allows TF32 matmuls).
    """
    configs = list(configs)
    if not configs:
        return []
    base, tf32 = parse_device(device)
    if base.startswith("cuda"):
        with _Float32Matmuls(tf32):
            results = _train(configs, base, on_step)
        for r in results:
            r.device = str(device) if tf32 else r.device
        return results
    return _train(configs, base, on_step)


def _train(configs: list, device: str, on_step, sync_free: Optional[bool] = None) -> list[RunResult]:
    """:func:`train_ensemble`'s loop.

    The host looks at the device only at *sync points*: steps where it logs, checkpoints or stops a
    member anyway. A loss that turns non-finite in between is noted on the device (the member is
    frozen there at once, and the step it happened at is kept) and read back at the next sync point,
    which records the same ``diverged_at`` and the same rows as looking every step would.
    """
    start = time.perf_counter()
    ens = EnsembleTrainer(configs, device, sync_free=sync_free)
    K, budget = ens.K, configs[0].budget
    log_at = set(metric_steps(budget).tolist())
    ckpt_at = set(checkpoint_steps(budget).tolist())
    stop_at = [budget.max_steps] * K
    alive = [True] * K  # the host's view of ens.active, brought up to date at each sync point
    rows: list[list] = [[] for _ in range(K)]
    ckpts: list[list] = [[] for _ in range(K)]
    t_fit: list[Optional[int]] = [None] * K
    t_grok: list[Optional[int]] = [None] * K
    diverged_at: list[Optional[int]] = [None] * K
    last_step = [0] * K
    # On the device: the step at which each member's loss first turned non-finite (-1: not yet).
    diverged_step = torch.full((K,), -1, dtype=torch.long, device=ens.device)

    def freeze(k: int, step: int, diverged: bool) -> None:
        alive[k] = False
        ens.active[k] = False
        last_step[k] = step
        if diverged:
            diverged_at[k] = step

    step = 0
    while True:
        stops = {stop_at[k] for k in range(K) if alive[k]}
        if step in log_at or step in ckpt_at or step in stops or step >= budget.max_steps:
            # a sync point: members whose loss turned non-finite since the last one are frozen first
            for k, at in enumerate(diverged_step.tolist()):
                if alive[k] and at >= 0:
                    freeze(k, at, diverged=True)
            live = [k for k in range(K) if alive[k]]
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
                    if alive[k]:
                        ckpts[k].append((step, {n: t[k].detach().cpu().clone() for n, t in ens.params.items()}))
            for k in live:
                if alive[k] and stop_at[k] == step:
                    freeze(k, step, diverged=False)
            if step >= budget.max_steps or not any(alive):
                break
        losses = ens.step()
        step += 1
        # on the device, no host sync: a live member whose loss is not finite is frozen as of step - 1
        bad = ens.active & ~torch.isfinite(losses)
        diverged_step.masked_fill_(bad, step - 1)
        ens.active &= ~bad
        if on_step is not None:
            on_step(1)

    wall = time.perf_counter() - start
    results = []
    for k, cfg in enumerate(configs):
        if alive[k]:
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
