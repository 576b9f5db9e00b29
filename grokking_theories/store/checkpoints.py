"""Checkpoint files of a run store: ``<root>/checkpoints/<run_id>.pt``.

A run keeps parameter snapshots at some of its steps, stacked like the members
of an ensemble (one batched forward pass evaluates them all):
:class:`~grokking_theories.store.Checkpoint` holds ``steps`` (LongTensor
``(n,)``) and ``params`` (``{name: FloatTensor (n, ...)}``).
``CheckpointFiles`` owns the folder: one file per run, written atomically
(temp file, fsync, rename, fsync of the directory) and read back only after
its sha256 matches the one the index recorded, so a crash or a damaged file
is reported
(:class:`~grokking_theories.errors.CorruptCheckpointError`, naming the file)
instead of returning parameters of another attempt.

On disk a checkpoint is the plain dict ``{"steps": ..., "params": ...}``
written by ``torch.save``, not a pickled ``Checkpoint``: it is the format
every existing store already has, and ``torch.load(weights_only=True)`` reads
it without trusting any pickled class. ``run_id`` and ``sha256`` are not
stored in the file; the index knows them.

Nothing here imports torch at module level: index-only users (reports,
status) never pay for it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from ..errors import CorruptCheckpointError

if TYPE_CHECKING:
    import torch

__all__ = ["Checkpoint", "CheckpointFiles", "atomic_write", "checkpoint_problem", "read_verified",
           "serialise_checkpoint"]


# eq=False: the generated __eq__ would compare tensors with ==, whose result has no single truth value.
@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Checkpoint:
    """The parameter snapshots one run kept, one per kept step.

    Parameters
    ----------
    steps : torch.Tensor
        LongTensor ``(n,)``: the kept steps, in the order of the snapshots.
    params : dict of str to torch.Tensor
        ``{name: FloatTensor (n, ...)}``: snapshot ``i`` of parameter
        ``name`` is ``params[name][i]``.
    run_id : str, optional
        The run the snapshots belong to (set when read from a store).
    sha256 : str, optional
        The sha256 of the file they were read from, verified against the
        index (set when read from a store).

    Raises
    ------
    ValueError
        ``steps`` is not a 1-d int64 tensor, or a parameter is not a floating
        point tensor with one leading entry per step.

    Notes
    -----
    ``len(checkpoint)`` is the number of snapshots and :meth:`at` gives one of
    them. ``checkpoint["steps"]`` and ``checkpoint["params"]`` are
    ``checkpoint.steps`` and ``checkpoint.params``, as for the dict that
    :meth:`RunStore.load_checkpoints <grokking_theories.store.RunStore.load_checkpoints>`
    used to return and the trainer still produces, so a function may take
    either. The fields cannot be reassigned, but the tensors are shared, not
    copied.
    """

    steps: "torch.Tensor"
    params: dict[str, "torch.Tensor"]
    run_id: Optional[str] = None
    sha256: Optional[str] = None

    def __post_init__(self):
        problem = checkpoint_problem(self.as_dict())
        if problem:
            who = "" if self.run_id is None else f"run {self.run_id}: "
            raise ValueError(f"{who}bad checkpoint: {problem}")

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    # Dict-style access: the stored format is a dict, the old load_checkpoints returned it, and probes take
    # either a Checkpoint or the trainer's in-memory dict; ckpt["steps"] keeps all of them working.
    def __getitem__(self, key: str):
        if key == "steps":
            return self.steps
        if key == "params":
            return self.params
        raise KeyError(f"a Checkpoint has the keys 'steps' and 'params' (dict-style access), not {key!r}")

    # Not iterable: with __getitem__ and __len__, Python would otherwise iterate by calling ckpt[0], ckpt[1], ...
    # and fail with a puzzling KeyError. Iterate over ckpt.steps, or use ckpt.at(i).
    __iter__ = None

    def as_dict(self) -> dict:
        """``{"steps": steps, "params": params}``: the format on disk (tensors shared, not copied)."""
        return {"steps": self.steps, "params": self.params}

    def at(self, index: int) -> tuple[int, dict[str, "torch.Tensor"]]:
        """Snapshot ``index`` (negative counts from the end): ``(step, {name: tensor})``, one model's parameters."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"snapshot {index} of a checkpoint with {n} snapshot(s)")
        return int(self.steps[index]), {name: t[index] for name, t in self.params.items()}

    def __repr__(self) -> str:
        steps = self.steps.tolist()
        shown = steps if len(steps) <= 6 else [*steps[:3], "...", *steps[-2:]]
        return (f"Checkpoint(run_id={self.run_id!r}, {len(self)} snapshot(s) at steps {shown}, "
                f"params {sorted(self.params)})")


class CheckpointFiles:
    """The checkpoint folder of a run store: ``<folder>/<run_id>.pt``, one file per run.

    The folder must exist before :meth:`write` (a writing store creates it).
    """

    def __init__(self, folder: Union[str, os.PathLike]):
        self.folder = Path(folder)

    def path(self, run_id: str) -> Path:
        """Where the checkpoint of ``run_id`` lives (whether or not it exists)."""
        return self.folder / f"{run_id}.pt"

    def write(self, run_id: str, blob: bytes) -> str:
        """Write :func:`serialise_checkpoint`'s ``blob`` atomically as the run's file; return its sha256.

        The caller records the sha256 in the index; :meth:`read_verified` checks the file against it.
        """
        atomic_write(self.path(run_id), blob)
        return hashlib.sha256(blob).hexdigest()

    def read_verified(self, run_id: str, sha256: str) -> Checkpoint:
        """The run's checkpoint, after its file's sha256 matched ``sha256`` (else CorruptCheckpointError)."""
        return read_verified(self.path(run_id), run_id, sha256)

    def remove(self, run_id: str) -> None:
        """Delete the run's file, if any."""
        with contextlib.suppress(FileNotFoundError):
            self.path(run_id).unlink()


def read_verified(path: Path, run_id: str, expected_sha256: str) -> Checkpoint:
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
    return Checkpoint(steps=obj["steps"], params=obj["params"], run_id=run_id, sha256=actual)


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


def serialise_checkpoint(checkpoint: Union[Checkpoint, dict], rid: str) -> bytes:
    """The bytes of the run's checkpoint file: ``torch.save`` of a clean ``{"steps", "params"}`` dict.

    ``checkpoint`` is a :class:`Checkpoint` or the trainer's dict of the same shape (integer steps of any
    integer dtype are stored as int64). Raises ValueError, naming the run, if it is malformed.
    """
    import torch

    if isinstance(checkpoint, Checkpoint):
        checkpoint = checkpoint.as_dict()  # the same bytes as the dict it was built from
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
