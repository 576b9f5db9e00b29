"""The package's own exceptions: every one names the value, key or path at fault."""


class GrokkingError(Exception):
    """Base class for errors raised by grokking_theories."""


class ConfigError(GrokkingError, ValueError):
    """A bad value or unknown key in a run config or a study file."""


class StoreError(GrokkingError):
    """The run store cannot be used as asked."""


class StoreLockedError(StoreError):
    """Another driver holds the store's write lock."""


class CorruptCheckpointError(StoreError):
    """A checkpoint file is truncated or unreadable; its path is in the message."""
