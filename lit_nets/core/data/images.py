"""Shared by the image data modules: normalisation statistics and augmentation on the batch."""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lit_nets.core.data.base import TensorDataModule
from lit_nets.core.data.splits import Splits
from lit_nets.core.data.statistics import channel_stats
from lit_nets.core.errors import UserError


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


Augment = Literal["none", "affine", "light", "randaugment", "trivialaugment"]
PER_IMAGE = ("light", "randaugment", "trivialaugment")  # presets that crop each image differently


def photo_augmentation(preset: str, size: Sequence[int]) -> Any:
    """torchvision v2 transforms of one uint8 image (C, H, W) to ``size``: a random resized crop (scale 0.35-1 for
    ``light``, 0.08-1 otherwise, as in ImageNet training) and a horizontal flip, then RandAugment (2 operations of
    magnitude 9) or TrivialAugmentWide."""
    from torchvision.transforms import v2

    steps = [
        v2.RandomResizedCrop(list(size), scale=(0.35, 1.0) if preset == "light" else (0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if preset == "randaugment":
        steps.append(v2.RandAugment(num_ops=2, magnitude=9))
    elif preset == "trivialaugment":
        steps.append(v2.TrivialAugmentWide())
    return v2.Compose(steps)


class ImageDataModule(TensorDataModule):
    """Base for image data modules: uint8 (N, C, H, W) tensors in memory.

    Batches reach the model as uint8 (the model scales and normalises them). Augmentation of the training images:
    ``affine`` on the batch on its device; the photo presets per image in the loader (in its worker processes with
    ``num_workers``), since each image is cropped differently; MixUp / CutMix on the batch on its device.

    Args:
        augment: none; affine (true): a random rotation (±10°), shift (±10%) and zoom (0.9-1.1) per image, for
            digits; light: a random resized crop (scale 0.35-1) and a horizontal flip; randaugment / trivialaugment: a
            random resized crop (scale 0.08-1), a flip, then torchvision's RandAugment / TrivialAugmentWide (photos).
        mixup: MixUp's alpha (e.g. 0.2): each training image blended with another of the batch, its label in the
            same shares; 0 is off.
        cutmix: CutMix's alpha (e.g. 1.0): a patch of another image of the batch pasted in, the labels shared by
            area; 0 is off. With both, each batch gets one of the two.
    """

    def __init__(self, augment: bool | Augment = False, mixup: float = 0.0, cutmix: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.augment: str = {True: "affine", False: "none"}.get(augment, augment)  # type: ignore[arg-type]
        if self.augment not in typing.get_args(Augment):
            raise UserError(f"data.augment {augment!r}: choose one of {', '.join(typing.get_args(Augment))}")
        if mixup < 0 or cutmix < 0:
            raise UserError(f"data.mixup and data.cutmix are alphas, 0 (off) or more; got {mixup} and {cutmix}")
        self.mixup, self.cutmix = mixup, cutmix
        self._mixer: Any = None

    @property
    def schema(self) -> dict[str, Any]:
        """What an input must look like (an :class:`~lit_nets.core.data.schema.ImageSchema`, saved with the model)."""
        from lit_nets.core.data.schema import ImageSchema

        c, *size = self.input_shape
        return ImageSchema(classes=self.class_names, channels=c, image_size=size, crop_pct=self.crop_pct).to_dict()

    crop_pct: float | None = None  # evaluation crops the centre of a resized image (folders of photos); else none

    def normalization(self, splits: Splits) -> tuple[list[float], list[float]]:
        """Per-channel mean and std measured on the training split."""
        return channel_stats(splits.train[0])

    def train_transform(self) -> Any:
        """The photo presets' per-image crops and augmentations, to the model's input size."""
        if self.augment not in PER_IMAGE:
            return None
        return photo_augmentation(self.augment, self.input_shape[1:])

    def _mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms import v2

        if self._mixer is None:
            chosen = [
                kind(alpha=alpha, num_classes=self.num_classes)
                for kind, alpha in ((v2.MixUp, self.mixup), (v2.CutMix, self.cutmix))
                if alpha > 0
            ]
            self._mixer = chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)
        return self._mixer(x, y)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if not self.is_training_batch(batch) or (self.augment != "affine" and not (self.mixup or self.cutmix)):
            return batch
        x, y, *rest = batch
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        if self.augment == "affine":
            x = random_affine(x)
        if self.mixup or self.cutmix:
            x, y = self._mix(x, y)  # y: a probability per class
        return (x, y, *rest)
