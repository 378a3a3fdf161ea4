"""The CLI's ``--ckpt_path``: one rule for a file, a run folder, ``best`` and ``last``.

A mixin of :class:`lit_nets.train.cli.LitNetsCLI`: the checkpoint is resolved and read once into a
:class:`~lit_nets.core.checkpoint.Checkpoint` record right after parsing; its model arguments win over the config
and the command line (a warning names each value that differed); ``fit`` resumes a run in that run's own folder;
before a run, a checkpoint of another model or data is one line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only

from lit_nets.core import checkpoint_files as checkpoints
from lit_nets.core import trust
from lit_nets.core.checkpoint import Checkpoint, check_weights, classifier_class
from lit_nets.core.data.contract import DATA_ARGS
from lit_nets.core.errors import UserError
from lit_nets.core.models.injected import FILLED
from lit_nets.train.reports import say_if_finished
from lit_nets.train.run_folders import logs_root

log = logging.getLogger("lit_nets.train.cli")


def _differs(a: Any, b: Any) -> bool:
    """Whether two config values differ (a tuple and a list of the same items do not)."""
    normal = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return normal(a) != normal(b)


class CheckpointArguments:
    """``--ckpt_path`` for the CLI (see the module docstring). Its state, set in the CLI's ``__init__``:
    ``checkpoint`` (the record) and ``resumed_in`` (the run folder a fit continues in)."""

    checkpoint: Checkpoint | None
    resumed_in: str | None

    # -- --ckpt_path: one rule for a file, a run folder, best and last -----------------------------------------
    def _resolve_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path`` and use the checkpoint's model arguments: they win over the config and the command
        line (a warning names each value that differed), whichever way the checkpoint was named.

        Resolve first (a file, a run folder, ``best``, ``last``: one route for each), check the arguments against
        the model class (:func:`lit_nets.core.checkpoint.model_hparams`), merge the model's own arguments only (the data
        module gives the data's values). ``fit`` resumes a run of our logs folder in that run's own folder.
        """
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        if config is None or "ckpt_path" not in config:  # no subcommand: the CLI was built with run=False
            return
        if config.get("weights_only", False) is None:  # Lightning would unpickle remote checkpoints as code
            config.weights_only = True
        trusted = config.get("weights_only") is False
        root = logs_root(config)
        given = config.ckpt_path
        if self.checkpoint is None or self.checkpoint.given != given:  # read before parsing when no config named it
            self.checkpoint = Checkpoint.open(given, root, subcommand, trusted=trusted)  # the one record of it
        config.ckpt_path = self.checkpoint.file if self.checkpoint else None
        if self.checkpoint is None:
            return
        rank_zero_info(self.checkpoint.line())
        self.checkpoint.named |= {trust.module_of(p) for p in trust.class_paths(config.as_dict())}  # this command's
        cls, args = self.checkpoint.model
        self._use_checkpoint_arguments(subcommand, cls, args, config.ckpt_path)  # makes a new self.config
        if subcommand == "fit":
            self._resume_in_its_folder(self.config[subcommand], root)
            say_if_finished(self.checkpoint.state, self.config[subcommand], given)

    def _use_checkpoint_arguments(self, subcommand: str, cls: type, args: dict[str, Any], ckpt_path: str) -> None:
        model = self.config[subcommand].model
        given = model.init_args.as_dict() if model.get("init_args") is not None else {}
        same_class = classifier_class({"_class_path": model.class_path}, ckpt_path, self.checkpoint.named) is cls
        own = {k: v for k, v in args.items() if k not in DATA_ARGS}
        if isinstance(own.get("net"), dict):  # the data's values reach the network through the links
            net = own["net"]
            own["net"] = {
                **net,
                "init_args": {k: v for k, v in (net.get("init_args") or {}).items() if k not in FILLED},
            }
        own["init_from"] = None  # the weights come from the checkpoint
        if given.get("init_from"):
            log.info("model.init_from %s is not used: the weights come from %s", given["init_from"], ckpt_path)
        changed = [
            f"{k} {v!r} (not {given[k]!r})"
            for k, v in own.items()
            if same_class and k != "init_from" and k in given and _differs(given[k], v)
        ]
        if not same_class:
            changed.insert(0, f"the model class {cls.__name__} (not {model.class_path.rpartition('.')[2]})")
        if changed and rank_zero_only.rank == 0:
            log.warning("--ckpt_path %s: the checkpoint's model arguments are used: %s", ckpt_path, "; ".join(changed))
        class_path = f"{cls.__module__}.{cls.__qualname__}"
        update = {subcommand: {"model": {"class_path": class_path, "init_args": own}}}
        self.config = self.parser.parse_object(update, self.config)

    def _resume_in_its_folder(self, config: Any, root: Path) -> None:
        """A run resumed from a checkpoint of a run under ``root`` continues in that run's folder (its curves go on,
        its best checkpoint keeps its score), unless the logger's version is given."""
        logger = config.trainer.logger
        init = logger.get("init_args") if hasattr(logger, "get") else None
        folder = checkpoints.run_folder(config.ckpt_path, root)
        if folder is not None and init is not None and "version" in init and init.version is None:
            init.version = folder
            self.resumed_in = folder
            rank_zero_info(f"Resuming {root / folder} in its own folder")

    def _check_checkpoint_fits(self) -> None:
        """A --ckpt_path of another model or data ends with one line that names what differs (classes, input shape,
        or the tensors), not a state_dict size-mismatch traceback."""
        if self.checkpoint is None or not hasattr(self.model, "num_classes"):
            return
        ckpt_path, checkpoint = self.checkpoint.file, self.checkpoint.state
        saved = self.checkpoint.hparams
        here = {"num_classes": self.model.num_classes, "input_shape": list(self.model.input_shape)}
        there = {"num_classes": saved.get("num_classes"), "input_shape": list(saved.get("input_shape") or [])}
        if saved and here != there:
            kind = str(saved.get("_class_path", "a model")).rpartition(".")[2]
            raise UserError(
                f"--ckpt_path {ckpt_path} holds {kind} for {there['num_classes']} classes of input "
                f"{there['input_shape']}, but this run's data gives {here['num_classes']} classes of input "
                f"{here['input_shape']}; use the config the checkpoint was trained with"
            )
        check_weights(self.model, checkpoint.get("state_dict") or {}, ckpt_path)
        self.checkpoint.state = {}  # checked: Lightning reads the weights from the file itself
