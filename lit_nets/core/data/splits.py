"""Splits of in-memory data: the tensors of train / val / test / predict, their sizes and labels, stratified
hold-outs and folds with a fixed seed, and one clear error when a split cannot be made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from lit_nets.core.errors import UserError

Tensors = tuple[torch.Tensor, ...]
"""A split held in memory: ``(inputs, labels)`` (a predict split may be ``(inputs,)``)."""
SplitData = Tensors | Dataset
"""What a split holds: tensors in memory, or a per-item ``Dataset`` that decodes from disk as it is read (a folder
larger than ``max_memory_mb``) and has a ``labels`` tensor. :func:`labels_of`, :func:`size_of` and
:func:`first_inputs` read either."""


@dataclass
class Splits:
    """What a data module loads: each split's data plus what the model must know about them.

    A split that a run does not need may be None (predicting on new files needs no training data).
    ``predict_ids`` names the predict split's rows for the prediction file; ``val_ids`` the validation split's
    (a CSV file's data row, an image's path under the root, an index into the training set), for out-of-fold
    predictions; ``test_ids`` the test split's, for a prediction file of the test split.
    """

    train: SplitData | None
    val: SplitData | None
    test: SplitData | None
    class_names: list[str]
    predict: SplitData | None = None
    predict_ids: list[Any] | None = None
    source: str = ""
    val_ids: list[Any] | None = None
    test_ids: list[Any] | None = None


def labels_of(data: SplitData) -> torch.Tensor:
    """The labels of a split."""
    return data.labels if isinstance(data, Dataset) else data[1]


def size_of(data: SplitData) -> int:
    """How many inputs a split holds."""
    return len(data) if isinstance(data, Dataset) else len(data[0])


def first_inputs(data: SplitData, n: int) -> torch.Tensor:
    """The split's first ``n`` inputs (at most all), stacked as the model takes them."""
    if isinstance(data, Dataset):
        return torch.stack([data[i][0] for i in range(min(n, len(data)))])
    return data[0][:n]


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (rest, held_out) with ``fraction`` of every class held out, seeded.

    With ``fraction > 0``, every class with at least two members keeps at least one in each part. ``rest`` is in the
    data's order; ``held_out`` in a seeded random order, so that a few batches of it (``limit_val_batches``,
    ``limit_test_batches``) hold every class even when the data is sorted by class, as the MNIST sample and
    class folders are.
    """
    g = torch.Generator().manual_seed(seed)
    held, rest = [], []
    for c in labels.unique(sorted=True):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(len(idx) * fraction)
        if len(idx) >= 2 and fraction > 0:
            k = min(max(k, 1), len(idx) - 1)
        held.append(idx[:k])
        rest.append(idx[k:])
    held_out = torch.cat(held)
    return torch.cat(rest).sort().values, held_out[torch.randperm(len(held_out), generator=g)]


def hold_out(
    labels: torch.Tensor, fraction: float, seed: int, *, split: str, source: str, unit: str, needed: int, apart: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`stratified_split` for a split a run needs: when it would come out empty (every class has a single
    member left), or leave nothing to train on, one line that says why and what to do, instead of a run without
    validation, best checkpoint or test. ``needed``: members per class the caller's splits need in all; ``apart``:
    how to give that split's data separately instead."""
    rest, held = stratified_split(labels, fraction, seed)
    if len(held) == 0 or len(rest) == 0:
        counts = torch.bincount(labels)
        counts = counts[counts > 0]
        raise UserError(
            f"{source}: too few {unit} to hold out a {split} split: {len(labels):,} {unit} left in {len(counts):,} "
            f"classes (the largest has {int(counts.max())}); every class needs at least {needed} {unit} for "
            f"training, validation and test. Add {unit}, or give the {split} {unit} apart ({apart})"
        )
    return rest, held


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """The fold (0 .. folds-1) of every element: each class's members, in a seeded random order, dealt to the folds
    in turn, so every fold holds every class in proportion (sizes differ by at most one per class)."""
    g = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(labels), dtype=torch.long)
    start = 0  # where the next class starts dealing, so that the folds' sizes stay within one of each other
    for c in labels.unique(sorted=True):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        fold[idx] = (torch.arange(len(idx)) + start) % folds
        start = (start + len(idx)) % folds
    return fold


def per_class_sample(labels: list[int], most: int, seed: int) -> list[int]:
    """The indices of at most ``most`` members of each class, drawn with ``seed``, in their original order."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in sorted(set(labels)):
        idx = [i for i, label in enumerate(labels) if label == c]
        keep += [idx[i] for i in torch.randperm(len(idx), generator=g)[:most].tolist()]
    return sorted(keep)
