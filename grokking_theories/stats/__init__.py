"""Statistics layer: from the tidy metric table to verdicts on theory predictions.

Every analysis reads one tidy long-form table (``run_id``, ``status``, flat
config columns, ``step``, ``metric``, ``value``). The layers are:

* :mod:`.transitions` -- threshold-crossing times (right-censored at the last
  logged step) and logistic fits in log-time;
* :mod:`.regression` -- log-log power-law slopes;
* :mod:`.survival` -- Kaplan-Meier, log-rank, Cox (censoring-aware), interval-censored
  log-normal regression, exact permutation log-rank;
* :mod:`.resampling` -- bootstrap intervals over seeds;
* :mod:`.hypothesis_tests` -- equivalence (TOST), interior peaks, lead/lag,
  Holm correction;
* :mod:`.prediction` -- :class:`Prediction` / :class:`Verdict`.
"""
from ._common import InsufficientDataError
from .hypothesis_tests import LeadLagResult, PeakResult, TostResult, holm, lead_lag, peak_prominence_test, tost
from .prediction import (
    ROLES,
    VERDICTS,
    Calibration,
    Design,
    Outcome,
    Prediction,
    TableFacts,
    Verdict,
    VerdictTable,
    adjust_verdicts,
    decide_sign,
    directional_outcome,
    equivalence_from_statistics,
    equivalence_outcome,
    slope_outcome,
)
from .regression import SlopeResult, loglog_slope
from .resampling import BootstrapCI, bootstrap_ci
from .survival import (
    PERMUTATIONS,
    CensoredFit,
    CensoredMedian,
    CensoredSlopeResult,
    censored_fit,
    censored_loglog_slope,
    CoxResult,
    KaplanMeier,
    LogrankResult,
    PermutationLogrank,
    ProfileSlope,
    censored_median,
    cox_slope,
    kaplan_meier,
    logrank,
    logrank_scores,
    permutation_logrank,
    profile_slope,
)
from .transitions import (
    Crossing,
    SigmoidFit,
    first_crossing,
    fit_sigmoid_logtime,
    grokking_times,
    run_configs,
    transition_times,
)

__all__ = [
    "InsufficientDataError",
    "CensoredSlopeResult",
    "censored_loglog_slope",
    # transitions
    "Crossing",
    "first_crossing",
    "run_configs",
    "transition_times",
    "grokking_times",
    "SigmoidFit",
    "fit_sigmoid_logtime",
    # regression
    "SlopeResult",
    "loglog_slope",
    # survival
    "KaplanMeier",
    "kaplan_meier",
    "CensoredMedian",
    "censored_median",
    "LogrankResult",
    "logrank",
    "CoxResult",
    "cox_slope",
    "CensoredFit",
    "censored_fit",
    "ProfileSlope",
    "profile_slope",
    "PERMUTATIONS",
    "logrank_scores",
    "PermutationLogrank",
    "permutation_logrank",
    # resampling
    "BootstrapCI",
    "bootstrap_ci",
    # hypothesis tests
    "TostResult",
    "tost",
    "PeakResult",
    "peak_prominence_test",
    "LeadLagResult",
    "lead_lag",
    "holm",
    # predictions
    "ROLES",
    "VERDICTS",
    "Calibration",
    "Design",
    "Outcome",
    "Verdict",
    "Prediction",
    "TableFacts",
    "VerdictTable",
    "adjust_verdicts",
    "decide_sign",
    "directional_outcome",
    "equivalence_from_statistics",
    "equivalence_outcome",
    "slope_outcome",
]
