"""Pixel statistics: a histogram per channel (exact on uint8 images, mergeable across files), and the mean and
standard deviation a model normalises with."""

from __future__ import annotations

import torch


def channel_histogram(images: torch.Tensor) -> torch.Tensor:
    """Counts of each uint8 value per channel of images (N, C, H, W) or one image (C, H, W): (C, 256)."""
    per_channel = images.transpose(0, 1) if images.dim() == 4 else images
    return torch.stack([torch.bincount(ch.reshape(-1), minlength=256) for ch in per_channel]).double()


def stats_from_histogram(counts: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the [0, 1] scale from (C, 256) value counts."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum(dim=1, keepdim=True)
    mean = (counts * values).sum(dim=1, keepdim=True) / n
    std = ((counts * (values - mean) ** 2).sum(dim=1, keepdim=True) / n).sqrt()
    return [round(float(m), 4) for m in mean], [round(max(float(s), 1e-3), 4) for s in std]


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the [0, 1] scale.

    Exact, from a 256-bin histogram per channel: no float copy of the whole data set.
    """
    return stats_from_histogram(channel_histogram(images))
