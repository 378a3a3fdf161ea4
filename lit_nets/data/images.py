"""Shared by the image data modules: normalisation statistics and augmentation on the batch."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from lit_nets.data.base import Splits, TensorDataModule, channel_stats


def random_affine(
    images: torch.Tensor,
    degrees: float = 10.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
) -> torch.Tensor:
    """A different random rotation, shift and zoom for every image of a float batch (N, C, H, W).

    Written by hand because torchvision's v2 transforms draw one set of parameters per call, so a batch
    tensor would move as one; this draws per image and runs on the batch's device in two kernels.
    """
    n, device = images.shape[0], images.device
    angle = (torch.rand(n, device=device) * 2 - 1) * math.radians(degrees)
    zoom = torch.empty(n, device=device).uniform_(*scale)
    shift = (torch.rand(n, 2, device=device) * 2 - 1) * (2 * translate)  # grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    )
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ImageDataModule(TensorDataModule):
    """Base for image data modules: uint8 (N, C, H, W) tensors in memory.

    Batches reach the model as uint8 (the model scales and normalises them); with ``augment`` the training
    batches are turned into [0, 1] floats and randomly rotated, shifted and zoomed on their device.

    Args:
        augment: random rotation (±10°), shift (±10%) and zoom (0.9-1.1) of training images, per image.
    """

    def __init__(self, augment: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.augment = augment

    @property
    def schema(self) -> dict[str, Any]:
        """What an input must look like (an :class:`~lit_nets.data.schema.ImageSchema`, saved with the model)."""
        from lit_nets.data.schema import ImageSchema

        c, *size = self.input_shape
        return ImageSchema(classes=self.class_names, channels=c, image_size=size).to_dict()

    def normalization(self, splits: Splits) -> tuple[list[float], list[float]]:
        """Per-channel mean and std measured on the training split."""
        return channel_stats(splits.train[0])

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.augment and self.is_training_batch(batch):
            x, *rest = batch
            x = random_affine(x.float().div_(255.0))
            return (x, *rest)
        return batch
