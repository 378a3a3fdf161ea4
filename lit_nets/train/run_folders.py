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


def logs_root(config: Any) -> Path:
    """The folder that holds the runs (``lightning_logs`` under the logger's save_dir), from the config."""
    init = logger_args(config)
    if init is not None and init.get("save_dir") is not None:
        return Path(logger_save_dir(config)) / str(init.get("name") or "lightning_logs")
    return Path(config.trainer.default_root_dir or ".") / "lightning_logs"


def logger_args(config: Any) -> Any:
    """The init_args of the configured logger (None when there is none, or it is not a class_path config)."""
    logger = config.trainer.logger
    return logger.get("init_args") if hasattr(logger, "get") else None


def logger_save_dir(config: Any) -> str:
    """The logger's save_dir: ``--trainer.default_root_dir`` moves the default logger (save_dir ``.``) with it,
    as it moves Lightning's own default logger; a save_dir the user set stays where it is."""
    save_dir = str(logger_args(config).save_dir)
    root = config.trainer.default_root_dir
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


def weights_to_data(config: Any) -> None:
    """A backbone's weights say how their images were prepared: size, centre crop, normalisation (their metadata,
    :func:`lit_nets.core.models.backbones.weights_info`). Each data argument left null (a folder's ``image_size``,
    ``crop_pct``, ``image_channels``, ``mean`` / ``std``) takes the weights' value, so the data module resizes and
    the model normalises as the weights expect; a value given in the config or on the command line is kept."""
    model, data = config.get("model"), config.get("data")
    if model is None or data is None or not str(model.get("class_path", "")).endswith(".BackboneClassifier"):
        return
    from lit_nets.core.models.backbones import weights_info

    init = model.get("init_args") or {}
    info = weights_info(init.get("backbone", "resnet18"), init.get("weights", "DEFAULT"))
    args = data.get("init_args")
    if args is None:
        return
    values = {
        "image_size": info.image_size,
        # a centre crop repeats how pretrained weights saw their images; random weights saw none
        "crop_pct": info.crop_pct if info.mean is not None else None,
        "image_channels": 3,
        "mean": info.mean,
        "std": info.std,
    }
    if args.get("mean") is not None or args.get("std") is not None:
        del values["mean"], values["std"]  # given (both, or one: the data module says what is wrong)
    used = []
    for name, value in values.items():
        if name in args and args[name] is None and value is not None:
            args[name] = value
            used.append(f"{name} {value}")
    if used:
        rank_zero_info(f"Backbone {init.get('backbone')}: {info.described}: data " + ", ".join(used))
