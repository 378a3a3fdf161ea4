"""Loaders of in-memory data: whole index batches out of tensors, in an order that depends on (seed, epoch) alone,
and a training loader that keeps its place in the epoch in a checkpoint (a resumed run serves the batches not yet
trained on)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_nets.core import private_api


class IndexedTensors(Dataset):
    """Tensors of equal length, indexed by one index or by a whole batch of indices at once.

    ``transform``: applied to each input (the first tensor's rows) of a batch, one by one: augmentations that draw
    per image and may crop each differently (torchvision's RandomResizedCrop, RandAugment), run where the loader
    runs (in its worker processes with ``num_workers``).
    """

    def __init__(self, *tensors: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if len({len(t) for t in tensors}) != 1:
            raise ValueError(f"tensors differ in length: {[len(t) for t in tensors]}")
        self.tensors, self.transform = tensors, transform

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, ...]:
        if isinstance(index, list):
            index = torch.as_tensor(index)
        if self.transform is None:
            return tuple(t[index] for t in self.tensors)
        x, *rest = self.tensors
        if isinstance(index, torch.Tensor) and index.dim() == 1:
            inputs = torch.stack([self.transform(x[i]) for i in index.tolist()])
        else:
            inputs = self.transform(x[index])
        return (inputs, *(t[index] for t in rest))


class WithIndex(Dataset):
    """A per-item dataset whose items also carry their position (for the prediction writer)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        return (*self.dataset[i], i)


class EpochBatches(Sampler):
    """Index batches of one epoch. Shuffled, epoch ``e``'s order is the permutation drawn from ``seed + e`` alone, so
    any epoch can be replayed; ``start(epoch, skip)`` sets which epoch the next pass serves and how many of its
    batches were already consumed (a resumed run)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.epoch, self.skip = 0, 0

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def start(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.n)
        yield from order.split(self.batch_size)[self.skip :]


class ResumableLoader(DataLoader):
    """The training loader of in-memory data: a DataLoader whose position in the epoch goes into checkpoints.

    Lightning saves ``state_dict()`` with every checkpoint and hands it back on resume, so a run stopped in the
    middle of an epoch continues with the same epoch's order after the batches it had trained on; with
    ``deterministic`` it ends with the same weights as a run never stopped. ``consumed`` counts the batches
    the training step received (the data module counts them as they reach the device), not those Lightning
    fetched ahead.
    """

    epoch_of: Any = None  # set by the data module: the trainer's current epoch (None without a trainer)
    epoch_length: Any = None  # set by the data module: batches the trainer takes per epoch (limit_train_batches)
    consumed: int = 0
    _resume: tuple[int, int] | None = None
    _passes: int = 0

    @property
    def batches(self) -> EpochBatches:
        """Our sampler, also where Lightning's DistributedSamplerWrapper (DDP) keeps it."""
        return private_api.inner_sampler(self.sampler)

    def __iter__(self):
        if self._resume is not None:
            # The first pass after a checkpoint was loaded (Lightning loads it just before creating the iterator):
            # where the checkpoint left off, whichever epoch the trainer says at this moment.
            epoch, skip = self._resume
            self._resume = None
            if skip >= self._length():  # an older checkpoint saved on an epoch's last batch
                epoch, skip = epoch + 1, 0
        else:
            epoch = self.epoch_of() if self.epoch_of else None
            epoch, skip = (self._passes if epoch is None else epoch), 0  # used on its own: a new order each pass
        self._passes += 1
        if skip and not isinstance(self.sampler, EpochBatches):
            # each process got every world_size-th batch: skipping in the shared order is not done yet
            warnings.warn("resuming mid-epoch across processes restarts that epoch's order", stacklevel=2)
            skip = 0
        self.batches.start(epoch, skip)
        self.consumed = skip
        return super().__iter__()

    def _length(self) -> int | float:
        """Batches of an epoch as the trainer takes them (``limit_train_batches`` included)."""
        length = self.epoch_length() if self.epoch_length else None
        return length if length else len(self.batches)

    def state_dict(self) -> dict[str, int]:
        if self.consumed >= self._length():
            # Saved on the epoch's last batch (a periodic checkpoint, SIGTERM): Lightning resumes with the next
            # epoch, so that is where the loader resumes too, from its first batch.
            return {"epoch": self.batches.epoch + 1, "consumed": 0}
        return {"epoch": self.batches.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["consumed"]))
