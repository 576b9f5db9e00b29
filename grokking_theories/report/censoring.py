"""Censoring up front: how many runs never generalised within their budget, and what budget would resolve them.

A run is *censored* when it finished (status ``complete``) without its test
accuracy ever reaching :data:`~grokking_theories.levels.GROK_ACC`: its
``t_grok`` is only known to lie beyond the budget. The report opens with a
box that counts them per arm, and the study command prints the same lines
before the report's path, because a censored run can leave a verdict
inconclusive (the verdict's notes say so) and the cure is a longer budget.

The budget that would resolve a censored run is estimated from its own
trajectory (:func:`extrapolate_budget`, the method is :data:`METHOD`): the
test accuracy of its last half-decade of logged steps, rescaled between its
chance level and 1, is fitted as a straight line of logit(accuracy) against
log10(step) (a logistic in log-time whose upper asymptote is 1) and
extrapolated to the grokking threshold. A run whose accuracy is not rising
at the end of its budget, or whose trend would need more than
:data:`MAX_FACTOR` times the budget, gets no estimate: the report says
"cannot be estimated" rather than extrapolate over decades.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..levels import GROK_ACC, pct

#: Width, in decades of steps, of the end of a run whose test accuracy trend is extrapolated.
WINDOW_DECADES = 0.5
#: Estimates beyond this multiple of the budget are not given (a decade is as far as the fit is trusted).
MAX_FACTOR = 10.0
#: Rescaled accuracy (0 = chance, 1 = perfect) a point must exceed to enter the fit (plateau points at chance
#: carry no information about the trend's slope).
MIN_PROGRESS = 0.02
#: The least number of points in the fit, and the least t statistic of its slope when there are more than this.
MIN_POINTS = 3
MIN_SLOPE_T = 2.0

METHOD = (f"each censored run's test accuracy over its last {WINDOW_DECADES:g} decade of logged steps, rescaled "
          f"between its chance level and 1, is fitted as a straight line of logit(accuracy) against log10(step) "
          f"(a logistic in log-time with upper asymptote 1) and extrapolated to {pct(GROK_ACC)}; an arm's "
          f"estimate is the largest over its censored runs, rounded up to two significant figures. A run whose "
          f"accuracy is not rising at the end of its budget, or whose trend would need more than "
          f"{MAX_FACTOR:g}x the budget, cannot be estimated.")


@dataclass(frozen=True)
class RunEstimate:
    """One censored run: its budget, where its test accuracy ended, and the budget that would resolve it."""

    run_id: str
    budget: float
    final_test_acc: float
    estimate: Optional[float]
    reason: str = ""

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "budget": self.budget, "final_test_acc": self.final_test_acc,
                "estimate": self.estimate, "reason": self.reason}


@dataclass(frozen=True)
class ArmCensoring:
    """Censoring in one arm of a study."""

    arm: str
    n_runs: int
    n_finished: int
    n_censored: int
    budgets: tuple
    runs: tuple = ()  # RunEstimate of each censored run

    @property
    def estimated_budget(self) -> Optional[int]:
        """Largest per-run estimate (rounded up to 2 significant figures), None when no run has one."""
        found = [r.estimate for r in self.runs if r.estimate is not None]
        return _round_up(max(found)) if found else None

    @property
    def n_estimated(self) -> int:
        return sum(r.estimate is not None for r in self.runs)

    def text(self) -> str:
        """One line: 'arm A: 2 of 6 finished runs censored (budget 3,000 steps); ...'."""
        head = f"arm {self.arm}: {self.n_censored} of {self.n_finished} finished runs censored " \
               f"(budget {_budget_text(self.budgets)})"
        if self.n_finished < self.n_runs:
            head += f"; {self.n_runs - self.n_finished} run(s) not finished"
        if not self.n_censored:
            return head
        est = self.estimated_budget
        if est is None:
            reasons = sorted({r.reason for r in self.runs if r.reason})
            return f"{head}; a budget that would resolve them cannot be estimated ({'; '.join(reasons)})"
        factor = est / max(self.budgets)
        if self.n_estimated == self.n_censored:
            return f"{head}; a budget of about {est:,} steps ({factor:.1f}x) would resolve them"
        missing = self.n_censored - self.n_estimated
        reasons = sorted({r.reason for r in self.runs if r.estimate is None and r.reason})
        return (f"{head}; about {est:,} steps ({factor:.1f}x) would resolve {self.n_estimated} of them, "
                f"for the other {missing} it cannot be estimated ({'; '.join(reasons)})")

    def to_dict(self) -> dict:
        return {"arm": self.arm, "n_runs": self.n_runs, "n_finished": self.n_finished,
                "n_censored": self.n_censored, "budget": list(self.budgets),
                "estimated_budget": self.estimated_budget, "n_estimated": self.n_estimated,
                "text": self.text(), "runs": [r.to_dict() for r in self.runs]}


@dataclass(frozen=True)
class CensoringSummary:
    """Censoring over a study's arms (each run counted once in the totals)."""

    arms: tuple = ()
    n_finished: int = 0
    n_censored: int = 0
    threshold: float = GROK_ACC
    method: str = METHOD
    run_ids: tuple = field(default=())  # the censored runs, sorted

    @property
    def any(self) -> bool:
        return self.n_censored > 0

    def headline(self) -> str:
        return (f"{self.n_censored} of {self.n_finished} finished runs are censored at their budget "
                f"(test accuracy never reached {pct(self.threshold)})")

    def lines(self) -> list[str]:
        """The text the study command prints (empty when no run is censored)."""
        if not self.any:
            return []
        return [f"censoring: {self.headline()}", *(f"  {a.text()}" for a in self.arms),
                f"  budget estimate: {self.method}"]

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "n_finished": self.n_finished, "n_censored": self.n_censored,
                "censored_runs": list(self.run_ids), "method": self.method,
                "text": self.headline(), "arms": [a.to_dict() for a in self.arms]}


