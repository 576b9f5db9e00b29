"""The run store: one SQLite index of runs, logged metrics and probe rows, plus checkpoint files.

See :class:`RunStore` and :class:`Checkpoint` (what :meth:`RunStore.checkpoint`
returns). One module per concern: :mod:`.sqlite_store` (the store, composing
the three below), :mod:`.index` (the SQLite index and its queries),
:mod:`.checkpoints` (checkpoint files), :mod:`.lock` (the one-writer lock),
:mod:`.schema` (versions and migrations), :mod:`.rows` (tidy row validation
and config columns).
"""
from .checkpoints import Checkpoint
from .schema import SCHEMA_VERSION
from .sqlite_store import RunStore

__all__ = ["Checkpoint", "RunStore", "SCHEMA_VERSION"]
