"""A trained model as it is used: the deployable module (normalisation, network, then the temperature or a value's
units; raw inputs in, logits or values out), probabilities from logits and the top-k classes. ``Classifier``,
``export``, ``serve`` and the figures share it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Deployable(nn.Module):
    """A trained model as it is deployed: its normalisation, its network, then ``* scale + shift``: a classifier's
    logits divided by its temperature (1 unless ``model.calibrate`` fitted one), a value's output in the target's
    units (its std and mean); raw inputs in, logits or values out. It is what ``export`` writes and ``serve`` runs."""

    def __init__(
        self, normalize: nn.Module, net: nn.Module, scale: Any = 1.0, shift: float = 0.0, bounds: Any = None
    ) -> None:
        super().__init__()
        self.normalize, self.net = normalize, net
        # several labels: a temperature each, so a scale per output
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).detach().clone().cpu())
        self.register_buffer("shift", torch.tensor(float(shift)))
        self.bounded = bounds is not None  # a value: within the training targets' range
        low, high = bounds if bounds is not None else (0.0, 0.0)
        self.register_buffer("low", torch.tensor(float(low)))
        self.register_buffer("high", torch.tensor(float(high)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.normalize(x)) * self.scale + self.shift
        return torch.minimum(torch.maximum(out, self.low), self.high) if self.bounded else out

    @classmethod
    def of(cls, model: Any) -> Deployable:
        """The deployable part of a trained model (shares its weights), in eval mode."""
        task = getattr(model, "task", None)
        if task is not None and task.value:
            deployable = cls(model.normalize, model.net, task.std, task.mean, (task.low, task.high))
        else:
            deployable = cls(model.normalize, model.net, 1.0 / torch.as_tensor(getattr(model, "temperature", 1.0)))
        device = next(iter(model.parameters()), torch.empty(0)).device
        return deployable.to(device).eval()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """A probability per class, shape (batch, classes), from logits of either loss: one logit is a binary (BCE)
    model's, the probability of the second class."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return logits.softmax(dim=1)


def top_k(probs: torch.Tensor, names: list[str], k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` likeliest classes of each row of ``probs`` (at most all of them), best first, as (name,
    probability) pairs."""
    top = probs.topk(min(k, len(names)), dim=1)
    return [
        [(names[c], p) for c, p in zip(cs, ps, strict=True)]
        for cs, ps in zip(top.indices.tolist(), top.values.tolist(), strict=True)
    ]
