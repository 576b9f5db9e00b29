"""Family `sharpness`: is the abruptness of grokking an artifact of argmax accuracy?

Schaeffer et al. (2023) showed that "emergent" jumps can come from the metric:
a discontinuous score of smoothly moving outputs jumps. For single-token
answers the only such non-linearity is the argmax. If that is all there is,
test accuracy (the fraction of examples whose correct-logit margin is > 0)
should switch much faster than the continuous quantities underneath it, and a
smooth model of the margin distribution should reproduce the accuracy curve.
"""
from __future__ import annotations

import numpy as np

from ..stats import InsufficientDataError, Outcome, Prediction, bootstrap_ci, fit_sigmoid_logtime
from ._series import run_series, runs
from .base import Family, register

CONTINUOUS = ("test_loss", "test_margin_mean", "test_correct_prob")
GROKKED = 0.9  # a run enters S1/S2 once its test accuracy reaches this (the transition must be in the data)
R2_BAR = 0.9  # S2: "high R^2", fixed in advance
ALPHA = 0.05  # level of the signed-rank test behind S1 (Holm-adjusted across the report)


def _after_fit(group, metric):
    """A curve from the first step with train accuracy >= 0.99 on: the generalisation phase only.

    Before it, loss and margins move for memorisation, which is not the transition in question.
    """
    steps, values = run_series(group, metric)
    tr_steps, tr_acc = run_series(group, "train_acc")
    fitted = tr_steps[tr_acc >= 0.99]
    start = fitted[0] if len(fitted) else 0.0
    keep = steps >= start
    return steps[keep], values[keep]


def _width_ratios(table) -> list[float]:
    out = []
    for _, g in runs(table):
        steps, acc = _after_fit(g, "test_acc")
        if len(acc) < 6 or acc.max() < GROKKED:
            continue
        fits = [fit_sigmoid_logtime(*_after_fit(g, m)) for m in ("test_acc",) + CONTINUOUS]
        if not all(f.success for f in fits):
            continue
        w_acc = fits[0].width_10_90
        w_cont = min(f.width_10_90 for f in fits[1:])
        if w_acc > 0 and w_cont > 0:
            out.append(float(np.log10(w_acc / w_cont)))
    return out


def _test_s1(table) -> Outcome:
    """Median over runs of log10(width of accuracy / width of the sharpest continuous metric)."""
    from scipy.stats import wilcoxon

    ratios = _width_ratios(table)
    if len(ratios) < 3:
        raise InsufficientDataError(f"{len(ratios)} runs with a fitted transition; S1 needs 3")
    ci = bootstrap_ci(ratios, np.median, seed=0)
    p = float(wilcoxon(ratios).pvalue) if np.any(np.asarray(ratios) != 0) else 1.0  # two-sided, exact for small n
    med = float(np.median(ratios))
    if p < ALPHA and ci.ci_high < 0:
        verdict = "supported"
    elif p < ALPHA and ci.ci_low > 0:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return Outcome(verdict, "median log10 width ratio", med, 10 ** med,
                   "width(test acc) / width(sharpest continuous metric)", 10 ** ci.ci_low, 10 ** ci.ci_high,
                   ci.confidence, p, "supported" if med < 0 else "contradicted", len(ratios))


def _margin_r2(group) -> float | None:
    """R^2 of accuracy predicted as P(margin > 0) under a normal fitted to the logged margin quantiles."""
    from scipy.stats import norm

    steps, acc = run_series(group, "test_acc")
    _, mu = run_series(group, "test_margin_q50")
    _, q25 = run_series(group, "test_margin_q25")
    _, q75 = run_series(group, "test_margin_q75")
    if len(acc) < 6 or not (len(acc) == len(mu) == len(q25) == len(q75)) or acc.max() < GROKKED:
        return None
    sigma = np.maximum((q75 - q25) / (2 * norm.ppf(0.75)), 1e-9)
    predicted = norm.cdf(mu / sigma)
    sst = np.sum((acc - acc.mean()) ** 2)
    return float(1 - np.sum((acc - predicted) ** 2) / sst) if sst > 0 else None


def _test_s2(table) -> Outcome:
    r2 = [v for _, g in runs(table) if (v := _margin_r2(g)) is not None]
    if len(r2) < 3:
        raise InsufficientDataError(f"{len(r2)} grokking runs with margin quantiles; S2 needs 3")
    ci = bootstrap_ci(r2, np.median, seed=0)
    med = float(np.median(r2))
    verdict = "supported" if ci.ci_low >= R2_BAR else "contradicted" if ci.ci_high < R2_BAR else "inconclusive"
    return Outcome(verdict, "median R^2 of accuracy from margins", med, med, "R^2 (median over runs)",
                   ci.ci_low, ci.ci_high, ci.confidence, None, None, len(r2))


SHARPNESS = register(Family(
    name="sharpness",
    title="The abruptness is an artifact of argmax accuracy",
    explanation=(
        "Accuracy counts the examples whose correct-logit margin is positive: a step function of the "
        "margins. If the margins, the loss and the correct-class probability move smoothly, accuracy can "
        "still jump, and the 'sudden' generalisation is a property of the metric, not of learning."),
    references=("Schaeffer, Miranda, Koyejo 2023, arXiv 2304.15004",
                "Nanda et al. 2023, arXiv 2301.05217 (progress measures)"),
    study="sharpness",
    predictions=(
        Prediction(
            id="S1", family="sharpness",
            statement=("Test accuracy's transition (10->90 % width of a logistic fit in log-time, after the "
                       "training set is fitted) is narrower than that of test loss, mean margin and mean "
                       "correct-class probability."),
            metrics_needed=("test_acc", "train_acc") + CONTINUOUS,
            rule=("per grokking run r = log10(width acc / width of the sharpest continuous metric). Supported "
                  "if the Wilcoxon signed-rank p < 0.05 (Holm-adjusted) and the 95 % bootstrap CI of median r "
                  "lies below 0; contradicted if p < 0.05 and the CI lies above 0; otherwise inconclusive. "
                  "Needs >= 3 runs whose test accuracy reaches 0.9 (>= 6 for p < 0.05 to be reachable)."),
            test=_test_s1),
        Prediction(
            id="S2", family="sharpness",
            statement=("Test accuracy is predicted from the margin distribution: P(margin > 0) under a normal "
                       "fitted to the logged margin quartiles reproduces the accuracy curve with high R^2."),
            metrics_needed=("test_acc", "test_margin_q25", "test_margin_q50", "test_margin_q75"),
            rule=(f"supported if the 95 % bootstrap CI of the median R^2 over grokking runs lies at or above "
                  f"{R2_BAR}; contradicted if it lies below {R2_BAR}; otherwise inconclusive."),
            test=_test_s2),
    ),
))
