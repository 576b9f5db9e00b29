"""``check_family``: the conformance suite every experiment family must pass.

Like scikit-learn's ``check_estimator``: a new family plugs in safely once
this passes. The suite is a tuple of named checks (:data:`FAMILY_CHECKS`),
each a module-level function ``check_x(family, scales=("quick",))`` that
raises :class:`FamilyCheckError` naming the rule it enforces;
:func:`check_family` runs them all in order and :func:`family_checks` yields
them one by one, so that a test suite can parametrize over (family x check)
and a failure names the broken rule in the test id.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterator

from ..stats import VERDICTS, Prediction, Verdict
from .base import FAMILIES, Family

__all__ = ["FAMILY_CHECKS", "FamilyCheckError", "check_documented", "check_empty_table_inconclusive",
           "check_family", "check_is_family", "check_metrics_known", "check_prediction_ids",
           "check_probes_registered", "check_runs_on_synthetic", "check_sweep_loads", "family_checks",
           "known_metrics", "logged_metrics"]


class FamilyCheckError(AssertionError):
    """A family breaks the interface; the message says which rule and where."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise FamilyCheckError(message)


@functools.lru_cache(maxsize=None)
def _logged(arch: str) -> frozenset:
    from ..config import make_run_config
    from ..training import EnsembleTrainer

    cfg = make_run_config(dict(op="add", p=5, arch=arch, width=4, d_model=8, n_heads=2, d_mlp=8, max_steps=1))
    return frozenset(EnsembleTrainer([cfg]).evaluate())


def logged_metrics(arch: str = "mlp") -> set[str]:
    """Every metric name the trainer logs for an architecture (from a zero-step evaluation; cached)."""
    return set(_logged(arch))


def known_metrics() -> set[str]:
    """Every metric the trainer logs, for the MLP or the transformer."""
    return logged_metrics("mlp") | logged_metrics("transformer")


def _declared_probes(family: Family) -> list:
    """The family's declared probes, resolved (FamilyCheckError for an unknown name)."""
    from ..errors import ConfigError
    from ..probes.stage import get_probe

    out = []
    for name in family.probes:
        try:
            out.append(get_probe(name))
        except ConfigError as exc:
            raise FamilyCheckError(f"family {family.name!r} declares probe {name!r}, which is not registered: {exc}")
    return out


def _load_sweep(family: Family, scale: str):
    try:
        study = family.sweep(scale)
    except Exception as exc:  # the message must say which family's sweep is broken
        raise FamilyCheckError(f"family {family.name!r}: sweep {family.study!r} [{scale}] is invalid: {exc}")
    _require(len(study.configs) > 0, f"family {family.name!r}: sweep {family.study!r} [{scale}] has no runs")
    return study


def _plantable(family: Family) -> list:
    """Declared probes with a plant; FamilyCheckError if a prediction reads a probe that cannot be planted."""
    probes = _declared_probes(family)
    for probe in probes:
        if probe.plant is not None:
            continue
        readers = sorted({p.id for p in family.predictions for m in p.metrics_needed if probe.produces(m)})
        _require(not readers, f"prediction(s) {readers} of {family.name!r} read probe {probe.name!r}, which has no "
                              "plant: the synthetic tables cannot carry its metrics, so the predictions cannot be "
                              "run before training; give the Probe a plant")
    return [p for p in probes if p.plant is not None]


# ---------------------------------------------------------------------- the checks


def check_is_family(family, scales=("quick",)) -> None:
    """The object is a :class:`Family` whose name is a Python identifier."""
    _require(isinstance(family, Family), f"{family!r} is not a Family")
    _require(bool(family.name) and family.name.isidentifier(), f"family name {family.name!r} is not an identifier")


def check_documented(family: Family, scales=("quick",)) -> None:
    """Title, explanation, references and predictions present; every prediction a Prediction with a
    statement, a decision rule and a callable test."""
    for attr in ("title", "explanation"):
        _require(len(getattr(family, attr).strip()) >= 10, f"family {family.name!r} has no {attr}")
    _require(len(family.references) > 0, f"family {family.name!r} cites no references")
    _require(len(family.predictions) > 0, f"family {family.name!r} has no predictions")
    for pred in family.predictions:
        _require(isinstance(pred, Prediction), f"{family.name}: {pred!r} is not a Prediction")
        _require(len(pred.statement.strip()) >= 10, f"prediction {pred.id} has no statement")
        _require(len(pred.rule.strip()) >= 10, f"prediction {pred.id} has no decision rule")
        _require(callable(pred.test), f"prediction {pred.id} has no test function")


def check_prediction_ids(family: Family, scales=("quick",)) -> None:
    """Prediction ids unique within the family and across registered families; each names this family."""
    ids = [p.id for p in family.predictions]
    _require(len(ids) == len(set(ids)), f"family {family.name!r} repeats prediction ids: {ids}")
    for other in FAMILIES.values():
        if other.name != family.name:  # a modified copy of a registered family is checked as that family
            clash = set(ids) & {p.id for p in other.predictions}
            _require(not clash, f"prediction ids {sorted(clash)} of {family.name!r} are also in {other.name!r}")
    for pred in family.predictions:
        _require(pred.family == family.name, f"prediction {pred.id} says family {pred.family!r}, not {family.name!r}")


