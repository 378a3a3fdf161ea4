"""Transfer learning: start a classifier from another checkpoint's (or a plain state_dict's) network tensors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)


def load_matching(model: Any, path: str) -> tuple[list[str], dict[str, str]]:
    """Copy the network tensors of ``path`` whose name and shape match (transfer learning); the loaded names
    and, for the others, why they were not loaded."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"model.init_from: no such checkpoint file {path}")
    try:
        source = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"model.init_from: cannot read {path}: {e}") from None
    source = source.get("state_dict", source)
    if not any(k.startswith("net.") for k in source):  # a plain state_dict of the network
        source = {f"net.{k}": v for k, v in source.items()}
    head = f"net.{getattr(model.net, 'head', '')}."
    loaded, skipped = {}, {}
    for name, tensor in model.state_dict().items():
        if not name.startswith("net."):
            continue  # normalisation and metrics belong to the new data
        if name.startswith(head) and not model.hparams.init_head:
            skipped[name] = "output layer, re-initialised"
        elif name not in source:
            skipped[name] = "not in the checkpoint"
        elif source[name].shape != tensor.shape:
            skipped[name] = f"shape {list(tensor.shape)} here, {list(source[name].shape)} in the checkpoint"
        else:
            loaded[name] = source[name]
    if not loaded:
        raise UserError(f"model.init_from: no tensor of {path} fits this model (another architecture?)")
    model.load_state_dict(loaded, strict=False)
    log.info("init_from %s: loaded %d tensors: %s", path, len(loaded), ", ".join(loaded))
    if skipped:
        log.info("init_from: not loaded: %s", "; ".join(f"{k} ({why})" for k, why in skipped.items()))
    return list(loaded), skipped
