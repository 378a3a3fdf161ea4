"""The MNIST-family data module: offline sample, seeded splits, torchvision files, clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from helpers.cli import write_idx

from lit_nets.core.data.statistics import channel_stats
from lit_nets.core.errors import UserError
from lit_nets.data import MNISTDataModule


def offline(tmp_path: Path, **kwargs) -> MNISTDataModule:
    return MNISTDataModule(data_dir=str(tmp_path / "data"), download=False, **kwargs)


def test_offline_mnist_uses_the_shipped_sample_and_says_so(tmp_path: Path, caplog) -> None:
    dm = offline(tmp_path)
    with caplog.at_level(logging.WARNING, logger="lit_nets"):
        dm.setup("fit")
    assert "OFFLINE SAMPLE" in caplog.text and "NOT full-MNIST" in caplog.text
    assert "sample" in dm.source and "NOT the full MNIST" in dm.hparams_initial["data_source"]
    (xt, yt), (_, yv), (_, ys) = dm.splits.train, dm.splits.val, dm.splits.test
    assert (len(yt), len(yv), len(ys)) == (3600, 400, 1000)
    assert xt.dtype == torch.uint8 and xt.shape[1:] == (1, 28, 28)
    assert torch.bincount(ys).tolist() == [100] * 10  # stratified: every digit equally in test
    assert dm.num_classes == 10 and dm.class_names == [str(i) for i in range(10)]
    assert dm.input_shape == [1, 28, 28]
    # nothing was written where a later run could take it for full MNIST
    assert not (tmp_path / "data").exists()


def test_the_split_seed_is_really_used(tmp_path: Path) -> None:
    a, b, c = offline(tmp_path, seed=1), offline(tmp_path, seed=1), offline(tmp_path, seed=2)
    assert torch.equal(a.splits.val[0], b.splits.val[0])
    assert not torch.equal(a.splits.val[0], c.splits.val[0])
    assert torch.equal(a.splits.test[0], c.splits.test[0]), "the sample's test set must not move with the seed"


def test_a_few_batches_of_a_held_out_split_hold_every_class(tmp_path: Path) -> None:
    """The sample is sorted by class; its test and validation splits are not, so ``limit_test_batches`` (the debug
    overlay: 4 batches) measures every digit. Before, the first batches held digits 0-2 only: test/acc 0.87 beside
    test/f1 0.38."""
    dm = offline(tmp_path)
    for split in (dm.splits.test, dm.splits.val):
        assert torch.bincount(split[1][:64], minlength=10).min() >= 1, torch.bincount(split[1][:64])


def test_normalisation_is_measured_on_the_training_split(tmp_path: Path) -> None:
    dm = offline(tmp_path)
    x = dm.splits.train[0].float() / 255
    assert dm.mean == pytest.approx([x.mean().item()], abs=1e-4)
    assert dm.std == pytest.approx([x.std().item()], abs=1e-3)
    rgb = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(rgb)
    assert mean == pytest.approx((rgb.float() / 255).mean(dim=(0, 2, 3)).tolist(), abs=1e-4)
    assert std == pytest.approx((rgb.float() / 255).std(dim=(0, 2, 3)).tolist(), abs=1e-3)


def test_loaders_hand_out_whole_uint8_batches_by_index(tmp_path: Path) -> None:
    dm = offline(tmp_path, batch_size=128)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = list(loader)
    assert [len(y) for _, y in batches] == [128] * 28 + [16]
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape == (128, 1, 28, 28) and y.dtype == torch.int64
    seen = torch.cat([y for _, y in batches])
    assert torch.equal(seen.sort().values, dm.splits.train[1].sort().values), "one epoch covers every image once"
    second_epoch = torch.cat([y for _, y in loader])
    assert not torch.equal(second_epoch, seen), "each epoch draws a new order"
    again = torch.cat([y for _, y in dm.train_dataloader()])
    assert torch.equal(again, seen), "the order is seeded: a new loader repeats it"


def test_augmentation_moves_each_image_differently(tmp_path: Path) -> None:
    from lit_nets.core.data.images import random_affine

    torch.manual_seed(0)
    x = offline(tmp_path).splits.train[0][:1].float().repeat(8, 1, 1, 1) / 255
    out = random_affine(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert len({round(float(img.sum()), 3) for img in out}) == 8


def test_torchvision_files_in_data_dir_are_used_instead_of_the_sample(tmp_path: Path, sample) -> None:
    images, labels = sample
    raw = tmp_path / "data" / "KMNIST" / "raw"
    write_idx(raw, "train", images[:4000, 0], labels[:4000], gzipped=False)
    write_idx(raw, "t10k", images[4000:, 0], labels[4000:], gzipped=False)
    dm = MNISTDataModule(dataset="KMNIST", data_dir=str(tmp_path / "data"), download=False, val_fraction=0.25)
    assert dm.source.startswith("KMNIST (torchvision")
    assert (len(dm.splits.train[1]), len(dm.splits.val[1]), len(dm.splits.test[1])) == (3000, 1000, 1000)
    assert dm.class_names[:3] == ["o", "ki", "su"]
    assert torch.equal(dm.splits.test[0], images[4000:])


def test_mnist_without_the_sample_fallback_names_the_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"MNIST is not in .*MNIST/raw/ and download was off.*allow_sample is off"):
        offline(tmp_path, allow_sample=False).setup("fit")


def test_other_datasets_offline_say_what_was_tried_and_where_files_go(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        offline(tmp_path, dataset="FashionMNIST").setup("fit")
    message = str(err.value)
    assert "FashionMNIST/raw/" in message and "train-images-idx3-ubyte.gz" in message


@pytest.mark.parametrize(
    ("kwargs", "words"), [({"batch_size": 0}, "batch_size"), ({"val_fraction": 1.5}, "val_fraction")]
)
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict, words: str) -> None:
    with pytest.raises(UserError, match=words):
        offline(tmp_path, **kwargs)