# ---------------------------------------------------------------------- estimation


def _round_up(x: float) -> int:
    """Round up to two significant figures: 5,351 -> 5,400."""
    if x <= 0:
        return 0
    scale = 10 ** max(int(math.floor(math.log10(x))) - 1, 0)
    return int(math.ceil(x / scale) * scale)


def _budget_text(budgets: Sequence[float]) -> str:
    if not budgets:
        return "unknown"
    lo, hi = min(budgets), max(budgets)
    return f"{int(lo):,} steps" if lo == hi else f"{int(lo):,}-{int(hi):,} steps"


def extrapolate_budget(steps, acc, *, budget: float, chance: float = 0.0, target: float = GROK_ACC
                       ) -> tuple[Optional[float], str]:
    """Steps at which a censored run's test accuracy trend reaches ``target``, or (None, why not).

    Parameters
    ----------
    steps, acc : array_like
        The run's logged steps and test accuracies.
    budget : float
        The run's step budget; an estimate below it is raised to it, one
        above :data:`MAX_FACTOR` times it is refused.
    chance : float
        Accuracy of a guess (``1/p``): the lower asymptote of the logistic.
    target : float
        The threshold to reach (:data:`~grokking_theories.levels.GROK_ACC`).
    """
    s = np.asarray(steps, dtype=float)
    a = np.asarray(acc, dtype=float)
    keep = np.isfinite(s) & np.isfinite(a) & (s > 0)
    s, a = s[keep], a[keep]
    if s.size < MIN_POINTS:
        return None, "too few logged test accuracies"
    x = np.log10(s)
    chance = float(min(max(chance, 0.0), target - 1e-6))
    u = (a - chance) / (1.0 - chance)
    use = (x >= x.max() - WINDOW_DECADES) & (u > MIN_PROGRESS) & (u < 1.0)
    if use.sum() < MIN_POINTS:
        return None, "test accuracy not above chance at the end of the run"
    xs, z = x[use], np.log(u[use] / (1.0 - u[use]))
    if np.ptp(xs) == 0:
        return None, "test accuracy not above chance at the end of the run"
    xm = xs.mean()
    sxx = float(np.sum((xs - xm) ** 2))
    slope = float(np.sum((xs - xm) * (z - z.mean())) / sxx)
    intercept = float(z.mean() - slope * xm)
    if xs.size > MIN_POINTS:
        resid = z - (intercept + slope * xs)
        se = math.sqrt(float(np.sum(resid ** 2)) / (xs.size - 2) / sxx)
        rising = slope > 0 and (se == 0 or slope / se >= MIN_SLOPE_T)
    else:
        rising = slope > 0
    if not rising:
        return None, "test accuracy not rising at the end of the run"
    ut = (target - chance) / (1.0 - chance)
    log_t = (math.log(ut / (1.0 - ut)) - intercept) / slope
    if log_t > math.log10(MAX_FACTOR * budget):
        return None, f"the trend would need more than {MAX_FACTOR:g}x the budget"
    return max(10 ** log_t, float(budget)), ""


def censoring_summary(study, table, finished: Sequence[str]) -> CensoringSummary:
    """Censoring per arm of ``study`` from the tidy ``table`` of its finished runs."""
    finished = set(finished)
    per_run: dict[str, Optional[RunEstimate]] = {}  # run id -> estimate if censored, None if not
    acc = table[table["metric"] == "test_acc"] if not table.empty else table
    groups = {str(rid): g for rid, g in acc.groupby("run_id", sort=True)} if not acc.empty else {}
    for cfg in study.configs:
        rid = cfg.run_id
        if rid not in finished or rid not in groups:
            continue
        g = groups[rid].sort_values("step")
        status = str(g["status"].iloc[0]) if "status" in g.columns else "complete"
        values = g["value"].to_numpy(dtype=float)
        if status != "complete" or (np.isfinite(values) & (values >= GROK_ACC)).any():
            per_run[rid] = None
            continue
        budget = float(cfg.budget.max_steps)
        est, why = extrapolate_budget(g["step"].to_numpy(dtype=float), values, budget=budget,
                                      chance=_chance(cfg, values))
        final = values[np.isfinite(values)]
        per_run[rid] = RunEstimate(rid, budget, float(final[-1]) if final.size else float("nan"), est, why)
    arms = []
    for arm in study.arms:
        ids = list(dict.fromkeys(c.run_id for c in arm.configs))
        done = [r for r in ids if r in per_run]
        cens = tuple(per_run[r] for r in done if per_run[r] is not None)
        budgets = tuple(sorted({float(c.budget.max_steps) for c in arm.configs}))
        arms.append(ArmCensoring(arm.name, len(ids), len(done), len(cens), budgets, cens))
    censored = tuple(sorted(r for r, e in per_run.items() if e is not None))
    return CensoringSummary(tuple(arms), len(per_run), len(censored), run_ids=censored)


def _chance(cfg, values: np.ndarray) -> float:
    """The run's chance level: 1/p, or its early test accuracy when that sits lower (never above 1/p)."""
    chance = 1.0 / cfg.task.p
    early = values[np.isfinite(values)][:5]
    return float(min(chance, np.median(early))) if early.size else chance


__all__ = ["ArmCensoring", "CensoringSummary", "METHOD", "RunEstimate", "censoring_summary", "extrapolate_budget"]
