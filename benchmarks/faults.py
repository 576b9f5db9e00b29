"""The fault-injection suite as a table: every scenario of grokking_theories.testing.faults, in a temp folder.

    python benchmarks/faults.py [--only sigkill_study,nan_member] [--keep DIR]

Each scenario breaks a tiny study or store on purpose (SIGKILL at chosen moments, failing writes, damaged
files, a full disk, a raising config, a second driver, several executors) and checks that no finished run
is lost (docs/faults.md says what each guarantees). Prints a Markdown table (scenario | tried | lost |
outcome | ok), the notes of the scenarios that have them (one line per step, e.g. per kill), the seconds
each scenario took and the total wall time. A broken guarantee is a row marked **NO** (the others still
run) and the exit status is 1. One torch thread, as every training process uses.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/faults.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=None, help="comma-separated scenario names (default: all)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="run in this folder and keep what the scenarios wrote (default: a temp folder, removed)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from grokking_theories.testing.faults import FAULT_SCENARIOS, markdown_table, run_scenario, scenario_name

    scenarios = list(FAULT_SCENARIOS)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        known = {scenario_name(s): s for s in scenarios}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            print(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
            return 2
        scenarios = [known[name] for name in wanted]
    start = time.perf_counter()
    outcomes, seconds = [], []
    with tempfile.TemporaryDirectory(prefix="gt-faults-") as tmp:
        base = args.keep if args.keep is not None else Path(tmp)
        for scenario in scenarios:
            print(f"running {scenario_name(scenario)} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            outcomes.append(run_scenario(scenario, base / scenario_name(scenario)))
            seconds.append(time.perf_counter() - t0)
    total = time.perf_counter() - start

    print(markdown_table(outcomes))
    notes = [(o.scenario, line) for o in outcomes for line in o.details]
    if notes:
        print("\nNotes:\n")
        for name, line in notes:
            print(f"- {name}: {line}")
    print("\nSeconds per scenario: " + ", ".join(f"{o.scenario} {s:.1f}" for o, s in zip(outcomes, seconds)))
    broken = [o.scenario for o in outcomes if not o.ok]
    print(f"Total wall time: {total:.1f} s ({len(outcomes)} scenarios, {len(broken)} broken"
          + (f": {', '.join(broken)}" if broken else "") + ")")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
