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

Compact on disk: a parameter is stored in float16 when every value fits its range, else as given
(:data:`STORED_DTYPE`, :func:`compact`), and read back as float32. Float16 keeps 11 significant bits
(relative error at most 2^-11 = 4.9e-4 per weight of magnitude above 6.1e-5; below that, in float16's
subnormal range, the error is at most 3e-8 in absolute terms, and weights below 3e-8 read back as 0), three
bits more than bfloat16 (an eighth of its rounding error), at half the bytes of float32.
That is enough for every probe the package runs on checkpoints, with the tolerance stated and tested in
``tests/test_probe_stage.py::test_probes_on_compact_checkpoints_match_full_precision`` (tolerances in
:mod:`grokking_theories.levels`, measured by ``benchmarks/checkpoint_precision.py``): the Fourier measures are
sums of squares of many weights (their relative error is of the order of the weights'), and the flip
probe reads argmax predictions, which rounding changes only for examples whose top two logits are
closer than the rounding moves them. Training never reads checkpoints (the trainer's logged metrics are
computed in full precision while it trains), so no logged metric and no training result depends on this.
A tensor with a value beyond float16's range (65,504) or a non-finite one (a diverged member's last
finite state can be huge) keeps its own dtype: nothing is clipped silently.

Nothing here imports torch at module level: index-only users (reports,
status) never pay for it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from ..errors import CorruptCheckpointError, StoreError

if TYPE_CHECKING:
    import torch

__all__ = ["STORED_DTYPE", "Checkpoint", "CheckpointFiles", "atomic_write", "checkpoint_problem", "compact",
           "read_verified", "retrain_advice", "serialise_checkpoint"]

#: The dtype parameters are stored in when their values fit it (see the module's docstring for why).
STORED_DTYPE = "float16"


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

    A new checkpoint replaces a run's file in two phases, so that a failure at any point leaves the run's
    old parameters or its new ones, never neither: :meth:`stage` writes the new file next to the old one
    (``<run_id>.pt.pending``, atomically), the caller commits the new sha256 in the index, and
    :meth:`publish` renames the staged file over the old one. If the commit fails, :meth:`discard` drops
    the staged file and the old one still matches the index. If the process dies between the commit and
    the rename, the staged file is the one the index records: :meth:`read_verified` reads it, and
    :meth:`recover` (run by a writing store when it opens) finishes the rename, or drops a staged file
    whose commit never happened.

    The folder must exist before :meth:`stage` (a writing store creates it).
    """

    PENDING_SUFFIX = ".pending"

    def __init__(self, folder: Union[str, os.PathLike]):
        self.folder = Path(folder)

    def path(self, run_id: str) -> Path:
        """Where the checkpoint of ``run_id`` lives (whether or not it exists)."""
        return self.folder / f"{run_id}.pt"

    def pending_path(self, run_id: str) -> Path:
        """Where a staged (written, not yet committed or published) checkpoint of ``run_id`` waits."""
        return self.folder / f"{run_id}.pt{self.PENDING_SUFFIX}"

    def stage(self, run_id: str, blob: bytes) -> str:
        """Write :func:`serialise_checkpoint`'s ``blob`` atomically as the run's staged file; return its sha256.

        The caller records the sha256 in the index, then calls :meth:`publish` (or :meth:`discard` if the
        index write failed).
        """
        atomic_write(self.pending_path(run_id), blob)
        return hashlib.sha256(blob).hexdigest()

    def publish(self, run_id: str) -> None:
        """Make the staged file the run's checkpoint (an atomic rename, then an fsync of the folder)."""
        try:
            os.replace(self.pending_path(run_id), self.path(run_id))
        except OSError as exc:
            raise StoreError(f"cannot move {self.pending_path(run_id)} over {self.path(run_id)}: {exc}; the store "
                             "still reads the run's new checkpoint from the staged file") from exc
        _fsync_folder(self.folder)

    def discard(self, run_id: str) -> None:
        """Drop the run's staged file, if any (its index write did not happen)."""
        with contextlib.suppress(FileNotFoundError):
            self.pending_path(run_id).unlink()

    def write(self, run_id: str, blob: bytes) -> str:
        """Stage and publish at once: for a caller without an index to commit in between (tests, tools)."""
        sha = self.stage(run_id, blob)
        self.publish(run_id)
        return sha

    def read_verified(self, run_id: str, sha256: str) -> Checkpoint:
        """The run's checkpoint, after its file's sha256 matched ``sha256`` (else CorruptCheckpointError).

        A staged file whose sha256 is the recorded one (its commit happened, its rename did not) is the
        run's checkpoint: it is read when the published file does not match.
        """
        try:
            return read_verified(self.path(run_id), run_id, sha256)
        except CorruptCheckpointError:
            pending = self.pending_path(run_id)
            if pending.exists():
                with contextlib.suppress(CorruptCheckpointError):
                    return read_verified(pending, run_id, sha256)
            raise

    def recover(self, recorded_shas) -> dict[str, int]:
        """Finish what a dead writer left: publish each staged file whose sha256 the index records, drop the
        others. ``recorded_shas()`` returns ``{run_id: sha256}`` of the index; it is called only when a staged
        file is left over. Returns ``{"published": n, "dropped": m}``."""
        counts = {"published": 0, "dropped": 0}
        leftovers = sorted(self.folder.glob(f"*.pt{self.PENDING_SUFFIX}"))
        recorded = recorded_shas() if leftovers else {}
        for pending in leftovers:
            run_id = pending.name[: -len(f".pt{self.PENDING_SUFFIX}")]
            try:
                sha = hashlib.sha256(pending.read_bytes()).hexdigest()
            except OSError:
                continue
            if sha == recorded.get(run_id):
                self.publish(run_id)
                counts["published"] += 1
            else:
                self.discard(run_id)
                counts["dropped"] += 1
        return counts

    def remove(self, run_id: str) -> None:
        """Delete the run's file, a staged one and a dead writer's temp file of it, if any."""
        with contextlib.suppress(FileNotFoundError):
            self.path(run_id).unlink()
        self.discard(run_id)
        _remove_dead_writers_temp_files(self.pending_path(run_id))


