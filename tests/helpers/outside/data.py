"""A data module of a user's package that misses part of lit_nets' contract (no ``class_names``)."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from sklearn.datasets import load_wine
from torch.utils.data import DataLoader, TensorDataset


class NoClassNames(LightningDataModule):
    """scikit-learn's wine as tensors, with ``num_classes`` and ``input_shape`` but no ``class_names``."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes, self.input_shape = 3, [13]
        wine = load_wine()
        self.rows = TensorDataset(torch.tensor(wine.data, dtype=torch.float32), torch.tensor(wine.target))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.rows, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.rows, batch_size=32)
