"""The one-writer lock of a run store: ``<root>/store.lock``, ``flock``'ed by the writing driver.

``flock`` belongs to the open file description, so a second writer in the
same process is refused just like one in another process. The file holds the
holder's pid (for the refusal message) and is never unlinked: unlinking it
would let two drivers lock two different inodes.

A writing :class:`~grokking_theories.store.RunStore` holds one
:class:`WriterLock` from opening to :meth:`~grokking_theories.store.RunStore.close`;
read-only stores take none (SQLite WAL readers need no lock of ours).

A killed driver needs no cleanup: the kernel drops a ``flock`` with the last
descriptor of its holder, so the next driver gets the lock at once; the dead
driver's pid left in the file is overwritten by the next holder's. The pid is
only for messages: failing to write it (a full disk) does not fail the lock.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from ..errors import StoreError, StoreLockedError

_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)

#: Name of the lock file inside a store's root.
LOCK_NAME = "store.lock"


class WriterLock:
    """The held write lock of the store at ``root`` (taken on construction, as :func:`acquire_lock`)."""

    def __init__(self, root: Path):
        self.path = root / LOCK_NAME
        self._fd = acquire_lock(self.path, root)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let the next driver in (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            release_lock(fd)


def acquire_lock(lock_path: Path, root: Path) -> int:
    """Take the write lock of the store at ``root``; return the locked file descriptor.

    Raises
    ------
    StoreLockedError
        Another driver holds it (its pid is in the message when known).
    StoreError
        The lock file cannot be locked for another reason.
    """
    # O_RDWR without O_TRUNC: a refused opener must not wipe the holder's pid.
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:  # a read-only or full file system, or no permission: say which file
        raise StoreError(f"cannot open the lock file {lock_path} of run store {root}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = ""
        if exc.errno in _BUSY:
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if exc.errno not in _BUSY:
            raise StoreError(f"cannot lock run store {root}: {exc}") from exc
        who = f"pid {holder}" if holder else "pid unknown"
        raise StoreLockedError(
            f"run store {root} is in use by another driver ({who}); "
            f"wait for it to finish or use another --out"
        ) from None
    # The pid is for the refusal message of the next opener only: on a full disk the lock holds without it.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def release_lock(fd: int) -> None:
    """Release a lock taken by :func:`acquire_lock` and close its descriptor."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)  # no stale pid for the next reader of the lock file
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
