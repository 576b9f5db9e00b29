"""grokking_theories: put the competing explanations of grokking to the test.

Heavy modules (torch, pandas, statsmodels) are imported lazily by the
sub-packages that need them, so ``python -m grokking_theories.study --help``
stays instant.
"""
__version__ = "0.1.0"

from .api import StudyResults, load, run_study  # noqa: E402  (light: heavy imports happen inside them)

__all__ = ["StudyResults", "load", "run_study", "__version__"]
