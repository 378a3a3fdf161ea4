"""Data a Python caller holds in memory, as data modules: rows of a pandas DataFrame (:class:`FrameDataModule`, the
table module's reading, encoding and splitting on a frame instead of a file) and a batch of images
(:class:`ArrayImageDataModule`). The scikit-learn estimators (``lit_nets.sklearn``) train on them."""

from __future__ import annotations

import math
from typing import Any

import torch

from lit_nets.core.data.images import ImageDataModule
from lit_nets.core.data.splits import Splits
from lit_nets.core.data.tabular import CSVDataModule
from lit_nets.core.errors import UserError


class FrameDataModule(CSVDataModule):
    """Rows held in memory: a pandas DataFrame with the feature columns and the target column, encoded, split and
    batched as :class:`~lit_nets.core.data.tabular.CSVDataModule` does a file's (text categories, missing values,
    a value target or several labels). ``val_fraction`` 0: no validation rows (train on every row).

    Args:
        frame: the rows, the target column(s) among them.
        name: what messages call the rows (as they name a file).
        **kwargs: :class:`~lit_nets.core.data.tabular.CSVDataModule`'s arguments but the paths.
    """

    not_hyperparameters = (*CSVDataModule.not_hyperparameters, "frame")  # rows are data, not a setting
    needs_validation = False

    def __init__(self, frame: Any, name: str = "the DataFrame", **kwargs: Any) -> None:
        self.frame = frame
        super().__init__(path=name, test_fraction=kwargs.pop("test_fraction", 0.0), **kwargs)

    def _read(self, path: str, what: str) -> Any:
        if path != self.path:  # a val_path, test_path or predict_path: a file as the table module reads it
            return super()._read(path, what)
        if self.frame.empty:
            raise UserError(f"{path} has no rows")
        return self.frame


class ArrayImageDataModule(ImageDataModule):
    """A batch of images held in memory, uint8 ``(N, C, H, W)``, with a class index each: split into training and
    validation images (stratified, seeded), or all for training with ``val_fraction`` 0; the training split's
    pixel statistics, augmentation on the batch as the other image modules.

    Args:
        images: uint8 tensor ``(N, C, H, W)``.
        labels: a class index per image, ``(N,)``.
        class_names: a name per class index.
        val_fraction: share of the images held out for validation (0: none).
        **kwargs: :class:`~lit_nets.core.data.images.ImageDataModule`'s arguments (augment, batch_size, seed, ...).
    """

    not_hyperparameters = (*ImageDataModule.not_hyperparameters, "images", "labels")

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        class_names: list[str],
        val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise UserError(f"images: give uint8 (N, C, H, W) with a label each, got {tuple(images.shape)}")
        if not 0.0 <= val_fraction < 1.0:
            raise UserError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self.images, self.labels, self.names, self.val_fraction = images, labels.long(), list(class_names), val_fraction

    def load(self) -> Splits:
        source = f"{len(self.images):,} images in memory ({'x'.join(map(str, self.images.shape[1:]))})"
        every = torch.arange(len(self.labels))
        rest, val = every, every[:0]
        if self.val_fraction > 0:
            rest, val = self.validation_split(
                self.labels, self.val_fraction, self.seed, source=source, unit="images", needed=2,
                apart="val_fraction 0", names=self.names,
            )  # fmt: skip
        x, y = self.images, self.labels
        return Splits(train=(x[rest], y[rest]), val=(x[val], y[val]), test=None, class_names=self.names, source=source)


def image_batch(given: Any, image_shape: tuple[int, ...] | None = None, scale: float | None = None) -> Any:
    """Images a Python caller holds, as a uint8 tensor ``(N, C, H, W)`` and the scale applied to floats:
    ``(N, H, W)`` grey, ``(N, H, W, C)`` or ``(N, C, H, W)`` with 1, 3 or 4 channels, or rows of flattened pixels
    ``(N, C*H*W)`` shaped by ``image_shape`` (default: a square grey image, as scikit-learn's digits and OpenML's
    mnist_784 hold theirs). uint8 values are taken as they are; floats are scaled by ``scale`` (default: 255 for
    values within [0, 1], else 255 over the largest value), which a caller keeps for the images it predicts."""
    import numpy as np

    array = np.asarray(given)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UserError(f"images: give numbers (uint8 pixels or floats), got an array of {array.dtype}")
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        shape = tuple(image_shape) if image_shape else (1, side, side)
        if math.prod(shape) != array.shape[1]:
            raise UserError(
                f"images: rows of {array.shape[1]} pixels are not {'x'.join(map(str, shape))} images; give "
                "image_shape (channels, height, width), or arrays (N, H, W) / (N, H, W, C)"
            )
        array = array.reshape(len(array), *shape)
    elif array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        array = array.transpose(0, 3, 1, 2)  # channels last -> first
    elif array.ndim != 4:
        raise UserError(f"images: an array of shape {array.shape} is not a batch of images (N, H, W[, C])")
    if array.dtype != np.uint8:
        finite = np.isfinite(array)
        if not finite.all():
            raise UserError("images: an image holds NaN or an infinite value; give finite pixel values")
        if scale is None:
            top = float(array.max()) if array.size else 1.0
            scale = 255.0 if top <= 1.0 else 255.0 / top
        array = np.clip(array.astype(np.float32) * scale, 0, 255).round()
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.uint8)), (1.0 if scale is None else scale)
