"""grokking_theories: put the competing explanations of grokking to the test.

Heavy modules (torch, pandas, statsmodels) are imported lazily by the
sub-packages that need them, so ``python -m grokking_theories.study --help``
stays instant.
"""
__version__ = "0.1.0"
