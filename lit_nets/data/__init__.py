"""Data modules: everything a model trains on, held in memory as tensors."""

from lit_nets.data.base import TensorDataModule
from lit_nets.data.folder import ImageFolderDataModule
from lit_nets.data.images import ImageDataModule
from lit_nets.data.mnist import MNISTDataModule
from lit_nets.data.tabular import CSVDataModule

__all__ = ["CSVDataModule", "ImageDataModule", "ImageFolderDataModule", "MNISTDataModule", "TensorDataModule"]
