"""The data modules by the names configs use (``class_path: lit_nets.data.CSVDataModule``); they live in
:mod:`lit_nets.core.data`."""

from lit_nets.core.data.base import TensorDataModule
from lit_nets.core.data.folder import ImageFolderDataModule
from lit_nets.core.data.images import ImageDataModule
from lit_nets.core.data.manifest import ImageLabelsDataModule
from lit_nets.core.data.mnist import MNISTDataModule
from lit_nets.core.data.tabular import CSVDataModule

__all__ = [
    "CSVDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "ImageLabelsDataModule",
    "MNISTDataModule",
    "TensorDataModule",
]
