"""A folder's decoded images: decoded on every core, cached, and the cache used only while the files are unchanged
(lit_nets/core/data/decoded.py). A small folder of real digits, with the size from which folders are cached lowered."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest
import torch
from helpers.cli import FULL_MNIST, needs_full_mnist
from PIL import Image

from lit_nets.core.data import decoded
from lit_nets.core.data import folder as folder_module
from lit_nets.data import ImageFolderDataModule


@pytest.fixture
def digits(tmp_path: Path, sample, monkeypatch) -> Path:
    """60 real digits in 3 class folders, and folders of 10 images or more decoded in parallel and cached."""
    monkeypatch.setattr(decoded, "FROM_FILES", 10)
    images, labels = sample
    root = tmp_path / "digits"
    for digit in (0, 1, 2):
        (root / str(digit)).mkdir(parents=True)
        for i in (labels == digit).nonzero().flatten()[:20].tolist():
            Image.fromarray(images[i, 0].numpy()).save(root / str(digit) / f"{i}.png")
    return root


def load(root: Path, cache_dir: Path | None, **kwargs) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(
        root=str(root), cache=cache_dir is not None, cache_dir=str(cache_dir or ""), test_fraction=0.2, **kwargs
    )
    dm.setup("fit")
    return dm


def nothing_decoded(*args, **kwargs):
    raise AssertionError("decoded although the cache holds the images")


def test_a_second_run_reads_the_cache_and_gets_the_same_images(digits: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    plain = load(digits, None)  # no cache
    cache = tmp_path / "cache"
    first = load(digits, cache)
    (written,) = cache.glob("*.pt")
    assert torch.load(written, weights_only=True)["images"].shape == (60, 1, 28, 28)  # plain tensors only
    assert "cached in" in caplog.text
    caplog.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(folder_module, "decode", nothing_decoded)  # a second run must not decode anything
        second = load(digits, cache)
    assert "60 decoded images from the cache" in caplog.text
    for split in ("train", "val", "test"):
        x, y = getattr(plain.splits, split)
        for dm in (first, second):
            assert torch.equal(getattr(dm.splits, split)[0], x) and torch.equal(getattr(dm.splits, split)[1], y)
    assert second.mean == plain.mean and second.std == plain.std


def test_a_changed_file_is_decoded_again_and_the_old_cache_goes(digits: Path, tmp_path: Path, sample) -> None:
    cache = tmp_path / "cache"
    load(digits, cache)
    (old,) = cache.glob("*.pt")
    changed = sorted((digits / "1").iterdir())[0]
    images, labels = sample
    seven = images[(labels == 7).nonzero()[0, 0], 0]
    Image.fromarray(seven.numpy()).save(changed)  # another picture under the same name
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    dm = load(digits, cache)
    (new,) = cache.glob("*.pt")
    assert new != old and not old.exists()
    x = torch.cat([dm.splits.train[0], dm.splits.val[0], dm.splits.test[0]])
    assert any(torch.equal(image[0], seven) for image in x), "the new picture is what the run trains on"


def test_a_bad_file_is_skipped_the_same_way_from_the_cache(digits: Path, tmp_path: Path) -> None:
    (digits / "2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 60)
    cache = tmp_path / "cache"
    first = load(digits, cache, skip_bad_files=True)
    second = load(digits, cache, skip_bad_files=True)
    assert len(first.skipped) == len(second.skipped) == 1 and "broken.png" in second.skipped[0]
    with pytest.raises(Exception, match=r"broken\.png: not a readable image"):
        load(digits, cache)  # from the cache too, the bad file stops a run that does not skip them


def test_a_torn_cache_file_is_decoded_again(digits: Path, tmp_path: Path, caplog) -> None:
    cache = tmp_path / "cache"
    load(digits, cache)
    (written,) = cache.glob("*.pt")
    written.write_bytes(written.read_bytes()[:1000])
    dm = load(digits, cache)
    assert "cannot be read" in caplog.text and dm.splits.train[0].shape[1:] == (1, 28, 28)
    assert torch.load(written, weights_only=True)["images"].shape[0] == 60  # written whole again


def test_without_the_cache_nothing_is_written(digits: Path, tmp_path: Path, decoded_image_cache: Path) -> None:
    before = set(decoded_image_cache.glob("*")) if decoded_image_cache.exists() else set()
    load(digits, None)
    after = set(decoded_image_cache.glob("*")) if decoded_image_cache.exists() else set()
    assert after == before
    dm = ImageFolderDataModule(root=str(digits))  # the default: cached under $XDG_CACHE_HOME
    dm.setup("fit")
    assert len(set(decoded_image_cache.glob("*.pt")) - before) == 1


def test_a_file_changed_with_its_size_and_mtime_kept_is_decoded_again(digits: Path, tmp_path: Path, sample) -> None:
    """``touch -r``, rsync and restores keep a file's size and modification time; its content still changed."""
    cache = tmp_path / "cache"
    load(digits, cache)
    changed = sorted((digits / "1").iterdir())[0]
    images, labels = sample
    before = changed.stat()
    candidates = [images[i, 0] for i in (labels == 7).nonzero().flatten().tolist()]
    for seven in candidates:  # a 7 whose PNG has exactly the old file's size
        buffer = io.BytesIO()
        Image.fromarray(seven.numpy()).save(buffer, format="PNG")
        if len(buffer.getvalue()) == before.st_size:
            break
    else:
        seven = candidates[0]
        Image.fromarray(seven.numpy()).save(buffer := io.BytesIO(), format="PNG")
        pytest.skip("no 7 of the sample has the same PNG size")
    changed.write_bytes(buffer.getvalue())
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))  # as touch -r does
    assert changed.stat().st_size == before.st_size and changed.stat().st_mtime_ns == before.st_mtime_ns
    dm = load(digits, cache)
    x = torch.cat([dm.splits.train[0], dm.splits.val[0], dm.splits.test[0]])
    assert any(torch.equal(image[0], seven) for image in x), "the new picture is what the run trains on"


