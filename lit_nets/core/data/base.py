"""In-memory data modules: decode once, keep tensors, batch by index.

A data set is a few tensors held in memory (images as uint8). The loaders hand whole batches out by index
(``dataset[list_of_indices]``), so there is no per-sample Python work and no collate step; normalisation
lives in the model and augmentation runs on the batch on its device (``on_after_batch_transfer``).

The loader is torch's own ``DataLoader`` with a sampler of whole index batches and ``batch_size=None``, so
Lightning's machinery (device transfer, pinning) applies unchanged; the training loader also keeps its place in
the epoch in checkpoints (:class:`ResumableLoader`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.accelerators import CUDAAccelerator
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from lit_nets.core.data.contract import DATA_ARGS
from lit_nets.core.data.loaders import EpochBatches, IndexedTensors, ResumableLoader, WithIndex
from lit_nets.core.data.splits import SplitData, Splits, first_inputs, hold_out, labels_of, size_of, stratified_folds
from lit_nets.core.errors import UserError


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
        batch_size: samples per batch; null: chosen from the data (a table: about 150 steps an epoch, see
            ``lit_nets.core.data.tabular.batch_size_for``; predicting a file: 1024; images: 64).
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
    # the model records the class weights themselves ("balanced" here and its list there would not merge)
    not_hyperparameters: tuple[str, ...] = ("class_weights",)

    def __init__(
        self,
        batch_size: int | None = 64,
        num_workers: int = 0,
        seed: int = 42,
        class_weights: Literal["balanced"] | None = None,
        fold: int | None = None,
        folds: int = 5,
    ) -> None:
        super().__init__()
        self.trained: dict[str, Any] | None = None  # a checkpoint's data values (use_trained), or None
        self.save_hyperparameters(ignore=list(self.not_hyperparameters))  # the subclass's arguments too
        self.auto_batch = batch_size is None  # a subclass chooses once it knows its data
        batch_size = 64 if batch_size is None else batch_size
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

    def use_trained(self, values: dict[str, Any] | None) -> None:
        """Encode new data as a trained model's was (validate, test, predict, explain, export, serve on a
        checkpoint): ``values`` are the checkpoint's data values (:data:`DATA_ARGS`: a CSV schema, the classes, the
        image size and statistics). Given before the data is first read; the CLI and ``checkpoint_data`` do."""
        if self._splits is not None:
            raise RuntimeError("use_trained must come before the data is read")  # our bug: the CLI's order
        self.trained = values

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

    @property
    def value_target(self) -> dict[str, Any] | None:
        """A number to predict (regression): its name, mean, std and range (CSV data with ``task: value``); None for
        classes."""
        return None

    @property
    def multi_label(self) -> bool:
        """Several labels at once (each ``y`` a 0/1 per class name); False here."""
        return False

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
        """Batches of ``(x, y, index)``: ``y`` is -1 for unlabelled rows (NaN for a value target), ``index`` numbers
        the rows."""
        if isinstance(self.predict_tensors, Dataset):
            return self._loader(WithIndex(self.predict_tensors), shuffle=False)
        x, *rest = self.predict_tensors
        value = self.value_target is not None
        y = (
            rest[0]
            if rest
            else torch.full((len(x),), float("nan") if value else -1, dtype=None if value else torch.long)
        )
        return self._loader((x, y, torch.arange(len(x))), shuffle=False)
