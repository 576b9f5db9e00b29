"""``check_family``: the conformance suite every experiment family must pass.

Like scikit-learn's ``check_estimator``: a new family plugs in safely once
this passes. The tests run it over every registered family.
"""
from __future__ import annotations

from ..stats import VERDICTS, Prediction, Verdict
from .base import FAMILIES, Family


class FamilyCheckError(AssertionError):
    """A family breaks the interface; the message says which rule and where."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise FamilyCheckError(message)


def logged_metrics(arch: str = "mlp") -> set[str]:
    """Every metric name the trainer logs for an architecture (from a zero-step evaluation)."""
    from ..config import make_run_config
    from ..training import EnsembleTrainer

    cfg = make_run_config(dict(op="add", p=5, arch=arch, width=4, d_model=8, n_heads=2, d_mlp=8, max_steps=1))
    return set(EnsembleTrainer([cfg]).evaluate())


def check_family(family: Family, scales=("quick",)) -> None:
    """Raise FamilyCheckError unless ``family`` meets every rule of the interface.

    1. documented: title, explanation, references, and every prediction's statement and rule;
    2. names: prediction ids unique (also across registered families), each prediction's
       family is this family's name;
    3. its sweep loads and validates at every scale in ``scales``;
    4. every prediction names only metrics the trainer logs, runs on a small synthetic
       table of the sweep's runs, and returns a Verdict with a legal verdict.
    """
    from .synthetic import synthetic_table

    _require(isinstance(family, Family), f"{family!r} is not a Family")
    _require(bool(family.name) and family.name.isidentifier(), f"family name {family.name!r} is not an identifier")
    for attr in ("title", "explanation"):
        _require(len(getattr(family, attr).strip()) >= 10, f"family {family.name!r} has no {attr}")
    _require(len(family.references) > 0, f"family {family.name!r} cites no references")
    _require(len(family.predictions) > 0, f"family {family.name!r} has no predictions")
    ids = [p.id for p in family.predictions]
    _require(len(ids) == len(set(ids)), f"family {family.name!r} repeats prediction ids: {ids}")
    for other in FAMILIES.values():
        if other.name != family.name:  # a modified copy of a registered family is checked as that family
            clash = set(ids) & {p.id for p in other.predictions}
            _require(not clash, f"prediction ids {sorted(clash)} of {family.name!r} are also in {other.name!r}")
    from ..probes.flips import OFFLINE_METRICS

    # what the trainer logs, plus what the offline probes recompute from stored checkpoints
    known = logged_metrics("mlp") | logged_metrics("transformer") | set(OFFLINE_METRICS)
    for pred in family.predictions:
        _require(isinstance(pred, Prediction), f"{family.name}: {pred!r} is not a Prediction")
        _require(pred.family == family.name, f"prediction {pred.id} says family {pred.family!r}, not {family.name!r}")
        _require(len(pred.statement.strip()) >= 10, f"prediction {pred.id} has no statement")
        _require(len(pred.rule.strip()) >= 10, f"prediction {pred.id} has no decision rule")
        _require(callable(pred.test), f"prediction {pred.id} has no test function")
        unknown = set(pred.metrics_needed) - known
        _require(not unknown, f"prediction {pred.id} needs metrics neither the trainer nor an offline probe produces: {sorted(unknown)}")

    for scale in scales:
        try:
            study = family.sweep(scale)
        except Exception as exc:  # the message must say which family's sweep is broken
            raise FamilyCheckError(f"family {family.name!r}: sweep {family.study!r} [{scale}] is invalid: {exc}")
        _require(len(study.configs) > 0, f"family {family.name!r}: sweep {family.study!r} [{scale}] has no runs")
        table = synthetic_table(study.configs, seed=0)
        for pred in family.predictions:
            verdict = pred.evaluate(table, run_set=f"synthetic-{scale}")
            _require(isinstance(verdict, Verdict), f"prediction {pred.id} returned {type(verdict).__name__}")
            _require(verdict.verdict in VERDICTS, f"prediction {pred.id} returned verdict {verdict.verdict!r}")
            empty = pred.evaluate(table.iloc[:0], run_set="empty")
            _require(empty.verdict == "inconclusive", f"prediction {pred.id} decided on an empty table")
