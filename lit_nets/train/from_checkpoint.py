"""A Trainer command given a checkpoint and no config: the model and data classes come from the checkpoint's run.

    python -m lit_nets predict --ckpt_path best --data.predict_path rows.csv

Without ``--config``, ``--model`` or ``--data``, the parser would take its defaults (the CNN on MNIST) and refuse
``--data.predict_path``, an argument of the table's data module. So before parsing, the checkpoint's data module
(class and saved arguments) and model class go in front of the user's arguments, which then override them as
they would a config's. The classes are checked against :mod:`lit_nets.core.trust` before anything imports them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TRAINER = ("fit", "validate", "test", "predict")
NAMING = ("--config", "--model", "--data", "--model.class_path", "--data.class_path")


def value_of(args: list[str], option: str) -> str | None:
    """The value of ``--option VALUE`` or ``--option=VALUE`` in ``args`` (the last one given)."""
    found = None
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(option + "="):
            found = arg.split("=", 1)[1]
    return found


def with_checkpoint_classes(args: list[str] | None) -> tuple[list[str] | None, Any]:
    """``args`` (a Trainer subcommand's command line; None: ``sys.argv``) with the checkpoint's data module and model
    class in front when it names a checkpoint and no config or class; and the checkpoint's record when it was read
    (the CLI reads it once)."""
    given = list(sys.argv[1:] if args is None or isinstance(args, dict) else args)
    if isinstance(args, dict) or not given or given[0] not in TRAINER:
        return args, None
    rest = given[1:]
    ckpt = value_of(rest, "--ckpt_path")
    if ckpt is None or any(a == n or a.startswith(n + "=") for a in rest for n in NAMING):
        return args, None
    from lit_nets.core.checkpoint import Checkpoint
    from lit_nets.core.trust import check

    root = Path(value_of(rest, "--trainer.default_root_dir") or ".") / "lightning_logs"
    checkpoint = Checkpoint.open(ckpt, root, given[0])
    if checkpoint is None:  # fit --ckpt_path last with nothing to resume: the defaults, as before
        return args, None
    data = checkpoint.data_args
    data_path = data.pop("_class_path", None)
    model_path = checkpoint.hparams.get("_class_path")
    front: list[str] = []
    if isinstance(model_path, str):
        check(model_path, "model class", checkpoint.file, checkpoint.named)
        front += ["--model", json.dumps({"class_path": model_path})]
    if isinstance(data_path, str):
        check(data_path, "data module class", checkpoint.file, checkpoint.named)
        init_args = {k: v for k, v in data.items() if not k.startswith("_") and k not in ("data_source", "schema_from")}
        front += ["--data", json.dumps({"class_path": data_path, "init_args": plain(init_args)})]
    return [given[0], *front, *rest], checkpoint


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """The saved arguments that JSON can carry (a path, a number, a list)."""
    return json.loads(json.dumps(values, default=str))
