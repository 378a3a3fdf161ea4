"""A trained classifier as it is used: the deployable module (normalisation then network, raw inputs in, logits
out), probabilities from logits and the top-k classes. ``Classifier``, ``export``, ``serve`` and the figures share
it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Deployable(nn.Module):
    """A trained classifier as it is deployed: its normalisation, its network, then its temperature (the logits
    divided by it: 1 unless ``model.calibrate`` fitted one); raw inputs in, logits out. It is what ``export`` writes
    and ``serve`` runs."""

    def __init__(self, normalize: nn.Module, net: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.normalize, self.net = normalize, net
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x)) / self.temperature

    @classmethod
    def of(cls, model: Any) -> Deployable:
        """The deployable part of a trained classifier (shares its weights), in eval mode."""
        temperature = getattr(model, "temperature", None)
        deployable = cls(model.normalize, model.net, 1.0 if temperature is None else float(temperature))
        if isinstance(temperature, torch.Tensor):
            deployable.temperature = deployable.temperature.to(temperature.device)
        return deployable.eval()


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
