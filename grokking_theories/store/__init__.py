"""The run store: one SQLite index of runs, logged metrics and probe rows, plus checkpoint files.

See :class:`RunStore`. One module per concern: :mod:`.sqlite_store` (the
store), :mod:`.schema` (versions and migrations), :mod:`.checkpoints`
(checkpoint files), :mod:`.lock` (the one-writer lock), :mod:`.rows` (tidy
row validation and config columns).
"""
from .schema import SCHEMA_VERSION
from .sqlite_store import RunStore

__all__ = ["RunStore", "SCHEMA_VERSION"]
