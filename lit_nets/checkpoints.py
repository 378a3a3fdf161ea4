"""Finding checkpoints of earlier runs: what ``--ckpt_path last`` and ``--ckpt_path best`` mean here.

Lightning resolves ``last`` and ``best`` inside the *current* run only, which is empty when a new process
starts. Here they name the newest earlier run under the logger's folder (``lightning_logs/version_*``) that
holds a ``last.ckpt``: ``last`` is that file, ``best`` is the best checkpoint recorded in it by
``ModelCheckpoint``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lit_nets.errors import UserError


def newest_last_checkpoint(root: Path) -> Path | None:
    """The most recently written ``*/checkpoints/last*.ckpt`` under ``root``, or None."""
    candidates = [p for p in root.glob("*/checkpoints/last*.ckpt") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def best_checkpoint_of(last: Path) -> Path | None:
    """The best checkpoint that ``ModelCheckpoint`` recorded in the checkpoint file ``last``."""
    try:
        state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a torn or foreign file: say which
        raise UserError(f"cannot read checkpoint {last}: {e}") from None
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


def resolve(ckpt_path: str | None, root: Path, subcommand: str, what: str = "--ckpt_path") -> str | None:
    """Turn ``last``/``best`` into a file of an earlier run under ``root``; check explicit paths exist.

    ``what`` names the setting in messages (``--ckpt_path``, ``model.init_from``).
    """
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
    file = Path(path)
    if not file.is_file():
        raise UserError(f"no such checkpoint file {path}")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise UserError(f"cannot read checkpoint {path}: {e}") from None
    return dict(checkpoint.get("hyper_parameters") or {})