def test_two_sizes_of_one_folder_keep_their_caches(digits: Path, tmp_path: Path) -> None:
    """fit and predict (or two image sizes) on the same folder must not evict each other's cache."""
    cache = tmp_path / "cache"
    load(digits, cache)
    load(digits, cache, image_size=16)
    assert len(list(cache.glob("*.pt"))) == 2
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(folder_module, "decode", nothing_decoded)
        load(digits, cache)
        load(digits, cache, image_size=16)


@pytest.mark.parametrize("failure", ["read-only", "full"])
def test_a_cache_that_cannot_be_written_leaves_the_run_going_and_no_partial_file(
    digits: Path, tmp_path: Path, monkeypatch, caplog, failure: str
) -> None:
    cache = tmp_path / "cache"
    if failure == "read-only":
        cache.mkdir()
        # root ignores permission bits: a file where the folder should be is a folder nobody can write either
        cache = tmp_path / "a_file" / "cache"
        (tmp_path / "a_file").write_text("")
    else:  # torch.save on a full disk raises RuntimeError after writing part of the file
        real_save = torch.save

        def full_disk(obj, f, *args, **kwargs):
            Path(f).write_bytes(b"PK\x03\x04 torn")
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

        monkeypatch.setattr(torch, "save", full_disk)
    dm = load(digits, cache)
    assert dm.splits.train[0].shape[1:] == (1, 28, 28)
    assert "goes on without a cache" in caplog.text
    leftovers = list(cache.glob("*")) if cache.is_dir() else []
    assert leftovers == [], leftovers
    if failure == "full":
        monkeypatch.setattr(torch, "save", real_save)


@pytest.mark.slow
@needs_full_mnist
def test_the_full_mnist_as_70000_pngs_is_read_from_the_cache_the_second_time(tmp_path: Path, caplog) -> None:
    from torchvision.datasets import MNIST

    root = tmp_path / "mnist70k"
    for split, train in (("train", True), ("test", False)):
        data = MNIST(str(FULL_MNIST), train=train, download=False)
        for i, (x, y) in enumerate(zip(data.data.numpy(), data.targets.tolist(), strict=True)):
            (root / split / str(y)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(root / split / str(y) / f"{i:05d}.png")
    caplog.set_level(logging.INFO)
    cache = tmp_path / "cache"
    cold = load(root, cache)
    assert "cached in" in caplog.text and len(list(cache.glob("*.pt"))) == 1
    caplog.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(folder_module, "decode", nothing_decoded)
        warm = load(root, cache)
    assert "70000 decoded images from the cache" in caplog.text
    assert torch.equal(cold.splits.train[0], warm.splits.train[0]) and len(warm.splits.test[1]) == 10_000
    changed = root / "test" / "3" / sorted(p.name for p in (root / "test" / "3").iterdir())[0]
    Image.fromarray(MNIST(str(FULL_MNIST), train=False, download=False).data[0].numpy()).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    caplog.clear()
    load(root, cache)
    assert "from the cache" not in caplog.text and "cached in" in caplog.text


def test_a_colour_folder_with_grey_pictures_is_cached_with_three_channels(tmp_path: Path, sample, caplog, monkeypatch):
    """RGB files whose three channels are equal decode as one channel (245 of CIFAR-10's first 20,000 JPEGs): the
    mixed shapes kept the folder from being cached, silently, and every run decoded it again. One channel count per
    folder now (any colour image: 3), said in a line every run."""
    from sklearn.datasets import load_sample_image

    monkeypatch.setattr(decoded, "FROM_FILES", 10)
    caplog.set_level(logging.INFO)
    photo = load_sample_image("china.jpg")  # real colour pixels: 28x28 patches of a photograph
    images, _ = sample
    root = tmp_path / "mixed"
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(20):
            y, x = 20 * i, 15 * i + 300 * k
            Image.fromarray(photo[y : y + 28, x : x + 28]).save(root / name / f"photo{i}.png")
        for i in range(10):  # a grey digit stored as RGB, R = G = B
            Image.fromarray(images[10 * k + i, 0].numpy()).convert("RGB").save(root / name / f"grey{i}.png")
    cache = tmp_path / "cache"
    first = load(root, cache)
    (written,) = cache.glob("*.pt")
    assert torch.load(written, weights_only=True)["images"].shape == (60, 3, 28, 28)
    assert "data: 20 of 60 images are grey (R = G = B) among colour ones: every image is used with 3 channels" in (
        caplog.text
    )
    caplog.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(folder_module, "decode", nothing_decoded)
        second = load(root, cache)
    assert "60 decoded images from the cache" in caplog.text and "20 of 60 images are grey" in caplog.text
    assert first.input_shape == second.input_shape == [3, 28, 28]
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(first.splits, split)[0], getattr(second.splits, split)[0])