def check_probes_registered(family: Family, scales=("quick",)) -> None:
    """``Family.probes`` is a tuple of names of registered probes, each listed once."""
    _require(isinstance(family.probes, tuple), f"family {family.name!r}: probes must be a tuple of probe names, "
                                               f"got {type(family.probes).__name__}")
    _require(all(isinstance(n, str) for n in family.probes),
             f"family {family.name!r}: probes must be probe names (str), got {family.probes!r}")
    _require(len(set(family.probes)) == len(family.probes), f"family {family.name!r} repeats probes: {family.probes}")
    _declared_probes(family)


def check_metrics_known(family: Family, scales=("quick",)) -> None:
    """Every metric a prediction needs is logged by the trainer or written by a probe the family declares."""
    from ..probes.stage import all_probes

    logged = known_metrics()
    declared = _declared_probes(family)
    undeclared = [p for p in all_probes() if p.name not in {d.name for d in declared}]
    for pred in family.predictions:
        unknown = [m for m in pred.metrics_needed if m not in logged and not any(p.produces(m) for p in declared)]
        for probe in undeclared:
            theirs = [m for m in unknown if probe.produces(m)]
            _require(not theirs, f"prediction {pred.id} needs metric(s) {theirs} of probe {probe.name!r}, which "
                                 f"family {family.name!r} does not declare; add {probe.name!r} to Family.probes")
        _require(not unknown, f"prediction {pred.id} needs metrics neither the trainer logs nor a declared probe "
                              f"writes: {sorted(unknown)}")


def check_sweep_loads(family: Family, scales=("quick",)) -> None:
    """The family's study loads and validates at every scale, with at least one run."""
    for scale in scales:
        _load_sweep(family, scale)


def check_runs_on_synthetic(family: Family, scales=("quick",)) -> None:
    """Every prediction runs on a synthetic table of the sweep's runs (the declared probes' metrics planted)
    and returns a Verdict with a legal verdict. A prediction that raises anything but
    InsufficientDataError is a bug: the exception propagates."""
    from .synthetic import synthetic_table

    probes = _plantable(family)
    for scale in scales:
        study = _load_sweep(family, scale)
        table = synthetic_table(study.configs, seed=0, probes=probes)
        for pred in family.predictions:
            verdict = pred.evaluate(table, run_set=f"synthetic-{scale}")
            _require(isinstance(verdict, Verdict), f"prediction {pred.id} returned {type(verdict).__name__}")
            _require(verdict.verdict in VERDICTS, f"prediction {pred.id} returned verdict {verdict.verdict!r}")


def check_empty_table_inconclusive(family: Family, scales=("quick",)) -> None:
    """On an empty table (the synthetic table's columns, no rows) every prediction is inconclusive."""
    from .synthetic import synthetic_table

    study = _load_sweep(family, scales[0] if scales else "quick")
    empty = synthetic_table(study.configs[:1], seed=0, probes=_plantable(family)).iloc[:0]
    for pred in family.predictions:
        verdict = pred.evaluate(empty, run_set="empty")
        _require(verdict.verdict == "inconclusive", f"prediction {pred.id} decided on an empty table")


#: The conformance suite, in the order :func:`check_family` runs it (cheap, structural checks first).
FAMILY_CHECKS: tuple[Callable, ...] = (
    check_is_family,
    check_documented,
    check_prediction_ids,
    check_probes_registered,
    check_metrics_known,
    check_sweep_loads,
    check_runs_on_synthetic,
    check_empty_table_inconclusive,
)


def family_checks(family: Family, scales=("quick",)) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` for every check of :data:`FAMILY_CHECKS`, ``check()`` running it on ``family``."""
    for check in FAMILY_CHECKS:
        yield check.__name__, functools.partial(check, family, scales=scales)


def check_family(family: Family, scales=("quick",)) -> None:
    """Raise FamilyCheckError unless ``family`` meets every rule of the interface.

    Runs :data:`FAMILY_CHECKS` in order:

    1. ``check_is_family``: a Family named by an identifier;
    2. ``check_documented``: title, explanation, references, and every prediction's statement,
       rule and test;
    3. ``check_prediction_ids``: ids unique (also across registered families), each prediction's
       family is this family's name;
    4. ``check_probes_registered``: every name in ``Family.probes`` is a registered probe, once;
    5. ``check_metrics_known``: every metric a prediction needs is logged by the trainer or
       written by a declared probe (a metric of an undeclared probe fails, naming the probe);
    6. ``check_sweep_loads``: the sweep loads and validates at every scale in ``scales``;
    7. ``check_runs_on_synthetic``: every prediction runs on a synthetic table of the sweep's runs,
       with the declared probes' metrics planted, and returns a Verdict with a legal verdict;
    8. ``check_empty_table_inconclusive``: on an empty table every prediction is inconclusive.
    """
    for _, check in family_checks(family, scales):
        check()