def read_verified(path: Path, run_id: str, expected_sha256: str) -> Checkpoint:
    """Load the checkpoint at ``path`` after checking its sha256 against ``expected_sha256``.

    Raises
    ------
    CorruptCheckpointError
        The file is missing, empty, truncated, unreadable, malformed, or its sha256
        differs from the recorded one. The message names the file and says how to
        get the run's parameters back (:func:`retrain_advice`).
    """
    advice = retrain_advice(path, run_id)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CorruptCheckpointError(f"checkpoint file {path} of run {run_id} is missing. {advice}") from None
    except OSError as exc:
        raise CorruptCheckpointError(f"checkpoint file {path} of run {run_id} cannot be read: {exc}. {advice}"
                                     ) from exc
    actual = hashlib.sha256(blob).hexdigest()
    if actual != expected_sha256:
        # Never parse bytes known to be wrong; just say what kind of wrong.
        if not blob:
            what = "is empty"
        elif not zipfile.is_zipfile(io.BytesIO(blob)):
            what = "is truncated or not a torch file (no zip end record)"
        else:
            what = "was modified or replaced after it was recorded"
        raise CorruptCheckpointError(
            f"checkpoint file {path} of run {run_id} {what}: {len(blob)} bytes, "
            f"sha256 {actual} but the store recorded {expected_sha256}. {advice}"
        )
    import torch  # lazily: index-only users (reports, status) need not import torch

    try:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CorruptCheckpointError(
            f"checkpoint file {path} of run {run_id} is unreadable: {type(exc).__name__}: {exc}. {advice}"
        ) from exc
    problem = checkpoint_problem(obj)
    if problem:
        raise CorruptCheckpointError(f"checkpoint file {path} of run {run_id} is malformed: {problem}. {advice}")
    # Probes compute in float32 whatever the file holds (float16 compact storage, or float32 of older stores).
    params = {name: t.float() if t.dtype == torch.float16 else t for name, t in obj["params"].items()}
    return Checkpoint(steps=obj["steps"], params=params, run_id=run_id, sha256=actual)


def retrain_advice(path: Path, run_id: str) -> str:
    """What to do about a damaged checkpoint file: the sentence every :class:`CorruptCheckpointError` ends with.

    A finished run is never trained again (that is what makes reruns cheap), so rerunning the study alone
    does not repair a damaged file; ``--retrain RUN_ID`` (``run_study(..., retrain=[RUN_ID])``) trains that
    run again, and only it.
    """
    return (f"The run's logged metrics are intact, its parameters are not. Restore the file from a backup, or "
            f"retrain the run: rerun the study command with --retrain {run_id}")


def compact(tensor: "torch.Tensor") -> "torch.Tensor":
    """``tensor`` in :data:`STORED_DTYPE` when it is a float32/float64 tensor whose values all fit that
    dtype's range (finite, at most 65,504 in magnitude); otherwise unchanged."""
    import torch

    small = getattr(torch, STORED_DTYPE)
    if tensor.dtype not in (torch.float32, torch.float64) or tensor.numel() == 0:
        return tensor
    if not bool(torch.isfinite(tensor).all()) or float(tensor.abs().max()) > torch.finfo(small).max:
        return tensor
    return tensor.to(small)


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
    # whole shared storage (every member) into this run's file; compact: float16 where it fits.
    clean = {
        "steps": steps.detach().to("cpu", torch.int64).contiguous().clone(),
        "params": {
            name: (compact(t.detach().cpu()).contiguous().clone() if isinstance(t, torch.Tensor) else t)
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
    """Write ``blob`` to ``path`` so that readers see the old file or the whole new one.

    The blob goes to a temp file in the same folder, is fsynced and renamed over ``path``; the folder is
    fsynced so the rename itself survives a crash. A failure leaves the old file and no temp file; one
    that is an OSError (a full disk, above all) becomes a :class:`StoreError` naming ``path`` and saying
    so. A process killed between the temp file and the rename (SIGKILL, power loss) cannot clean up: its
    temp file is removed by the next write of the same ``path``. That is safe because the caller is the
    only writer of ``path`` (a run store's checkpoints are written under its writer lock), so any temp
    file of ``path`` is the leftover of a dead writer.
    """
    _remove_dead_writers_temp_files(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise
    _fsync_folder(path.parent)  # so the rename itself survives a crash


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _remove_dead_writers_temp_files(path: Path) -> None:
    """Delete temp files :func:`atomic_write` left for ``path`` in a process that was killed before its rename."""
    for stale in glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*.tmp")):
        with contextlib.suppress(OSError):
            os.unlink(stale)


def _write_error(path: Path, exc: OSError) -> StoreError:
    """The StoreError of a failed :func:`atomic_write`: the path, the cause, and that nothing was replaced."""
    kept = "the previous file (if any) and the store's index are as they were"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"cannot write {path}: the disk is full ({exc.strerror}); nothing was replaced: {kept}. "
                          f"Free space, then rerun the study: it resumes where it stopped")
    return StoreError(f"cannot write {path}: {exc}; nothing was replaced: {kept}")
