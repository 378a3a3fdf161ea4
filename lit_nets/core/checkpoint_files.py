"""Finding checkpoints of earlier runs: what ``--ckpt_path last`` and ``--ckpt_path best`` mean here.

Lightning resolves ``last`` and ``best`` inside the *current* run only, which is empty when a new process
starts. Here they name the newest earlier run under the logger's folder (``lightning_logs/version_*``) that
holds a ``last.ckpt``: ``last`` is that file, ``best`` is the best checkpoint recorded in it by
``ModelCheckpoint``.

A run that is training right now holds a lock on ``<run>/.training`` (:class:`RunLock`); ``last`` and ``best`` skip
such runs, so a second command never resumes from, or tests, a run that is still being written.

Every checkpoint a command is given is read first with ``torch.load(weights_only=True)``: a file that holds
pickled code is refused, and a torn one (a process killed while writing it, a copy cut short) is named as such;
for ``last`` the newest complete checkpoint is used instead, with a warning.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from lit_nets.core.errors import UserError, first_line

log = logging.getLogger(__name__)


def load(path: str | Path, what: str = "checkpoint", trusted: bool = False) -> dict:
    """A checkpoint's contents, loaded without running any code from it (``trusted``: the user chose
    ``--weights_only false`` for this file, so unpickle it); a clear error when that cannot be.

    A command reads its checkpoint once, into a :class:`lit_nets.core.checkpoint.Checkpoint` record."""
    if not Path(path).is_file():
        raise UserError(f"{what} {path}: no such checkpoint file")
    return _load(path, what, trusted)


def _load(path: str | Path, what: str, trusted: bool) -> dict:
    file = Path(path)
    if file.stat().st_size == 0:
        raise UserError(f"{what} {path}: an empty file (0 bytes), not a checkpoint")
    complete_zip = zipfile.is_zipfile(file)
    try:  # mmap: the tensors are mapped, not read, so checking a large checkpoint is cheap
        with warnings.catch_warnings():  # torch warns about pickle protocols before it refuses them
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(file, map_location="cpu", weights_only=not trusted, mmap=complete_zip)
    except pickle.UnpicklingError as e:
        reason = _refused_global(str(e))
        raise UserError(
            f"{what} {path}: refused to load: it holds pickled objects other than tensors and plain values "
            f"({reason}). Unpickling them could run any code. Load checkpoints only from sources you trust; "
            "for one you trust, load it yourself with torch.load(weights_only=False) and save its state_dict"
        ) from None
    except Exception as e:
        if not complete_zip:
            raise UserError(
                f"{what} {path}: not a complete checkpoint (truncated, torn while being written, or not a "
                f"PyTorch file: {first_line(e, 160)})"
            ) from None
        raise UserError(f"{what} {path}: cannot read the checkpoint: {first_line(e)}") from None
    if not isinstance(state, dict):
        raise UserError(
            f"{what} {path}: holds a {type(state).__name__}, not a checkpoint (a dict of weights and values)"
        )
    return state


def _refused_global(message: str) -> str:
    """The line of torch's refusal that names what the file wanted to import."""
    for line in message.splitlines():
        if "global" in line.lower() or "unsupported" in line.lower():
            return line.strip().removeprefix("WeightsUnpickler error: ").rstrip(".")
    return "an object weights_only loading does not allow"


def intact(path: Path) -> bool:
    """Whether ``path`` is a whole checkpoint file (its zip directory is there), without loading it."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class RunLock:
    """Marks a run folder as being trained by this process: an exclusive ``flock`` on ``<run>/.training`` (with the
    process id in it), held until :meth:`release` or the process ends, however it ends (the kernel drops the lock of
    a killed process, so a crash leaves no stale lock behind). Written by hand: no library we use has one.
    Where ``fcntl`` is missing (Windows) it does nothing."""

    NAME = ".training"

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / self.NAME
        self._file: Any = None

    def acquire(self) -> None:
        """Take the lock (the folder is made if needed)."""
        try:
            import fcntl
        except ImportError:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            self._file = None
            raise UserError(
                f"{self.path.parent} is being trained by another process ({holder(self.path)}); "
                "wait for it, or train into another run folder"
            ) from None
        self._file.truncate(0)
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        """Drop the lock and its file."""
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None


def holder(lock: Path) -> str:
    """Who holds a run's lock, in words (the process id written in it)."""
    try:
        return f"process {lock.read_text().strip() or '?'}"
    except OSError:
        return "another process"


