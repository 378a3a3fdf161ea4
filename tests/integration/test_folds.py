"""k-fold splits, one mechanism for every data module (``data.fold`` of ``data.folds``): the folds' validation parts
cover the data the usual split divides into training and validation exactly once, each class in proportion, the test
split stays the same, and the statistics come from the fold's training part. Real data: wine, MNIST digits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers.cli import CONFIGS, in_process

from lit_nets.core.data.samples import write_csv_sample
from lit_nets.core.errors import UserError
from lit_nets.data import CSVDataModule, ImageFolderDataModule, MNISTDataModule

FOLDS = 3


def rows(x: torch.Tensor) -> set[bytes]:
    """Each input (a CSV row's numbers, an image's pixels) as bytes, to compare splits by content."""
    return {bytes(r.contiguous().numpy().tobytes()) for r in x}


def modules(kind: str, tmp_path: Path, sample) -> callable:
    """A maker of the data module of ``kind`` over real data, taking the fold arguments."""
    if kind == "csv":
        path = write_csv_sample("wine", tmp_path / "wine.csv")
        return lambda **kw: CSVDataModule(path=str(path), target="cultivar", **kw)
    if kind == "folder":
        images, labels = sample
        root = tmp_path / "digits"
        for i in (labels < 4).nonzero().flatten()[::8].tolist():  # 4 classes, 63 images each
            (root / str(int(labels[i]))).mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(images[i, 0].numpy()).save(root / str(int(labels[i])) / f"{i}.png")
        return lambda **kw: ImageFolderDataModule(root=str(root), cache=False, **kw)
    return lambda **kw: MNISTDataModule(data_dir=str(tmp_path / "none"), download=False, **kw)


@pytest.mark.parametrize("kind", ["csv", "folder", "mnist"])
def test_the_folds_validate_on_every_example_once_and_keep_the_test_split(tmp_path: Path, sample, kind: str) -> None:
    make = modules(kind, tmp_path, sample)
    usual = make()
    usual.setup("fit")
    pool = rows(usual.splits.train[0]) | rows(usual.splits.val[0])
    pool_labels = torch.cat([usual.splits.train[1], usual.splits.val[1]])
    seen: list[set[bytes]] = []
    for k in range(FOLDS):
        dm = make(fold=k, folds=FOLDS)
        dm.setup("fit")
        (xt, _), (xv, yv), (xs, ys) = dm.splits.train, dm.splits.val, dm.splits.test
        train, val = rows(xt), rows(xv)
        assert not train & val and train | val == pool, "a fold splits the same data, without overlap"
        assert torch.equal(xs, usual.splits.test[0]) and torch.equal(ys, usual.splits.test[1]), "test is untouched"
        expected = torch.bincount(pool_labels) / FOLDS
        assert (torch.bincount(yv, minlength=len(expected)) - expected).abs().max() <= 1, "stratified"
        seen.append(val)
        again = make(fold=k, folds=FOLDS)
        again.setup("fit")
        assert torch.equal(again.splits.val[0], xv), "seeded"
    assert set().union(*seen) == pool and sum(map(len, seen)) == len(pool), "each example validated once"
    if kind != "csv":  # the images' mean comes from the fold's training part, not from all of them
        means = {round(make(fold=k, folds=FOLDS).mean[0], 6) for k in range(FOLDS)}
        assert len(means) == FOLDS


def test_a_csv_schema_is_fitted_on_the_folds_training_rows(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(write_csv_sample("wine", tmp_path / "wine.csv"))
    path = tmp_path / "wine.csv"
    frame.to_csv(path, index=False)
    fitted = []
    for k in range(FOLDS):
        dm = CSVDataModule(path=str(path), target="cultivar", fold=k, folds=FOLDS)
        dm.setup("fit")
        schema = dm.fitted_schema
        column = next(c for c in schema.numeric if c["name"] == "alcohol")
        assert column["mean"] == pytest.approx(float(dm.splits.train[0][:, 0].double().mean()), rel=1e-6)
        fitted.append(column["mean"])
    assert len(set(fitted)) == FOLDS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fold": 0, "folds": 1}, "data.folds must be 2 or more"),
        ({"fold": 3, "folds": 3}, "data.fold must be one of 0..2 (data.folds is 3), got 3"),
        ({"fold": 0, "folds": 40}, "fewer than data.folds=40: every class needs rows in every fold; use data.folds"),
    ],
)
def test_bad_fold_arguments_are_one_line(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = write_csv_sample("wine", tmp_path / "wine.csv")
    with pytest.raises(UserError, match=re.escape(message)):
        CSVDataModule(path=str(path), target="cultivar", **kwargs).setup("fit")


def test_a_fold_with_validation_given_apart_says_so(tmp_path: Path) -> None:
    path = write_csv_sample("wine", tmp_path / "wine.csv")
    dm = CSVDataModule(path=str(path), target="cultivar", val_path=str(path), fold=0, folds=3)
    with pytest.raises(UserError, match=r"data\.fold splits the training data into folds"):
        dm.setup("fit")


def test_fit_trains_one_fold_from_the_command_line(tmp_path: Path, monkeypatch, capfd) -> None:
    args = (
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--data.init_args.fold",
        "2",
        "--data.init_args.folds",
        "3",
        "--trainer.max_epochs",
        "10",
        "--trainer.enable_progress_bar",
        "false",
    )
    proc = in_process("fit", *args, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hparams = (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text()
    assert "fold: 2" in hparams and "folds: 3" in hparams
