"""Module-level functions for executor tests (spawned workers import them by name)."""
import os
from pathlib import Path


def die_once_then_train(group, device, reporter=None):
    """Kill the worker process the first time a marker file is absent, then train normally."""
    marker = Path(os.environ["GT_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    from grokking_theories.execution import train_group
    return train_group(group, device, reporter)


class _DieOnFirstStep:
    """A step reporter that kills its process at the first training step, if it is the first to claim the marker."""

    def __init__(self, marker: Path, reporter):
        self.marker, self.reporter, self.armed = marker, reporter, True

    def __call__(self, n: int) -> None:
        if self.reporter is not None:
            self.reporter(n)
        if self.armed:
            self.armed = False
            try:  # O_EXCL: of several workers racing here, exactly one dies
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, b"died")
            os.close(fd)
            os._exit(1)

    def flush(self) -> None:
        if self.reporter is not None:
            self.reporter.flush()


def die_mid_run_once_then_train(group, device, reporter=None):
    """Train, but kill the worker process at its first training step, once over all workers (the marker file
    named by GT_TEST_MARKER records it); every other call, and the retry, trains normally."""
    from grokking_theories.execution import train_group
    return train_group(group, device, _DieOnFirstStep(Path(os.environ["GT_TEST_MARKER"]), reporter))
