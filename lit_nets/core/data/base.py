"""In-memory data modules: decode once, keep tensors, batch by index.

A data set is a few tensors held in memory (images as uint8). The loaders hand whole batches out by index
(``dataset[list_of_indices]``), so there is no per-sample Python work and no collate step; normalisation
lives in the model and augmentation runs on the batch on its device (``on_after_batch_transfer``).

The loader is torch's own ``DataLoader`` with a sampler of whole index batches and ``batch_size=None``, so
Lightning's machinery (device transfer, pinning) applies unchanged; the training loader also keeps its place in
the epoch in checkpoints (:class:`ResumableLoader`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.accelerators import CUDAAccelerator
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from lit_nets.core import private_api
from lit_nets.core.errors import UserError


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


# what the data gives a model (the CLI links these); a model cannot be rebuilt without the first three
DATA_ARGS = ("num_classes", "input_shape", "mean", "std", "class_names", "class_weights", "schema")
# The data values of the trained model a command runs on (test, predict, explain, export, serve: a checkpoint's
# schema, classes, image size and statistics), handed to the data modules built inside :func:`trained_values`, so
# that new files are encoded as the model was trained. A context variable because jsonargparse builds the data
# module from the config, and a checkpoint's record is no config value; the CLI and ``checkpoint_data`` set it.
TRAINED: ContextVar[dict[str, Any] | None] = ContextVar("TRAINED", default=None)


@contextmanager
def trained_values(values: dict[str, Any] | None) -> Iterator[None]:
    """Data modules built inside get ``values`` (a checkpoint's :data:`DATA_ARGS`) as their ``trained``."""
    token = TRAINED.set(values)
    try:
        yield
    finally:
        TRAINED.reset(token)


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


class TensorDataModule(LightningDataModule):
    """Base for data modules whose splits fit in memory as tensors.

    Subclasses implement :meth:`load`; the base makes the loaders and exposes what the CLI links into the
    model (``num_classes``, ``input_shape``, ``class_names``, ``mean``, ``std``). Loading happens once, on
    first use of any of these or at ``setup``.

    A subclass takes its own arguments and ``**kwargs`` for these common ones, which it passes on with
    ``super().__init__(**kwargs)``: jsonargparse follows that call, so ``fit --help`` and the configs show the common
    arguments with every data module, documented here once. The base records the arguments of the whole chain as
    hyper-parameters, but those named in :attr:`not_hyperparameters`.

    Args:
        batch_size: samples per batch.
        num_workers: DataLoader worker processes; 0 is right for in-memory tensors (workers would only add
            inter-process copies); use some when a folder of images is streamed from disk.
        seed: seed of the train/validation split and of the shuffling order.
        class_weights: ``balanced`` weights the loss of each class by n_samples / (n_classes * n_class) of the
            training split, for imbalanced data; none by default.
        fold: validate on fold ``fold`` (0-based) of ``folds`` stratified, seeded folds of the data that would
            otherwise be split into training and validation, and train on the others (k-fold cross-validation,
            one fold per run); the test split is the same for every fold. None: the usual ``val_fraction`` split.
        folds: how many folds ``fold`` counts (at least 2; every class needs at least that many members).
    """

    # arguments that are not hyper-parameters: Lightning merges the model's and the data's into one record and
    # refuses differing values under one key (a data module's given ``mean`` / ``std`` reach the model as measured
    # values through the CLI's links; the run's config.yaml keeps them as given)
    not_hyperparameters: tuple[str, ...] = ()

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 42,
        class_weights: Literal["balanced"] | None = None,
        fold: int | None = None,
        folds: int = 5,
    ) -> None:
        super().__init__()
        self.trained = TRAINED.get()  # a checkpoint's data values (see trained_values), or None
        self.save_hyperparameters(ignore=list(self.not_hyperparameters))  # the subclass's arguments too
        if batch_size < 1:
            raise UserError(f"data.batch_size must be a positive integer, got {batch_size}")
        if folds < 2:
            raise UserError(f"data.folds must be 2 or more (a single fold leaves nothing to train on), got {folds}")
        if fold is not None and not 0 <= fold < folds:
            raise UserError(f"data.fold must be one of 0..{folds - 1} (data.folds is {folds}), got {fold}")
        self.fold, self.folds = fold, folds
        if num_workers < 0:
            raise UserError(f"data.num_workers must be 0 or more, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.class_weighting = class_weights  # the property ``class_weights`` is the weights themselves
        self.stage: str | None = None
        self._splits: Splits | None = None

    # -- what subclasses provide ----------------------------------------------------------------------------
    def load(self) -> Splits:
        """Load every split into memory (subclasses implement this)."""
        raise NotImplementedError

    def normalization(self, splits: Splits) -> tuple[list[float] | None, list[float] | None]:
        """Mean and std the model should normalise its inputs with; none by default."""
        return None, None

    def validation_split(
        self,
        labels: torch.Tensor,
        fraction: float,
        seed: int,
        *,
        source: str,
        unit: str,
        needed: int,
        apart: str,
        names: Sequence[str] = (),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, validation) indices into ``labels``: fold :attr:`fold` of :attr:`folds` when a fold is asked
        for, else ``fraction`` held out as :func:`hold_out` does. Every data module splits its validation data
        here, so cross-validation works the same for all of them (and a CSV schema or the images' statistics are
        fitted on the fold's training part only)."""
        if self.fold is None:
            return hold_out(
                labels, fraction, seed, split="validation", source=source, unit=unit, needed=needed, apart=apart
            )
        counts = torch.bincount(labels)
        smallest = int(counts[counts > 0].min())
        if smallest < self.folds:
            c = int(torch.where(counts == smallest)[0][0])
            name = names[c] if c < len(names) else str(c)
            raise UserError(
                f"{source}: class {name!r} has {smallest} {unit}, fewer than data.folds={self.folds}: every class "
                f"needs {unit} in every fold; "
                + (f"use data.folds {smallest} or fewer" if smallest >= 2 else f"add {unit} of that class")
            )
        fold = stratified_folds(labels, self.folds, seed)
        held = (fold == self.fold).nonzero().flatten()
        g = torch.Generator().manual_seed(seed + self.fold)
        return (fold != self.fold).nonzero().flatten(), held[torch.randperm(len(held), generator=g)]

    def validation_apart(self) -> None:
        """Refuse a fold when the validation data were given apart: the folds split the training data."""
        if self.fold is not None:
            raise UserError(
                "data.fold splits the training data into folds for validation, but the validation data were given "
                "apart; leave data.fold out, or put the validation data with the training data"
            )

    # -- loading --------------------------------------------------------------------------------------------
    @property
    def splits(self) -> Splits:
        if self._splits is None:
            self._splits = self.load()
            self._mean, self._std = self.normalization(self._splits)
            # recorded with the run's hyper-parameters (Lightning logs the initial ones, so set both)
            self.save_hyperparameters({**self.hparams, "data_source": self._splits.source})
        return self._splits

    def setup(self, stage: str) -> None:
        self.stage = stage
        self.splits  # noqa: B018 (loads once)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_names(self) -> list[str]:
        return list(self.splits.class_names)

    @property
    def input_shape(self) -> list[int]:
        data = next(d for d in (self.splits.train, self.splits.test, self.splits.predict) if d is not None)
        return list(first_inputs(data, 1).shape[1:])

    @property
    def mean(self) -> list[float] | None:
        self.splits  # noqa: B018
        return self._mean

    @property
    def std(self) -> list[float] | None:
        self.splits  # noqa: B018
        return self._std

    def train_class_counts(self) -> list[int]:
        """Samples per class in the training split."""
        return torch.bincount(labels_of(self._need("train")), minlength=self.num_classes).tolist()

    @property
    def class_weights(self) -> list[float] | None:
        """Loss weight per class (``balanced``: inverse frequency in the training split), or None."""
        if self.class_weighting is None:
            return None
        counts = self.train_class_counts()
        total, k = sum(counts), len(counts)
        return [round(total / (k * c), 6) if c else 0.0 for c in counts]

    @property
    def schema(self) -> dict[str, Any] | None:
        """How raw records become inputs (CSV data); None for images."""
        return None

    def model_args(self) -> dict[str, Any]:
        """What this data gives a model (classes, input shape, normalisation, class weights, a CSV schema), as the
        model's arguments: ``CNNClassifier(**dm.model_args())``. The CLI links the same names
        (:data:`DATA_ARGS`) from ``data`` to ``model``."""
        return {name: getattr(self, name) for name in DATA_ARGS}

    @property
    def source(self) -> str:
        """Where the data came from, in words (also logged as the ``data_source`` hyper-parameter)."""
        return self.splits.source

    # -- loaders --------------------------------------------------------------------------------------------
    def _loader(self, data: SplitData, shuffle: bool) -> DataLoader:
        """Tensors: whole batches by index (resumable mid-epoch when shuffled: the training loader). A per-item
        Dataset (streaming from disk): the usual DataLoader."""
        on_gpu = self.trainer is not None and isinstance(self.trainer.accelerator, CUDAAccelerator)
        common: dict[str, Any] = dict(
            num_workers=self.num_workers, pin_memory=on_gpu, persistent_workers=self.num_workers > 0
        )
        if self.num_workers > 0:
            common["prefetch_factor"] = self.prefetch_factor
        if isinstance(data, Dataset):
            generator = torch.Generator().manual_seed(self.seed)
            sampler: Any = RandomSampler(data, generator=generator) if shuffle else SequentialSampler(data)
            return DataLoader(data, sampler=sampler, batch_size=self.batch_size, **common)
        dataset = IndexedTensors(*data, transform=self.train_transform() if shuffle else None)
        batches = EpochBatches(len(dataset), self.batch_size, shuffle, self.seed)
        # the sampler hands out whole batches (batch_size None); the dataset indexes each at once
        loader = (ResumableLoader if shuffle else DataLoader)(dataset, sampler=batches, batch_size=None, **common)
        if shuffle:
            loader.epoch_of = lambda: self.trainer.current_epoch if self.trainer is not None else None
            loader.epoch_length = lambda: self.trainer.num_training_batches if self.trainer is not None else None
            self._train_loader = loader
        return loader

    prefetch_factor = 4  # batches each worker prepares ahead (torch's default is 2): a GPU step is short

    def train_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A per-input augmentation for the training loader (see :class:`IndexedTensors`); none here."""
        return None

    def is_training_batch(self, batch: Any) -> bool:
        """Whether ``batch`` is an (inputs, targets) batch on its way to a training step. Lightning sends the
        model's ``example_input_array`` (a bare tensor, for the model summary at fit start) through the same
        hook while ``trainer.training`` is already set."""
        return isinstance(batch, (tuple, list)) and self.trainer is not None and self.trainer.training

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        loader = getattr(self, "_train_loader", None)
        if loader is not None and self.is_training_batch(batch):
            loader.consumed += 1  # a batch the training step is about to receive
        return batch

    def _need(self, split: str) -> SplitData:
        tensors = getattr(self.splits, split)
        if tensors is None:
            raise UserError(f"{type(self).__name__} has no {split} data in this run")
        return tensors

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._need("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._need("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._need("test"), shuffle=False)

    @property
    def predict_tensors(self) -> SplitData:
        """What ``predict`` runs on: the predict inputs if the data module has some, else the test split."""
        if self.splits.predict is not None:
            return self.splits.predict
        return self._need("test")

    @property
    def predict_ids(self) -> list[Any]:
        """A name per predicted row (a row number, a file name) for the prediction file."""
        if self.splits.predict is not None and self.splits.predict_ids is not None:
            return list(self.splits.predict_ids)
        if self.splits.predict is None and self.splits.test_ids is not None:
            return list(self.splits.test_ids)
        return list(range(size_of(self.predict_tensors)))

    def predict_dataloader(self) -> DataLoader:
        """Batches of ``(x, y, index)``: ``y`` is -1 for unlabelled rows, ``index`` numbers the rows."""
        if isinstance(self.predict_tensors, Dataset):
            return self._loader(WithIndex(self.predict_tensors), shuffle=False)
        x, *rest = self.predict_tensors
        y = rest[0] if rest else torch.full((len(x),), -1, dtype=torch.long)
        return self._loader((x, y, torch.arange(len(x))), shuffle=False)
