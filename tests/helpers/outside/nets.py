"""Models of a user's package: a plain network given to lit_nets' Classifier, and a Classifier subclass."""

from __future__ import annotations

import torch
from torch import nn

from lit_nets.models import Classifier


class SmallCNN(nn.Module):
    """A conv block and a linear head; ``num_classes`` and ``input_shape`` come from the data."""

    def __init__(self, num_classes: int, input_shape: list[int], width: int = 8) -> None:
        super().__init__()
        channels, height, breadth = input_shape
        self.features = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(width * (height // 2) * (breadth // 2), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class TableClassifier(Classifier):
    """A classifier of a user's that builds its own network for a table's encoded rows."""

    def __init__(self, hidden: int = 16, **kwargs) -> None:
        self.hidden = hidden
        super().__init__(**kwargs)

    def build_net(self, num_outputs: int) -> nn.Module:
        width = self.input_shape[0]
        return nn.Sequential(nn.Linear(width, self.hidden), nn.Tanh(), nn.Linear(self.hidden, num_outputs))