def is_training(run_dir: Path) -> bool:
    """Whether a live process holds the :class:`RunLock` of ``run_dir`` right now."""
    lock = run_dir / RunLock.NAME
    try:
        import fcntl
    except ImportError:
        return False
    if not lock.is_file():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def newest_last_checkpoint(root: Path) -> Path | None:
    """The most recently written ``*/checkpoints/last*.ckpt`` under ``root`` of a run that is not being trained
    right now, or None. When that file is torn, the newest intact checkpoint of the same run (or else of an earlier
    run), with a warning."""
    candidates = sorted(root.glob("*/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    live = [p for p in candidates if is_training(p.parent.parent)]
    for run in dict.fromkeys(p.parent.parent for p in live):
        log.warning("%s is being trained right now (%s): passed over", run, holder(run / RunLock.NAME))
    candidates = [p for p in candidates if p not in live]
    if not candidates:
        return None
    newest = candidates[0]
    if intact(newest):
        return newest
    same_run = sorted(newest.parent.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for fallback in [*same_run, *candidates[1:]]:
        if fallback != newest and intact(fallback):
            log.warning("%s is torn (cut short while being written); using %s instead", newest, fallback)
            return fallback
    raise UserError(
        f"--ckpt_path last: {newest} is torn (cut short while being written) and no intact checkpoint "
        f"is left under {root}/"
    )


def best_checkpoint_of(last: Path) -> Path | None:
    """The best checkpoint that ``ModelCheckpoint`` recorded in the checkpoint file ``last``."""
    state = load(last)
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
            best = Path(value["best_model_path"])
            if best.is_file():
                return best
            # the run folder may have moved: look beside ``last`` under the same file name
            moved = last.parent / best.name
            if moved.is_file():
                return moved
    return None


def resolve(
    ckpt_path: str | None, root: Path, subcommand: str, what: str = "--ckpt_path", trusted: bool = False
) -> str | None:
    """Turn ``last``/``best`` into a file of an earlier run under ``root``; check that the file loads as data
    (``trusted``: the user chose ``--weights_only false`` for it, so only check that it exists).

    ``what`` names the setting in messages (``--ckpt_path``, ``model.init_from``).
    """
    path = find(ckpt_path, root, subcommand, what)
    if path is not None and not trusted:
        load(path, what)
    return path


def find(ckpt_path: str | None, root: Path, subcommand: str, what: str = "--ckpt_path") -> str | None:
    """The checkpoint file ``ckpt_path`` names: a file, a run folder (its last), ``last`` / ``best`` of the newest
    run under ``root`` (None: nothing to resume yet, for ``fit --ckpt_path last``)."""
    if ckpt_path is None:
        return None
    if ckpt_path in ("last", "best"):
        last = newest_last_checkpoint(root)
        if last is None:
            if subcommand == "fit" and ckpt_path == "last":
                return None  # nothing to resume yet: start fresh, as Lightning does
            raise UserError(
                f"{what} {ckpt_path}: no earlier run with checkpoints under {root}/; "
                "train first (python -m lit_nets fit --config ...) or give a checkpoint file"
            )
        if ckpt_path == "last":
            return str(last)
        best = best_checkpoint_of(last)
        if best is None:
            raise UserError(f"{what} best: {last} records no best checkpoint; give a checkpoint file")
        return str(best)
    path = Path(ckpt_path)
    if path.is_dir():  # a run folder or its checkpoints/ folder: take its last checkpoint
        found = sorted(path.glob("last*.ckpt")) or sorted(path.glob("checkpoints/last*.ckpt"))
        if not found:
            raise UserError(f"{what} {ckpt_path} is a folder without a last.ckpt")
        return str(found[-1])
    if not path.is_file():
        raise UserError(f"{what} {ckpt_path}: no such checkpoint file")
    return str(path)


def run_folder(ckpt_path: str | Path, root: Path) -> str | None:
    """The name of the run folder under ``root`` that holds ``ckpt_path`` in its ``checkpoints/``, else None."""
    file = Path(ckpt_path).resolve()
    if file.parent.name != "checkpoints" or file.parent.parent.parent != root.resolve():
        return None
    return file.parent.parent.name
