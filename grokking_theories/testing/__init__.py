"""Test harnesses that ship with the package, so that users can run them on their own machines.

:mod:`grokking_theories.testing.faults` breaks studies on purpose (SIGKILL at chosen moments, damaged
files, full disks, failing configs) and checks that no finished run is ever lost; see ``docs/faults.md``.
"""
from .faults import FAULT_SCENARIOS, FaultCheckError, FaultOutcome, markdown_table, run_scenario

__all__ = ["FAULT_SCENARIOS", "FaultCheckError", "FaultOutcome", "markdown_table", "run_scenario"]
