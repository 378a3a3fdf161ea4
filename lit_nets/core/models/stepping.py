"""Several optimiser steps on one batch (``model.step_batch_size``): Lightning's fixed cost per step paid once per
batch.

A training step of a small MLP takes about half a millisecond of arithmetic on our CPU, and Lightning adds about as
much again: the loop, six callback hooks (each called on every callback: about 20 µs a hook with the CLI's 13),
fetching the batch, the logger's bookkeeping. With ``step_batch_size`` the data module gives large batches and the
model cuts each into optimiser steps of that many inputs, by Lightning's manual optimisation (its public
``manual_backward`` and ``LightningOptimizer.step``, so precision, strategies, ``global_step`` and the
``on_before_backward`` / ``on_after_backward`` / ``on_before_optimizer_step`` hooks behave as usual). The
optimiser sees the same steps as with ``data.batch_size`` equal to ``step_batch_size``; what changes:

- the batch hooks (``on_train_batch_start`` / ``end``: e.g. weight averaging, the progress bar) run once per batch;
- Lightning steps no learning-rate schedule under manual optimisation, so this does, from Lightning's own
  ``trainer.lr_scheduler_configs``: ``interval: step`` once per batch (a one-cycle schedule counts Lightning's
  batches, ``trainer.estimated_stepping_batches``), ``interval: epoch`` at the training epoch's end; a plateau
  schedule with ``val/acc`` there (validation has run by then; Lightning keeps no ``monitor`` under manual
  optimisation);
- ``trainer.gradient_clip_val`` and ``accumulate_grad_batches`` are Lightning's automatic optimisation's: with
  ``step_batch_size`` Lightning refuses them.

By hand: Lightning has no option for several optimiser steps per batch (Keras calls it ``steps_per_execution``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lit_nets.core.errors import UserError
from lit_nets.core.models.optimizing import PLATEAU_MONITOR


def automatic(step_batch_size: int | None) -> bool:
    """Whether Lightning's automatic optimisation trains (no ``step_batch_size``); one line for a size that cannot be
    one."""
    if step_batch_size is not None and step_batch_size < 1:
        raise UserError(f"model.step_batch_size must be at least 1 (inputs per optimiser step), got {step_batch_size}")
    return step_batch_size is None


def fused_training_step(model: Any, batch: Any, batch_idx: int, step: Callable[[Any, int], torch.Tensor]) -> None:
    """Cut ``batch`` (inputs, targets) into steps of ``model.hparams.step_batch_size`` inputs, in order, and take an
    optimiser step on each: a shuffled epoch's order does not depend on the batch size, so these are the steps that
    ``data.batch_size: step_batch_size`` takes. ``step`` gives a part's loss (the usual training step's body, which
    counts the epoch's loss and accuracy and logs). Nothing is returned: manual optimisation needs no loss."""
    x, y = batch[0], batch[1]
    if not isinstance(x, torch.Tensor):
        raise UserError(
            f"model.step_batch_size cuts a batch of tensors; this data module gives {type(x).__name__} inputs: "
            "leave model.step_batch_size out"
        )
    size, opt = model.hparams.step_batch_size, model.optimizers()
    for xs, ys in zip(x.split(size), y.split(size), strict=True):  # the last step takes what is left
        loss = step((xs, ys), batch_idx)
        opt.zero_grad()
        model.manual_backward(loss)
        opt.step()
    step_schedules(model, "step", batch_idx)


def step_schedules(model: Any, interval: str, index: int) -> None:
    """Step the learning-rate schedules of ``interval`` (``step``: after batch ``index`` of the epoch, ``epoch``:
    at the end of epoch ``index``) as Lightning's automatic optimisation does (its training epoch loop's
    ``_update_learning_rates``), ``frequency`` and a plateau's ``monitor`` included."""
    trainer = model.trainer
    for config in trainer.lr_scheduler_configs:
        if config.interval != interval or (index + 1) % config.frequency:
            continue
        if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):  # Lightning keeps no monitor
            value = trainer.callback_metrics.get(config.monitor or PLATEAU_MONITOR)
            if value is None:  # validation off or not run this epoch: nothing to judge the plateau by
                continue
            config.scheduler.step(float(value))
        else:
            config.scheduler.step()
