"""A trained classifier and its data out of a checkpoint: the one way ``test``, ``predict``, ``export``,
``explain``, ``serve`` and the benchmark rebuild a model.

It builds the class directly rather than through Lightning's ``load_from_checkpoint``, which re-parses the
arguments with jsonargparse and took minutes for a CSV schema of 5,000 columns.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lit_nets.core.checkpoint import Checkpoint, check_weights
from lit_nets.core.errors import UserError


def open_checkpoint(ckpt_path: str | Path | Checkpoint, say: bool = True) -> Checkpoint:
    """The record of the checkpoint ``explain``, ``export`` and ``serve`` run on: ``best`` / ``last`` of the newest
    run under ``./lightning_logs`` (the default logger's folder), a run folder, or a file, as for fit, test and
    predict. ``say``: print its line (which run, epoch and score it is) to stderr."""
    if isinstance(ckpt_path, Checkpoint):
        return ckpt_path
    checkpoint = Checkpoint.open(str(ckpt_path))
    assert checkpoint is not None  # only fit --ckpt_path last finds nothing without an error
    if say:
        print(checkpoint.line(), file=sys.stderr, flush=True)
    return checkpoint


def load_classifier(ckpt: str | Path | Checkpoint, device: str = "cpu") -> Any:
    """The trained classifier of a checkpoint (its record, or a file), in eval mode on ``device``."""
    checkpoint = open_checkpoint(ckpt, say=False)
    cls, args = checkpoint.model
    model = cls(**{**args, "init_from": None})  # the weights come from the checkpoint
    state_dict = checkpoint.state["state_dict"]
    check_weights(model, state_dict, checkpoint.file)
    model.load_state_dict(state_dict)
    return model.to(device).eval()


def checkpoint_data(ckpt: str | Path | Checkpoint, stage: str, purpose: str) -> Any:
    """The data module a checkpoint was trained with, rebuilt from its saved arguments and set up for ``stage``
    (its data values, a CSV schema among them, from the checkpoint; MNIST never downloaded: its sample is real data
    too). ``purpose`` names what the data is for in the error when it cannot be loaded (its files moved, ...)."""
    import logging

    checkpoint = open_checkpoint(ckpt, say=False)
    try:
        cls, args = checkpoint.data_class()
    except UserError as e:
        raise UserError(f"{e}: there is no data for {purpose}") from None
    if cls.__name__ == "MNISTDataModule":
        args["download"] = False  # never fetch for a check: the sample fallback is real data too
    data_log = logging.getLogger("lit_nets.core.data")
    level, data_log.level = data_log.level, logging.ERROR  # nothing is trained here: no banner about the data
    try:
        dm = cls(**args)
        if hasattr(dm, "use_trained"):
            dm.use_trained(checkpoint.data_values)
        dm.setup(stage)
    except UserError as e:
        raise UserError(f"cannot load the checkpoint's data for {purpose}: {e}") from None
    finally:
        data_log.setLevel(level)
    return dm
