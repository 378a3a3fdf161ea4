"""A trained classifier and its data out of a checkpoint: the one way ``test``, ``predict``, ``export``,
``explain``, ``serve`` and the benchmark rebuild a model.

It builds the class directly rather than through Lightning's ``load_from_checkpoint``, which re-parses the
arguments with jsonargparse and took minutes for a CSV schema of 5,000 columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_nets.core import checkpoint_files as checkpoints
from lit_nets.core.checkpoint import check_weights, lit_nets_class, model_hparams
from lit_nets.core.errors import UserError


def load_classifier(ckpt_path: str | Path, device: str = "cpu") -> Any:
    """The trained classifier of a checkpoint file, in eval mode on ``device``."""
    checkpoint = checkpoints.load(ckpt_path)
    cls, args = model_hparams(checkpoint, ckpt_path)
    model = cls(**{**args, "init_from": None})  # the weights come from the checkpoint
    state_dict = checkpoint["state_dict"]
    check_weights(model, state_dict, ckpt_path)
    model.load_state_dict(state_dict)
    return model.to(device).eval()


def checkpoint_data(ckpt_path: str | Path, stage: str, purpose: str) -> Any:
    """The data module a checkpoint was trained with, rebuilt from its saved arguments and set up for ``stage``
    (a CSV schema from the checkpoint itself; MNIST never downloaded: its sample is real data too). ``purpose``
    names what the data is for in the error when it cannot be loaded (its files moved, ...)."""
    import logging

    args = dict(checkpoints.load(ckpt_path).get("datamodule_hyper_parameters") or {})
    class_path = args.pop("_class_path", None)
    for key in [k for k in args if k.startswith("_")] + ["data_source"]:
        args.pop(key, None)
    if class_path is None:
        raise UserError(f"{ckpt_path} records no data module, so there is no data for {purpose}")
    cls = lit_nets_class(class_path, ckpt_path)
    class_name = cls.__name__
    if "schema_from" in args:
        args["schema_from"] = str(ckpt_path)
    if class_name == "MNISTDataModule":
        args["download"] = False  # never fetch for a check: the sample fallback is real data too
    data_log = logging.getLogger("lit_nets.data")
    level, data_log.level = data_log.level, logging.ERROR  # nothing is trained here: no banner about the data
    try:
        dm = cls(**args)
        dm.setup(stage)
    except UserError as e:
        raise UserError(f"cannot load the checkpoint's data for {purpose}: {e}") from None
    finally:
        data_log.setLevel(level)
    return dm
