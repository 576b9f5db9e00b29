"""Run configuration: every knob of one training run, in one place.

A run *is* its config: :func:`run_id` hashes the canonical JSON of a
:class:`RunConfig`, so two studies that ask for the same run share it in the
store. Field names are unique across the sections so that the tidy tables can
use them as flat column names (``op``, ``p``, ``lr``, ``alpha``, ``seed`` ...).
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import ConfigError

#: The tasks on pairs of tokens (a, b): binary operations mod p, and composition in S5 (tasks/modular.py).
PAIR_OPS = ("add", "sub", "mul", "div", "x2_plus_y2", "x2_plus_xy_plus_y2", "x3_plus_xy", "s5")
#: Every task: the pair tasks, and "digits", scikit-learn's bundled 8 x 8 handwritten digits (tasks/digits.py).
OPS = PAIR_OPS + ("digits",)
#: The order of S5, the symmetric group on 5 letters: op "s5" (Power et al.'s non-abelian task, composition
#: of permutations) needs p = S5_ORDER, one token and one class per permutation.
S5_ORDER = 120
#: The classes of op "digits" (the digits 0-9): it needs p = DIGITS_CLASSES, p being the number of classes.
DIGITS_CLASSES = 10
#: The inputs of op "digits": the 8 x 8 pixels of an image, the input width of arch "dense_mlp".
DIGITS_PIXELS = 64
#: The images of op "digits" (scikit-learn's ``load_digits``; tasks/digits.py checks the count when it loads
#: them): train_frac of them train, the rest test. Known here so that split sizes need no data set.
DIGITS_IMAGES = 1797


@dataclass(frozen=True)
class TaskConfig:
    op: str = "add"  # which binary operation mod p (see grokking_theories.tasks.OPS), or "s5" (composition of
    #   permutations of 5 letters, p = 120: Power et al.'s non-abelian task; the Fourier probes say "not defined"),
    #   or "digits" (scikit-learn's 1,797 8x8 handwritten digits, p = 10, arch "dense_mlp": Omnigrok's
    #   grokking beyond algorithmic data, App. J; the Fourier probes say "not defined")
    p: int = 59  # modulus, i.e. the number of classes; prime so that every op (div, mul) is a group/field
    #   operation. Fixed by the task for s5 (120) and digits (10)
    train_frac: float = 0.5  # fraction of all examples used for training (pairs; digits: of the 1,797 images);
    #   grokking lives at 0.3-0.5 for the pair ops, Omnigrok's MNIST runs train on ~1.7% (1,000 of 60,000)
    split_seed: int = 0  # seeds the train/test split only, independent of the model seed (Power et al.)
    label_noise: float = 0.0  # fraction of *training* answers replaced by a uniformly drawn wrong answer
    #   (Nakkiran et al.: epoch-wise double descent is strongest with label noise); test labels never change.
    #   1.0 makes every training label random: how the memorisation capacity is measured (Huang et al.)
    noise_seed: int = 0  # seeds which training answers are corrupted and their wrong answers, nothing else


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mlp"  # "mlp" (cheap, CPU sweeps) or "transformer" (Nanda et al. 2023, exactly) for the pair
    #   ops; "dense_mlp" (Omnigrok's depth-3 ReLU MLP on dense inputs) for op "digits", and for it only
    width: int = 256  # MLP hidden width (dense_mlp: of both hidden layers; Omnigrok: 200): the double-descent
    #   knob; ignored by the transformer
    d_model: int = 128  # transformer residual width (Nanda: 128)
    n_heads: int = 4  # transformer heads (Nanda: 4 x 32)
    d_mlp: int = 512  # transformer MLP width (Nanda: 512, ReLU)
    alpha: float = 1.0  # init scale: every initial tensor is multiplied by alpha (Omnigrok's w/w0)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3  # AdamW learning rate (Power, Nanda: 1e-3)
    weight_decay: float = 1.0  # decoupled AdamW decay lambda; decay per step is lr * weight_decay
    beta1: float = 0.9  # Adam first-moment decay
    beta2: float = 0.98  # Adam second-moment decay (Power, Nanda: 0.98)
    eps: float = 1e-8  # Adam denominator epsilon
    warmup_steps: int = 10  # linear lr warm-up over the first updates (Power, Nanda: 10)
    decay_target: str = "zero"  # "zero" (AdamW) or "init" (decay toward the initial weights, Power's ablation)
    decayed: str = "all"  # which tensors are decayed: "all" (Nanda's code) or "matrices" (no biases)
    batch_size: int = 0  # 0 = full batch (Nanda, Omnigrok); >0 = mini-batches sampled per run
    fixed_norm: Optional[float] = None  # Omnigrok's constrained runs: after every step rescale the
    #   whole parameter vector to fixed_norm * w0, w0 = the norm of the alpha=1 default init
    loss_dtype: str = "float64"  # loss in float64 by default so softmax collapse does not fake "no grokking"
    loss_fn: str = "softmax"  # "softmax" or "stablemax": Prieto et al.'s s(x) = x + 1 / 1/(1 - x) in place of
    #   exp, whose float32 loss never rounds to 0 (grokking without weight decay); trains on the autograd path
    orthograd: bool = False  # Prieto et al.'s ⊥Grad: each tensor's gradient loses its component along the
    #   weights (the scale-up-the-logits direction) and is rescaled to its norm, before AdamW
    grokfast: str = "none"  # Lee et al.'s slow-gradient amplifier: "none", "ema" or "ma" (moving average)
    grokfast_alpha: float = 0.98  # EMA factor of Grokfast-EMA (Lee et al.: 0.98)
    grokfast_lamb: float = 2.0  # amplification of the filtered gradient (Lee et al.: 2 for EMA, 5 for MA)
    grokfast_window: int = 100  # window of Grokfast-MA, in steps (Lee et al.: 100)


@dataclass(frozen=True)
class BudgetConfig:
    max_steps: int = 5000  # step budget; runs that never grok are right-censored here
    stop_after_grok: Optional[int] = 500  # stop this many steps after test acc >= 0.99 (None: run to budget)
    log_points: int = 120  # log-spaced metric steps (dense early, where memorisation happens)
    log_every: int = 50  # plus a linear grid every log_every steps (resolves the late transition)
    checkpoints: int = 64  # parameter checkpoints kept per run for offline probes (>= 60 for Fourier work),
    #   half log-spaced, half evenly spaced over the steps the run actually took


@dataclass(frozen=True)
class RunConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    seed: int = 0  # model-init (and mini-batch) seed; the split has its own seed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """One flat dict of every field: the config columns of the tidy tables."""
        out: dict[str, Any] = {}
        for name, value in self.to_dict().items():
            if isinstance(value, dict):
                out.update(value)
            else:
                out[name] = value
        return out

    @property
    def run_id(self) -> str:
        return run_id(self)

    def shape_key(self) -> tuple:
        """Runs with equal shape keys can train as members of one ensemble.

        Per-member knobs (seed, alpha, lr, weight decay, fixed norm, Grokfast's alpha and lamb) may differ;
        everything that changes tensor shapes, data or the step loop may not.
        """
        o = self.optim
        return (
            self.task,
            dataclasses.replace(self.model, alpha=1.0),
            (o.beta1, o.beta2, o.eps, o.warmup_steps, o.decay_target, o.decayed,
             o.batch_size, o.loss_dtype, o.loss_fn, o.orthograd, o.grokfast, o.grokfast_window),
            self.budget,
        )


#: The optimiser and loss arms of the interventions family (issue 13), at their plain values: softmax
#: cross-entropy, no ⊥Grad, no Grokfast filter, the float64 loss (a float32 loss is I3's collapse arm). A
#: prediction's design admits only runs at these values unless it names the arm it is about (``Design.about``),
#: so an intervention run never joins another explanation's arm (a ⊥AdamW run without weight decay is not a
#: "wd = 0" run of the weight-decay ablation).
PLAIN_OPTIMISER = {"loss_fn": "softmax", "orthograd": False, "grokfast": "none", "loss_dtype": "float64"}


# --- value validation: one place checks every value, before any training ---------------------------

ARCHS = ("mlp", "transformer", "dense_mlp")
#: The ops whose inputs are dense vectors rather than token pairs, and the arch that reads them (both ways:
#: a token model cannot read pixels, a dense-input model has no token embedding).
DENSE_OPS = {"digits": "dense_mlp"}
DECAY_TARGETS = ("zero", "init")
DECAYED = ("all", "matrices")
LOSS_DTYPES = ("float64", "float32")
LOSS_FNS = ("softmax", "stablemax")
GROKFAST_FILTERS = ("none", "ema", "ma")
NEEDS_PRIME = ("div", "mul")  # a / b and the multiplicative group need a field: p prime


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n ** 0.5) + 1))


def _one_of(value, choices, name: str) -> tuple[bool, str]:
    return value in choices, (f"unknown {name} {value!r}{did_you_mean(str(value), choices)}; "
                              f"{name} must be one of {', '.join(choices)}")


def task_problems(t: TaskConfig) -> list[str]:
    checks = [
        _one_of(t.op, OPS, "op"),
        (isinstance(t.p, int) and t.p >= 2, f"p must be an integer >= 2, got {t.p!r}"),
        (t.op not in NEEDS_PRIME or is_prime(t.p), f"op {t.op!r} needs a prime modulus, got p={t.p}"),
        (t.op != "s5" or t.p == S5_ORDER, f"op 's5' composes permutations of 5 letters: p must be their number, "
                                          f"{S5_ORDER}, got p={t.p}"),
        (t.op != "digits" or t.p == DIGITS_CLASSES, f"op 'digits' classifies the digits 0-9: p must be their "
                                                    f"number, {DIGITS_CLASSES}, got p={t.p}"),
        (0.0 < t.train_frac < 1.0, f"train_frac must lie in (0, 1), got {t.train_frac!r}"),
        (0.0 <= t.label_noise <= 1.0, f"label_noise must lie in [0, 1], got {t.label_noise!r}"),
    ]
    return [message for ok, message in checks if not ok]


def model_problems(m: ModelConfig) -> list[str]:
    checks = [_one_of(m.arch, ARCHS, "arch")]
    checks += [(getattr(m, n) >= 1, f"model.{n} must be >= 1, got {getattr(m, n)!r}")
               for n in ("width", "d_model", "n_heads", "d_mlp")]
    checks += [
        (m.alpha > 0, f"model.alpha (init scale) must be > 0, got {m.alpha!r}"),
        (m.arch != "transformer" or m.n_heads < 1 or m.d_model % m.n_heads == 0,
         f"d_model={m.d_model} is not divisible by n_heads={m.n_heads}"),
    ]
    return [message for ok, message in checks if not ok]


def pairing_problems(t: TaskConfig, m: ModelConfig) -> list[str]:
    """A task and a model that cannot work together: op "digits" needs arch "dense_mlp" and the other way round."""
    dense_arch = DENSE_OPS.get(t.op)
    checks = [
        (dense_arch is None or m.arch == dense_arch,
         f"op {t.op!r} has dense inputs (the pixels of an image): arch must be {dense_arch!r}, got arch={m.arch!r}"),
        (m.arch not in DENSE_OPS.values() or dense_arch == m.arch,
         f"arch {m.arch!r} reads dense inputs, not token pairs: op must be "
         f"{' or '.join(repr(o) for o, a in DENSE_OPS.items() if a == m.arch)}, got op={t.op!r}"),
    ]
    return [message for ok, message in checks if not ok]


def optim_budget_problems(o: "OptimConfig", b: "BudgetConfig") -> list[str]:
    checks = [
        (o.lr > 0, f"optim.lr must be > 0, got {o.lr!r}"),
        (o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay!r}"),
        (0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, f"optim betas must lie in [0, 1), got ({o.beta1}, {o.beta2})"),
        (o.eps > 0, f"optim.eps must be > 0, got {o.eps!r}"),
        (o.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {o.warmup_steps!r}"),
        _one_of(o.decay_target, DECAY_TARGETS, "optim.decay_target"),
        _one_of(o.decayed, DECAYED, "optim.decayed"),
        (o.batch_size >= 0, f"optim.batch_size must be >= 0 (0 = full batch), got {o.batch_size!r}"),
        (o.fixed_norm is None or o.fixed_norm > 0, f"optim.fixed_norm must be > 0 or absent, got {o.fixed_norm!r}"),
        _one_of(o.loss_dtype, LOSS_DTYPES, "optim.loss_dtype"),
        _one_of(o.loss_fn, LOSS_FNS, "optim.loss_fn"),
        (isinstance(o.orthograd, bool), f"optim.orthograd must be true or false, got {o.orthograd!r}"),
        _one_of(o.grokfast, GROKFAST_FILTERS, "optim.grokfast"),
        (0 <= o.grokfast_alpha < 1, f"optim.grokfast_alpha must lie in [0, 1), got {o.grokfast_alpha!r}"),
        (o.grokfast_lamb >= 0, f"optim.grokfast_lamb must be >= 0, got {o.grokfast_lamb!r}"),
        (o.grokfast_window >= 1, f"optim.grokfast_window must be >= 1, got {o.grokfast_window!r}"),
        (b.max_steps >= 1, f"budget.max_steps must be >= 1, got {b.max_steps!r}"),
        (b.stop_after_grok is None or b.stop_after_grok >= 0,
         f"budget.stop_after_grok must be >= 0 or absent, got {b.stop_after_grok!r}"),
        (b.log_points >= 0 and b.log_every >= 0 and b.checkpoints >= 0,
         "budget.log_points, log_every and checkpoints must be >= 0"),
    ]
    return [message for ok, message in checks if not ok]


def validate(config: "RunConfig") -> None:
    """Raise ConfigError naming the first bad value of ``config`` (task, model, their pairing, optimiser, budget)."""
    problems = (task_problems(config.task) + model_problems(config.model)
                + pairing_problems(config.task, config.model) + optim_budget_problems(config.optim, config.budget))
    if problems:
        raise ConfigError(problems[0])


SECTIONS = {"task": TaskConfig, "model": ModelConfig, "optim": OptimConfig, "budget": BudgetConfig}
FIELD_NAMES = {f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)} | {"seed"}


# Fields added after run ids were first published, with the value every older run had. At that value
# they are left out of the canonical JSON, so a config written before they existed keeps its run id and
# a store trained then is reused, not retrained. Any other value enters the hash like every field.
LATER_FIELDS = {("task", "label_noise"): 0.0, ("task", "noise_seed"): 0,
                ("optim", "loss_fn"): "softmax", ("optim", "orthograd"): False, ("optim", "grokfast"): "none",
                ("optim", "grokfast_alpha"): 0.98, ("optim", "grokfast_lamb"): 2.0, ("optim", "grokfast_window"): 100}


def canonical_json(config: RunConfig) -> str:
    data = config.to_dict()
    for (section, name), old in LATER_FIELDS.items():
        if data[section][name] == old:
            del data[section][name]
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def run_id(config: RunConfig) -> str:
    """Content hash of the canonical config: the run's identity in the store."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from ``to_dict()`` output (store round-trip)."""
    sections = {}
    for name, cls in SECTIONS.items():
        sections[name] = section_from_dict(cls, data.get(name, {}), where=name)
    return RunConfig(**sections, seed=int(data.get("seed", 0)))


def section_from_dict(cls, values: dict[str, Any], where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in [{where}]{did_you_mean(key, known)}")
    return cls(**values)


# --- building configs from flat, user-written values (study files) -----------------------------

def _field_types() -> dict[str, tuple[str, Any]]:
    """field name -> (section, declared type as written in the dataclass)."""
    out = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            out[f.name] = (section, f.type)
    out["seed"] = (None, "int")
    return out


FIELD_TYPES = _field_types()


def coerce(name: str, value: Any) -> Any:
    """Cast a user value to the field's declared type, so 1 and 1.0 hash the same."""
    _, typ = FIELD_TYPES[name]
    optional = typ.startswith("Optional[")
    base = typ[len("Optional["):-1] if optional else typ
    if value is None or (optional and value == "none"):
        if optional:
            return None
        raise ConfigError(f"{name} cannot be empty")
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if base == "int":
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if base == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    raise AssertionError(typ)  # pragma: no cover


def check_field_name(name: str, where: str) -> None:
    if name not in FIELD_TYPES:
        raise ConfigError(f"unknown key {name!r} in {where}{did_you_mean(name, FIELD_TYPES)}")


def make_run_config(flat: dict[str, Any], where: str = "run config") -> RunConfig:
    """Build a RunConfig from flat field values (unset fields keep their defaults)."""
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    seed = 0
    for name, value in flat.items():
        check_field_name(name, where)
        section, _ = FIELD_TYPES[name]
        value = coerce(name, value)
        if section is None:
            seed = value
        else:
            sections[section][name] = value
    return RunConfig(**{name: SECTIONS[name](**vals) for name, vals in sections.items()}, seed=seed)
