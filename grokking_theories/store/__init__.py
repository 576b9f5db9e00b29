"""The run store: one SQLite index of runs and metrics plus checkpoint files.

See :class:`RunStore`.
"""
from .sqlite_store import SCHEMA_VERSION, RunStore

__all__ = ["RunStore", "SCHEMA_VERSION"]
