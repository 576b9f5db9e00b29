"""The fault-injection suite (grokking_theories.testing.faults): one test per scenario, named by it.

A failing test's message is the FaultCheckError of the scenario: the guarantee that broke and what was
found instead. Each scenario writes only under its own tmp_path; together they take about two minutes on
two busy cores, most of it the SIGKILL scenario's seven study processes.
"""
from __future__ import annotations

import pytest

from grokking_theories.testing import FAULT_SCENARIOS, FaultCheckError, FaultOutcome, markdown_table, run_scenario
from grokking_theories.testing.faults import scenario_name


@pytest.mark.parametrize("scenario", FAULT_SCENARIOS, ids=[scenario_name(s) for s in FAULT_SCENARIOS])
def test_fault_scenario(scenario, tmp_path):
    outcome = scenario(tmp_path)
    assert isinstance(outcome, FaultOutcome) and outcome.ok, outcome
    assert outcome.scenario == scenario_name(scenario)
    assert outcome.tried and outcome.lost and outcome.outcome and "\n" not in outcome.tried


def test_a_broken_guarantee_becomes_a_row_marked_no(tmp_path):
    """run_scenario (what benchmarks/faults.py runs) reports a broken guarantee as a row; it does not stop."""

    def fault_planted(workdir):
        """A planted scenario whose guarantee breaks."""
        raise FaultCheckError(f"a planted guarantee holds: it did not in {workdir}")

    outcome = run_scenario(fault_planted, tmp_path / "planted")
    assert not outcome.ok and outcome.scenario == "planted" and "TMPDIR" in outcome.outcome
    table = markdown_table([outcome]).splitlines()
    assert table[0] == "| scenario | tried | lost | outcome | ok |"
    assert table[2].startswith("| planted | A planted scenario whose guarantee breaks. |") and "**NO**" in table[2]
