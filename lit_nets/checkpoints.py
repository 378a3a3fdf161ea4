"""Finding checkpoints of earlier runs: what ``--ckpt_path last`` and ``--ckpt_path best`` mean here.

Lightning resolves ``last`` and ``best`` inside the *current* run only, which is empty when a new process
starts. Here they name the newest earlier run under the logger's folder (``lightning_logs/version_*``) that
holds a ``last.ckpt``: ``last`` is that file, ``best`` is the best checkpoint recorded in it by
``ModelCheckpoint``.

Every checkpoint a command is given is read first with ``torch.load(weights_only=True)``: a file that holds
pickled code is refused, and a torn one (a process killed while writing it, a copy cut short) is named as such;
for ``last`` the newest complete checkpoint is used instead, with a warning.
"""

from __future__ import annotations

import logging
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from lit_nets.errors import UserError

log = logging.getLogger(__name__)


def load(path: str | Path, what: str = "checkpoint") -> dict:
    """A checkpoint's contents, loaded without running any code from it; a clear error when that cannot be."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{what} {path}: no such checkpoint file")
    complete_zip = zipfile.is_zipfile(file)
    try:  # mmap: the tensors are mapped, not read, so checking a large checkpoint is cheap
        with warnings.catch_warnings():  # torch warns about pickle protocols before it refuses them
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(file, map_location="cpu", weights_only=True, mmap=complete_zip)
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
                f"PyTorch file: {str(e).splitlines()[0][:160]})"
            ) from None
        raise UserError(f"{what} {path}: cannot read the checkpoint: {str(e).splitlines()[0][:200]}") from None


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


def newest_last_checkpoint(root: Path) -> Path | None:
    """The most recently written ``*/checkpoints/last*.ckpt`` under ``root``, or None. When that file is torn,
    the newest intact checkpoint of the same run (or else of an earlier run), with a warning."""
    candidates = sorted(root.glob("*/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
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
    raise UserError(f"--ckpt_path last: {newest} is torn (cut short while being written) and no intact checkpoint "
                    f"is left under {root}/")  # fmt: skip


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
    path = _resolve(ckpt_path, root, subcommand, what)
    if path is not None and not trusted:
        load(path, what)
    return path


def _resolve(ckpt_path: str | None, root: Path, subcommand: str, what: str) -> str | None:
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


def hparams_of(path: str | Path) -> dict:
    """The hyper-parameters saved in a checkpoint file (loaded with weights_only=True)."""
    return dict(load(path).get("hyper_parameters") or {})
