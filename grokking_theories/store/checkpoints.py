"""Checkpoint files of a run store: ``<root>/checkpoints/<run_id>.pt``.

A checkpoint is ``{"steps": LongTensor (n,), "params": {name: FloatTensor (n, ...)}}``:
the kept steps of one run, stacked like the members of an ensemble. Files are
written atomically (temp file, fsync, rename, fsync of the directory) and read
back only after their sha256 matches the one the index recorded, so a crash
or a damaged file is reported (:class:`~grokking_theories.errors.CorruptCheckpointError`,
naming the file) instead of returning parameters of another attempt.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from ..errors import CorruptCheckpointError


def read_verified(path: Path, run_id: str, expected_sha256: str) -> dict:
    """Load the checkpoint at ``path`` after checking its sha256 against ``expected_sha256``.

    Raises
    ------
    CorruptCheckpointError
        The file is missing, truncated, unreadable, malformed, or its sha256
        differs from the recorded one. The message names the file.
    """
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CorruptCheckpointError(f"checkpoint file {path} of run {run_id} is missing") from None
    except OSError as exc:
        raise CorruptCheckpointError(f"checkpoint file {path} of run {run_id} cannot be read: {exc}") from exc
    actual = hashlib.sha256(blob).hexdigest()
    if actual != expected_sha256:
        # Never parse bytes known to be wrong; just say what kind of wrong.
        if not zipfile.is_zipfile(io.BytesIO(blob)):
            what = "is truncated or not a torch file (no zip end record)"
        else:
            what = "was modified or replaced after it was recorded"
        raise CorruptCheckpointError(
            f"checkpoint file {path} of run {run_id} {what}: {len(blob)} bytes, "
            f"sha256 {actual} but the store recorded {expected_sha256}"
        )
    import torch  # lazily: index-only users (reports, status) need not import torch

    try:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CorruptCheckpointError(
            f"checkpoint file {path} of run {run_id} is unreadable: {type(exc).__name__}: {exc}"
        ) from exc
    problem = checkpoint_problem(obj)
    if problem:
        raise CorruptCheckpointError(f"checkpoint file {path} of run {run_id} is malformed: {problem}")
    return obj


def checkpoint_problem(obj) -> Optional[str]:
    """Why ``obj`` is not a valid checkpoint dict, or None."""
    import torch

    if not isinstance(obj, dict) or set(obj) != {"steps", "params"}:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        return f"expected a dict with keys 'steps' and 'params', got {keys}"
    steps, params = obj["steps"], obj["params"]
    if not isinstance(steps, torch.Tensor) or steps.ndim != 1 or steps.dtype != torch.int64:
        return "'steps' must be a 1-d int64 tensor"
    if not isinstance(params, dict):
        return "'params' must be a dict of tensors"
    n = steps.shape[0]
    for name, tensor in params.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            return f"params entry {name!r} is not a named tensor"
        if not tensor.is_floating_point():
            return f"params[{name!r}] has dtype {tensor.dtype}, expected floating point"
        if tensor.ndim < 1 or tensor.shape[0] != n:
            return f"params[{name!r}] has shape {tuple(tensor.shape)}, expected leading dim {n} (one per step)"
    return None


def serialise_checkpoint(checkpoint, rid: str) -> bytes:
    import torch

    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("steps"), torch.Tensor):
        raise ValueError(f"run {rid}: checkpoint must be {{'steps': LongTensor, 'params': {{name: tensor}}}}")
    steps = checkpoint["steps"]
    if steps.dtype.is_floating_point or steps.dtype.is_complex or steps.dtype == torch.bool:
        raise ValueError(f"run {rid}: checkpoint 'steps' must be an integer tensor, got {steps.dtype}")
    params = checkpoint.get("params")
    if not isinstance(params, dict):
        raise ValueError(f"run {rid}: checkpoint 'params' must be a dict of tensors")
    # detach/cpu/contiguous/clone: a slice of an ensemble tensor would otherwise drag the
    # whole shared storage (every member) into this run's file.
    clean = {
        "steps": steps.detach().to("cpu", torch.int64).contiguous().clone(),
        "params": {
            name: (t.detach().cpu().contiguous().clone() if isinstance(t, torch.Tensor) else t)
            for name, t in params.items()
        },
    }
    extra = set(checkpoint) - {"steps", "params"}
    if extra:
        raise ValueError(f"run {rid}: unexpected checkpoint keys {sorted(extra)}")
    problem = checkpoint_problem(clean)
    if problem:
        raise ValueError(f"run {rid}: bad checkpoint: {problem}")
    buf = io.BytesIO()
    torch.save(clean, buf)
    return buf.getvalue()


def atomic_write(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` so that readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # fsync the directory so the rename itself survives a crash.
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
