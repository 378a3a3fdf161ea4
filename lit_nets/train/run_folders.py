"""Where a run's files go and what its config implies before anything is built: the logs folder, a used version
refused, an empty folder of a run that failed at once removed, the checkpoint file names, class weights from
the data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only

from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)


def logs_root(config: Any, name: str | None = None) -> Path:
    """The folder that holds the runs: the logger's save_dir and ``name`` (default: the logger's name,
    ``lightning_logs``), from a config (the parsed Namespace, or the same as plain data). The one rule for the CLI's
    ``best`` / ``last`` and for cv's folds and tune's trials."""
    init = logger_args(config)
    if init is not None and init.get("save_dir") is not None:
        return Path(logger_save_dir(config)) / (name or str(init.get("name") or "lightning_logs"))
    return Path(trainer_of(config).get("default_root_dir") or ".") / (name or "lightning_logs")


def trainer_of(config: Any) -> Any:
    """The trainer's section of a config (a Namespace or plain data)."""
    return config.get("trainer") or {}


def logger_args(config: Any) -> Any:
    """The init_args of the configured logger (None when there is none, or it is not a class_path config)."""
    logger = trainer_of(config).get("logger")
    return logger.get("init_args") if hasattr(logger, "get") else None


def logger_save_dir(config: Any) -> str:
    """The logger's save_dir: ``--trainer.default_root_dir`` moves the default logger (save_dir ``.``) with it,
    as it moves Lightning's own default logger; a save_dir the user set stays where it is."""
    save_dir = str(logger_args(config).get("save_dir"))
    root = trainer_of(config).get("default_root_dir")
    return str(root) if root and save_dir == "." else save_dir


def remove_if_empty(run: Path) -> None:
    """Take away the folder of a run that failed in its first epoch before it saved any checkpoint (its config,
    hyper-parameters, an event file of next to nothing): a near-empty ``version_N`` that ``last`` and ``best`` would
    pass over anyway. A run that failed later keeps its folder: its curves are worth reading."""
    import shutil

    if run.is_dir() and not any(run.rglob("*.ckpt")):
        shutil.rmtree(run, ignore_errors=True)
        log.info("removed %s: the run failed before it saved a checkpoint", run)


def refuse_a_used_version(config: Any) -> None:
    """A new run with ``--trainer.logger.init_args.version`` naming a folder that holds a run would write its
    checkpoints and curves among that run's: one line instead (a resumed run goes on in its own folder)."""
    init = logger_args(config)
    version = init.get("version") if init is not None else None
    # rank 0 only: the other processes of a DDP run start later, when rank 0 may have made the folder already
    if version is None or init.get("save_dir") is None or rank_zero_only.rank != 0:
        return
    folder = logs_root(config) / (f"version_{version}" if isinstance(version, int) else str(version))
    if folder.is_dir() and any(folder.iterdir()):
        raise UserError(
            f"{folder} already holds a run: a new one there would mix its checkpoints and curves with that run's; "
            f"give another --trainer.logger.init_args.version (or leave it out for a new version_N), or continue "
            f"that run with --ckpt_path {folder / 'checkpoints' / 'last.ckpt'}"
        )


def checkpoint_filename(monitor: str | None) -> str | None:
    """Checkpoint file names that carry the metric they are chosen by: ``epoch07-val_acc0.9840`` for val/acc,
    ``epoch38-val_loss0.0097`` for val/loss (Lightning's default without a monitor)."""
    if not monitor:
        return None
    return f"epoch{{epoch:02d}}-{monitor.replace('/', '_')}{{{monitor}:.4f}}"


def data_defaults(config: Any) -> None:
    """What the model needs from the data, asked of the model class itself (``Classifier.data_defaults``: a
    backbone's weights say the size, centre crop and normalisation they were trained at): each data argument the
    config leaves null takes the model's value, and a line says which; a value given is kept."""
    import importlib

    model, data = config.get("model"), config.get("data")
    args = data.get("init_args") if data is not None else None
    class_path = str(model.get("class_path", "")) if model is not None else ""
    if args is None or "." not in class_path:
        return
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)  # the parser has imported it: the command named it
    asks = getattr(cls, "data_defaults", None)
    if asks is None:
        return
    values, source = asks(dict(model.get("init_args") or {}))
    if args.get("mean") is not None or args.get("std") is not None:
        values = {k: v for k, v in values.items() if k not in ("mean", "std")}  # given: the data module checks them
    used = []
    for key, value in values.items():
        if key in args and args[key] is None and value is not None:
            args[key] = value
            used.append(f"{key} {value}")
    if used:
        rank_zero_info(f"{source}: data " + ", ".join(used))
