"""What a run says when it ends: the summary of fit (best checkpoint, score, where the files are), why it stopped
early, what predict wrote, and that a resumed run had already finished."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_nets.train.callbacks import (
    main_checkpoint,
)

log = logging.getLogger(__name__)


def say_if_finished(checkpoint: dict[str, Any], config: Any, given: str) -> None:
    """A warning when ``fit --ckpt_path`` resumes a run that has nothing left to train: Lightning then only tests
    it, which reads like a training run that did nothing."""
    try:
        done = int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return
    stopper = next(
        (
            v
            for k, v in (checkpoint.get("callbacks") or {}).items()
            if k.startswith("EarlyStopping") and isinstance(v, dict)
        ),
        None,
    )
    max_epochs = config.trainer.get("max_epochs")
    if stopper and stopper.get("stopped_epoch"):
        why = f"early stopping ended it after epoch {stopper['stopped_epoch']}"
        more = "a larger --early_stopping.patience (or --early_stopping null) with a larger --trainer.max_epochs"
    elif max_epochs is not None and max_epochs >= 0 and done >= max_epochs:
        why = f"it ran all {done} of --trainer.max_epochs {max_epochs} epochs"
        more = f"a larger --trainer.max_epochs (e.g. {2 * max(done, 1)})"
    else:
        return
    if rank_zero_only.rank == 0:
        log.warning(
            "--ckpt_path %s: that run has finished (%s), so fit only tests it again; to train it further give %s, or "
            "start a new run from its weights with --model.init_from %s",
            given,
            why,
            more,
            given,
        )


def run_summary(
    trainer: Any,
    log_dir: str | None,
    best: str,
    last: str,
    test_results: list[dict[str, float]],
    source: str,
    stopped: str = "",
) -> str:
    """A few lines that say where a run's logs and checkpoints are and how it did (``stopped``: what early stopping
    did, :func:`stopped_early`)."""
    lines = ["", "=" * 100]
    if log_dir:
        root = Path(log_dir).parent
        kinds = {type(logger).__name__ for logger in trainer.loggers}
        view = f"view: tensorboard --logdir {root}" if "TensorBoardLogger" in kinds else ""
        if "CSVLogger" in kinds:
            view = f"metrics: {Path(log_dir) / 'metrics.csv'}"
        lines.append(f"Run folder:   {log_dir}" + (f"    ({view})" if view else ""))
        if "debug" in Path(log_dir).parts:
            lines.append(
                f"Debug run:    not what --ckpt_path best / last find for other commands (they look in "
                f"{Path(log_dir).parent.parent}/); name this run's folder to use it"
            )
        lines.append(f"Config:       {Path(log_dir) / 'config.yaml'}")
    ckpt = main_checkpoint(trainer)
    if best:
        score = ckpt.best_model_score
        score_text = f" ({ckpt.monitor} {float(score):.4f})" if score is not None else ""
        lines.append(f"Best:         {best}{score_text}")
    if last:
        lines.append(f"Last:         {last}    (resume: --ckpt_path last)")
    if stopped:
        lines.append(f"Stopped:      {stopped}")
    if test_results:
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted(test_results[0].items()))
        lines.append(f"Test (best):  {metrics}")
    if source:
        lines.append(f"Data:         {source}")
    tracked = next((c for c in trainer.callbacks if getattr(c, "logger", None) is not None and c.enabled), None)
    if tracked is not None and hasattr(tracked, "resolved_uri"):
        lines.append(f"MLflow:       {tracked.describe()}")
    lines.append("=" * 100)
    return "\n".join(lines)


def stopped_early(trainer: Any) -> str:
    """What early stopping did in a run, for its summary: at which epoch it stopped (or that it did not), and which
    checkpoint was kept; empty when the run had no early stopping."""
    from lightning.pytorch.callbacks import Timer

    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    ckpt = main_checkpoint(trainer)
    kept = ""
    if ckpt is not None and ckpt.best_model_path:
        kept = f"; kept {Path(ckpt.best_model_path).name}, the best by {ckpt.monitor}"
    out_of_time = timer is not None and timer.time_remaining("train") is not None and timer.time_remaining("train") <= 0
    if out_of_time and not (stopper is not None and stopper.stopped_epoch):
        limit = timer.time_elapsed("train") + timer.time_remaining("train")  # --trainer.max_time, in seconds
        return (
            f"by the time limit (trainer.max_time, {limit:g} s) after {trainer.current_epoch} of max_epochs "
            f"{trainer.max_epochs} epochs{kept}"
        )
    if stopper is None:
        return ""
    if not stopper.stopped_epoch:
        return (
            f"ran all {trainer.current_epoch} epochs (early stopping on {stopper.monitor}, patience "
            f"{stopper.patience}, did not trigger){kept}"
        )
    return (
        f"early, after epoch {stopper.stopped_epoch} (counted from 0, as in checkpoint names; max_epochs "
        f"{trainer.max_epochs}): {stopper.monitor} had not improved for {stopper.patience} validations (best "
        f"{float(stopper.best_score):.4f}){kept}"
    )
