"""An exponential moving average of the weights, for validation, the checkpoints and the test (configs/mnist_best.yaml).

Lightning's ``WeightAveraging`` does the work (the averaged copy, the swap around validation, the averaged weights in
each checkpoint with the trained ones beside them for resuming). Its ``EMAWeightAveraging`` keeps a fixed decay from
the first step, so a short run's average is mostly its initial weights (0.999 over the 870 steps of 30 epochs on the
5,000-digit sample: 0.999^870, 42% of it, is the initial weights); :class:`EMAWeights` warms the decay up as
timm's ``ModelEmaV3`` does: ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average follows the
weights early and settles to ``decay`` (0.999 from about 9,000 steps; a full-MNIST run of 30 epochs takes 12,660).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import WeightAveraging


def warmed_ema(decay: float) -> Any:
    """AveragedModel's ``avg_fn``: the EMA update with the decay warmed up by the number of updates so far (a tensor
    on the weights' device: no host sync)."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")

    @torch.no_grad()
    def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = num_averaged.to(torch.float32)
        rate = torch.clamp((1.0 + n) / (10.0 + n), max=decay)
        return averaged + (current - averaged) * (1.0 - rate)

    return update


class EMAWeights(WeightAveraging):
    """Weights averaged with an exponential moving average after every ``every_n_steps`` optimiser steps; validation,
    checkpoints, test and everything loaded from them use the average.

    Args:
        decay: the average's decay once warmed up (0.999: about the last 1,000 updates count).
        warmup: warm the decay up from 0.1 (timm's rule), so that short runs average recent weights too.
        every_n_steps: update every this many optimiser steps.
        use_buffers: average the buffers too (BatchNorm's running statistics), as Lightning's default.
    """

    def __init__(
        self, decay: float = 0.999, warmup: bool = True, every_n_steps: int = 1, use_buffers: bool = True
    ) -> None:
        from torch.optim.swa_utils import get_ema_avg_fn

        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        average = warmed_ema(decay) if warmup else get_ema_avg_fn(decay)
        super().__init__(use_buffers=use_buffers, avg_fn=average)
        self.decay, self.warmup, self.every_n_steps = decay, warmup, every_n_steps

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """After every ``every_n_steps`` optimiser steps; never at an epoch's end (the steps have done it)."""
        return step_idx is not None and step_idx % self.every_n_steps == 0
