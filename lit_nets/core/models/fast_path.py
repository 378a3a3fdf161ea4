"""The training step's speed measures, kept out of :class:`~lit_nets.core.models.classifier.Classifier`'s logic.

Both are written by hand: neither torchmetrics nor Lightning offers them.

- :class:`EpochTotals`: the training epoch's loss and accuracy as running sums on the device. A step adds its
  summed loss and its correct count to two tensors (four tensor ops, no host sync); a torchmetrics update per step
  cost 0.3 ms here, 2% of a seed CNN step. At the epoch's end the totals go into MeanMetrics, which synchronise
  them across processes. A NaN loss shows as a NaN ``train/loss`` instead of being dropped with a warning.
- :class:`PlainHookName`: Lightning sets ``_current_fx_name`` on the module before every hook it calls (~15 times
  a training step), and ``nn.Module.__setattr__`` first looks through parameters, buffers and sub-modules (~5 µs
  each time). This sets it as a plain attribute (listed in :mod:`lit_nets.core.private_api`).

The process-wide measures (memory allocator, garbage collector, the CUDA check) are in :mod:`lit_nets.core.runtime`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EpochTotals:
    """Loss sum, correct count and inputs seen of one training epoch, accumulated on the loss's device.

    Plain tensors, not buffers: under ``precision: bf16-true`` a buffer would be cast to bf16 and a float sum of
    thousands of losses would lose its digits.
    """

    def __init__(self) -> None:
        self.loss_sum: torch.Tensor | None = None
        self.correct: torch.Tensor | None = None
        self.seen = 0

    def add(self, loss: torch.Tensor, preds: torch.Tensor | None, target: torch.Tensor) -> None:
        """Count one step: ``loss`` is the step's mean loss over ``len(target)`` inputs (``preds`` None: no
        accuracy, a value's)."""
        if self.loss_sum is None:
            zero = torch.zeros((), device=loss.device)
            self.loss_sum, self.correct = zero, zero.long()
        self.loss_sum.add_(loss.detach().float(), alpha=len(target))
        if preds is not None:
            self.correct.add_((preds == target).sum())
        self.seen += len(target)

    def take(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """The epoch's (mean loss, accuracy, inputs seen), and start anew; None when no step was counted."""
        if self.loss_sum is None or not self.seen:
            return None
        result = (self.loss_sum / self.seen, self.correct / self.seen, self.seen)
        self.__init__()
        return result


class PlainHookName(nn.Module):
    """Sets Lightning's ``_current_fx_name`` without ``nn.Module.__setattr__``'s search (see the module
    docstring); put it before LightningModule among the bases."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
