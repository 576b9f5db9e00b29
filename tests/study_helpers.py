"""Module-level functions for executor tests (spawned workers import them by name)."""
import os
from pathlib import Path


def die_once_then_train(group, device, reporter=None):
    """Kill the worker process the first time a marker file is absent, then train normally."""
    marker = Path(os.environ["GT_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    from grokking_theories.execution.local import _train_group
    return _train_group(group, device, reporter)
