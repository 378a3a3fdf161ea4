"""Dropout whose mask costs a third on a CPU without Intel's MKL path: the recipe's network (configs/tabular_best.yaml)
spent a fifth (2 threads) to a quarter (1 thread) of its InstEval epoch drawing dropout masks.

Written by hand because no library does it: on CPU, torch's ``bernoulli_`` (what ``nn.Dropout`` draws its mask with)
takes MKL's parallel generator only on Intel processors and otherwise draws one double-precision Bernoulli per
element from one serial Mersenne Twister (``bernoulli_scalar_kernel`` in ATen). On our AMD EPYC VM a mask of
256 x 4 x 256 took 1.3 ms, on one core whatever torch's threads, against 0.2 ms for the matrix product beside it.
:class:`CPUDropout` cuts four 16-bit draws from each 64-bit random word of torch's own generator (seeded by
``seed_everything``, so a run repeats) and compares them with ``p``: 0.4 ms for the same mask and multiply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 1 << 16  # a 16-bit lane's values: p is kept to 1/65,536 (0.1 -> 0.100006)


def keep_mask(x: torch.Tensor, p: float) -> torch.Tensor | None:
    """Inverted dropout's multiplier for ``x``: 0 with probability ``p`` (to 1/65,536), else ``1 / (1 - p)``; None
    when ``p`` rounds to 0 or 1 at that resolution (the caller then takes torch's own)."""
    dropped = round(p * LEVELS)
    if not 0 < dropped < LEVELS:
        return None
    n = x.numel()
    # random_(from, to) over the whole 64-bit range (to is exclusive: one value of 2**64 left out), so that each of
    # a word's four lanes is uniform on [-32768, 32767]; random_() alone would leave the top lane's sign bit 0
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
    lanes = words.view(torch.int16)[:n].view(x.shape)
    return (lanes >= dropped - LEVELS // 2).to(x.dtype).mul_(LEVELS / (LEVELS - dropped))


class CPUDropout(nn.Dropout):
    """``nn.Dropout`` (the same ``p``, the same expected output, no parameters: checkpoints load either way) whose
    training mask on CPU comes from :func:`keep_mask`; on other devices, in eval mode and in place it is torch's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self.inplace and x.device.type == "cpu":
            mask = keep_mask(x, self.p)
            if mask is not None:
                return x * mask
        return F.dropout(x, self.p, self.training, self.inplace)


def use_cpu_dropout(module: nn.Module) -> nn.Module:
    """``module`` with each of its ``nn.Dropout`` layers replaced by a :class:`CPUDropout` of the same ``p``."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, CPUDropout(child.p, child.inplace))
        else:
            use_cpu_dropout(child)
    return module
