"""Folders of images: real-world files, bad folders, streaming, transfer learning, predict on a folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.cli import CONFIGS, in_process, quiet_trainer, scalars
from helpers.service import short_png
from lightning.pytorch import seed_everything
from PIL import Image

from lit_nets.core.data.samples import write_png_sample
from lit_nets.core.errors import UserError
from lit_nets.data import ImageFolderDataModule
from lit_nets.models import CNNClassifier

QUIET = ("--trainer.enable_progress_bar", "false")


@pytest.fixture(scope="module")
def digits_png(tmp_path_factory) -> Path:
    """The shipped MNIST sample as a PNG folder (train/ and test/ of class folders)."""
    return write_png_sample("mnist_png", tmp_path_factory.mktemp("png") / "mnist_png")


def model_for(dm: ImageFolderDataModule, **kwargs) -> CNNClassifier:
    return CNNClassifier(**dm.model_args(), **kwargs)


def spread(sample, n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images spread over the sample (which is sorted by class), so every digit appears."""
    images, labels = sample
    index = torch.arange(offset, len(labels), len(labels) // n)[:n]
    return images[index], labels[index]


def small_folder(root: Path, images: torch.Tensor, labels: torch.Tensor, names: list[str]) -> Path:
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy()).save(folder / f"{i:04d}.png")
    return root


# -- training on folders ------------------------------------------------------------------------------------
def test_png_folder_config_trains_to_the_bar(tmp_path: Path, digits_png: Path, monkeypatch) -> None:
    in_process(
        "fit",
        "--config",
        str(CONFIGS / "png_folder.yaml"),
        "--data.root",
        str(digits_png),
        "--trainer.max_epochs",
        "3",
        *QUIET,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        check=True,
    )
    acc = scalars(tmp_path / "lightning_logs" / "version_0")["test/acc"][-1][1]
    assert acc >= 0.90, f"PNG digits, 3 epochs: test accuracy {acc:.4f}"


def test_the_same_code_trains_on_rgb_images_of_another_size(tmp_path: Path, sample) -> None:
    """Coloured 36x30 digits: random stroke and background colours, so colour carries no label."""
    n = 1250
    images, labels = spread(sample, n)
    g = torch.Generator().manual_seed(0)
    grey = torch.nn.functional.interpolate(images.float(), size=(36, 30), mode="bilinear") / 255
    ink, paper = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    rgb = (grey * ink + (1 - grey) * paper).mul(255).round().to(torch.uint8)
    small_folder(tmp_path / "rgb", rgb, labels, [f"digit_{d}" for d in range(10)])
    dm = ImageFolderDataModule(root=str(tmp_path / "rgb"), batch_size=32)
    assert dm.input_shape == [3, 36, 30] and len(dm.mean) == 3
    seed_everything(0)
    model = model_for(dm, batch_norm=True)
    trainer = quiet_trainer(max_epochs=6)
    trainer.fit(model, dm)
    (result,) = trainer.test(model, dm, verbose=False)
    assert result["test/acc"] >= 0.75, result


def test_streaming_from_disk_gives_the_same_batches(tmp_path: Path, digits_png: Path) -> None:
    memory = ImageFolderDataModule(root=str(digits_png), batch_size=100)
    stream = ImageFolderDataModule(root=str(digits_png), batch_size=100, max_memory_mb=0)
    memory.setup("fit"), stream.setup("fit")
    assert isinstance(memory.splits.val, tuple) and not isinstance(stream.splits.val, tuple)
    assert stream.mean == memory.mean and stream.std == memory.std
    (xm, ym), (xs, ys) = next(iter(memory.val_dataloader())), next(iter(stream.val_dataloader()))
    assert torch.equal(xm, xs) and torch.equal(ym, ys)


# -- files from the real world ------------------------------------------------------------------------------
def test_grey_rgba_palette_16bit_and_jpeg_load_with_the_right_values(tmp_path: Path) -> None:
    ramp = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    rgb = np.stack([ramp, ramp // 2, 255 - ramp], axis=-1)
    folder = tmp_path / "files" / "a"
    folder.mkdir(parents=True)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full_like(ramp, 9)])).save(folder / "rgba.png")  # alpha 9: dropped
    Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(folder / "palette.png")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(folder / "grey16.png")  # 16-bit: v * 257
    Image.fromarray(ramp).convert("RGB").save(folder / "grey_as_rgb.jpg", quality=100)
    (tmp_path / "files" / "b").mkdir()
    Image.fromarray(ramp).save(tmp_path / "files" / "b" / "grey.png")
    dm = ImageFolderDataModule(root=str(tmp_path / "files"), val_fraction=0.01, test_fraction=0.0)
    assert dm.input_shape == [3, 16, 16], "colour files make the whole set RGB"
    from lit_nets.core.data.image_io import decode

    expected = torch.from_numpy(rgb).permute(2, 0, 1)
    assert torch.equal(decode(folder / "rgb.png", None, None), expected)
    assert torch.equal(decode(folder / "rgba.png", None, None), expected)
    palette = Image.open(folder / "palette.png").convert("RGB")
    assert torch.equal(decode(folder / "palette.png", None, None), torch.from_numpy(np.array(palette)).permute(2, 0, 1))
    assert torch.equal(decode(folder / "grey16.png", None, None), torch.from_numpy(ramp)[None])
    jpeg = decode(folder / "grey_as_rgb.jpg", None, None)
    assert jpeg.shape == (1, 16, 16), "an RGB JPEG whose channels are equal is grey"
    assert (jpeg.int() - torch.from_numpy(ramp).int()).abs().max() <= 3
    assert torch.equal(
        decode(folder / "grey16.png", 3, (8, 8)), decode(folder / "grey16.png", 1, (8, 8)).expand(3, -1, -1)
    )


def test_hidden_files_and_folders_are_ignored(tmp_path: Path, sample) -> None:
    images, labels = spread(sample, 60)
    root = small_folder(tmp_path / "d", images, labels % 2, ["even", "odd"])
    (root / ".thumbnails").mkdir()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / ".thumbnails" / "x.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "even" / ".hidden.png")
    (root / "even" / "notes.txt").write_text("not an image")
    dm = ImageFolderDataModule(root=str(root), test_fraction=0.0, val_fraction=0.2)
    assert dm.class_names == ["even", "odd"] and len(dm.splits.train[1]) + len(dm.splits.val[1]) == 60


def bad_folder(tmp_path: Path, sample, case: str) -> Path:
    images, labels = spread(sample, 40)
    root = small_folder(tmp_path / "bad", images, labels % 2, ["even", "odd"])
    if case == "empty class":
        (root / "nothing").mkdir()
    elif case == "no images":
        root = tmp_path / "empty"
        (root / "cats").mkdir(parents=True)
        (root / "cats" / "readme.txt").write_text("no pictures here")
    elif case == "corrupt":
        (root / "odd" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    elif case == "truncated":
        data = next((root / "odd").glob("*.png")).read_bytes()
        (root / "odd" / "cut.png").write_bytes(data[: len(data) // 2])
    elif case == "too little image data":  # a valid header and a short IDAT: segfaulted torchvision's decoder
        (root / "odd" / "short.png").write_bytes(short_png())
    elif case == "zero bytes":
        (root / "odd" / "zero.png").write_bytes(b"")
    elif case == "sizes differ":
        Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "odd" / "big.png")
    elif case == "no class folders":
        root = tmp_path / "flat"
        root.mkdir()
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "x.png")
    return root


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty class", r"bad/nothing is an empty class folder"),
        ("no images", r"empty/cats is an empty class folder"),
        ("corrupt", r"bad/odd/broken.png: not a readable image"),
        ("truncated", r"bad/odd/cut.png: not a readable image"),
        ("too little image data", r"bad/odd/short.png: not a readable image \(image file is truncated"),
        ("zero bytes", r"bad/odd/zero.png: not a readable image \(not a PNG or JPEG file\)"),
        ("sizes differ", r"images differ in size: .* is 28x28, .*big.png is 20x20; set data.image_size"),
        ("no class folders", r"flat has no class folders"),
    ],
)
def test_bad_folders_name_the_path(tmp_path: Path, sample, case: str, message: str) -> None:
    root = bad_folder(tmp_path, sample, case)
    with pytest.raises(UserError, match=message):
        ImageFolderDataModule(root=str(root), test_fraction=0.0).setup("fit")


def test_a_folder_without_any_image_says_so_even_when_skipping(tmp_path: Path, sample) -> None:
    root = bad_folder(tmp_path, sample, "no images")
    with pytest.raises(UserError, match=r"empty holds no images \(.png, .jpg, .jpeg\) in its class folders"):
        ImageFolderDataModule(root=str(root), skip_bad_files=True).setup("fit")
    good = small_folder(tmp_path / "good", *spread(sample, 40), list("0123456789"))
    with pytest.raises(UserError, match=r"data.predict_root .*empty/cats holds no images"):
        ImageFolderDataModule(root=str(good), predict_root=str(root / "cats")).setup("predict")


@pytest.mark.parametrize("case", ["empty class", "corrupt", "truncated", "too little image data", "zero bytes"])
def test_skip_bad_files_skips_with_one_warning(tmp_path: Path, sample, caplog, case: str) -> None:
    root = bad_folder(tmp_path, sample, case)
    dm = ImageFolderDataModule(root=str(root), test_fraction=0.0, skip_bad_files=True)
    dm.setup("fit")
    assert len(dm.splits.train[1]) + len(dm.splits.val[1]) == 40 and dm.class_names == ["even", "odd"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.message]
    assert len(warnings) == 1 and "skipped 1 bad file(s)" in warnings[0].message


def test_a_bad_folder_through_the_cli_is_one_line(tmp_path: Path, sample, monkeypatch, capfd) -> None:
    root = bad_folder(tmp_path, sample, "corrupt")
    proc = in_process(
        "fit",
        "--config",
        str(CONFIGS / "png_folder.yaml"),
        "--data.root",
        str(root),
        *QUIET,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "broken.png: not a readable image" in proc.stderr and "data.skip_bad_files=true" in proc.stderr


# -- transfer learning --------------------------------------------------------------------------------------
def test_transfer_loads_the_backbone_keeps_frozen_layers_and_trains_the_head(tmp_path: Path, sample, caplog) -> None:
    caplog.set_level(logging.INFO, logger="lit_nets")
    images, labels = spread(sample, 800)
    source_dm = ImageFolderDataModule(root=str(small_folder(tmp_path / "src", images, labels, list("0123456789"))))
    seed_everything(0)
    source = model_for(source_dm, batch_norm=True)
    trainer = quiet_trainer(max_epochs=2, default_root_dir=tmp_path)
    trainer.fit(source, source_dm)
    trainer.save_checkpoint(tmp_path / "source.ckpt")
    saved = torch.load(tmp_path / "source.ckpt", weights_only=True)["state_dict"]

    # a new task with other classes: is the digit small (0-2), middle (3-6) or large (7-9)?
    images, labels = spread(sample, 800, offset=3)  # other digits of the sample
    group = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])[labels]
    target_dm = ImageFolderDataModule(root=str(small_folder(tmp_path / "dst", images, group, ["low", "mid", "high"])))
    target = model_for(target_dm, batch_norm=True, freeze=[1], init_from=str(tmp_path / "source.ckpt"))
    head_before = target.net.classifier.fc2.weight.detach().clone()
    quiet_trainer(max_epochs=2).fit(target, target_dm)

    frozen = [k for k in saved if k.startswith(("net.features.conv1.", "net.features.bn1."))]
    assert len(frozen) == 6  # conv weight (no bias before BatchNorm); bn weight, bias, running mean, var, count
    state = target.state_dict()
    for key in frozen:
        assert torch.equal(state[key], saved[key]), f"{key} changed although block 1 is frozen"
    assert not torch.equal(state["net.features.conv2.weight"], saved["net.features.conv2.weight"]), "block 2 trains"
    assert target.net.classifier.fc2.weight.shape == (3, 128)
    assert not torch.equal(target.net.classifier.fc2.weight, head_before), "the new head trains"
    # 14: conv1, bn1 (5), conv2, bn2 (5), fc1 weight and bias; the output layer fc2 is new
    assert "loaded 14 tensors: net.features.conv1.weight" in caplog.text
    assert "net.classifier.fc2.weight (output layer, re-initialised)" in caplog.text


def test_init_from_a_checkpoint_of_another_architecture_says_so(tmp_path: Path) -> None:
    other = CNNClassifier(conv_channels=[8])
    torch.save({"state_dict": other.state_dict()}, tmp_path / "other.ckpt")
    model = CNNClassifier(conv_channels=[32, 64], hidden=64, init_from=str(tmp_path / "other.ckpt"))
    with pytest.raises(UserError, match=r"no tensor of .*other.ckpt fits this model"):
        model.setup("fit")


# -- predict on a folder --------------------------------------------------------------------------------------
def test_predict_root_writes_file_label_probability(
    tmp_path: Path, digits_png: Path, sample, monkeypatch, capfd
) -> None:
    train_dir, other = tmp_path / "train", tmp_path / "elsewhere"
    train_dir.mkdir(), other.mkdir()
    here = {"monkeypatch": monkeypatch, "capfd": capfd}
    fit = in_process(
        "fit",
        "--config",
        str(CONFIGS / "png_folder.yaml"),
        "--data.root",
        str(digits_png),
        "--trainer.max_epochs",
        "1",
        *QUIET,
        cwd=train_dir,
        **here,
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    ckpt = next((train_dir / "lightning_logs" / "version_0" / "checkpoints").glob("epoch*.ckpt"))
    new = other / "new_images"
    new.mkdir()
    images, labels = sample
    for i in range(7):
        Image.fromarray(images[4000 + i, 0].numpy()).save(new / f"scan_{i}_is_{int(labels[4000 + i])}.png")
    import torch

    reads, torch_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(str(f)) or torch_load(f, *a, **k))
    proc = in_process(
        "predict",
        "--config",
        str(CONFIGS / "png_folder.yaml"),
        "--ckpt_path",
        str(ckpt),
        "--data.root",
        "nowhere",
        "--data.predict_root",
        "new_images",
        *QUIET,
        cwd=other,
        **here,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # lit_nets reads the checkpoint once (its arguments, the weights check, the data's classes and normalisation;
    # before: 8 times), Lightning once more (through a file object) to restore the model
    assert len(reads) == 2 and reads[0] == str(ckpt), reads
    out = pd.read_csv(ckpt.parent.parent / "new_images.predictions.csv", dtype={"label": str})
    assert out["id"].tolist() == sorted(f"scan_{i}_is_{int(labels[4000 + i])}.png" for i in range(7))
    assert set(out.columns) >= {"id", "label", "probability", "top_k"}
    assert out["probability"].between(0, 1).all()
    right = sum(row.id.split("_is_")[1].removesuffix(".png") == row.label for row in out.itertuples())
    assert right >= 5, out


def test_compare_script_prints_a_table(tmp_path: Path, digits_png: Path, monkeypatch, capsys) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare", Path(__file__).parents[2] / "scripts" / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    monkeypatch.chdir(tmp_path)
    import time

    from lightning.pytorch import Trainer

    fits, real_fit = [], Trainer.fit

    def timed_fit(self, *args, **kwargs):  # the real fit, timed from outside
        started = time.perf_counter()
        real_fit(self, *args, **kwargs)
        fits.append(time.perf_counter() - started)

    monkeypatch.setattr(Trainer, "fit", timed_fit)
    rows = compare.main(
        [
            "--config",
            str(CONFIGS / "png_folder.yaml"),
            "--variants",
            "relu",
            "relu+bn",
            "--epochs",
            "2",
            "--",
            "--data.root",
            str(digits_png),
            "--trainer.limit_train_batches",
            "20",
        ]
    )
    out = capsys.readouterr().out
    assert "| relu | " in out and "| relu+bn | " in out and len(rows) == 2
    assert all(r["sec_per_epoch"] > 0 and 0 <= r["test_acc"] <= 1 for r in rows)
    # the time per epoch is of the training only: never more than the whole fit took (it was about twice that)
    assert all(2 * r["sec_per_epoch"] <= fit for r, fit in zip(rows, fits, strict=True)), (rows, fits)
    assert (tmp_path / "lightning_logs" / "compare" / "results.csv").is_file()


@pytest.mark.parametrize(("per_class", "split"), [(1, "test"), (2, "validation")])
def test_too_few_images_per_class_say_why_and_what_to_do(tmp_path: Path, sample, per_class: int, split: str) -> None:
    """Before: "the test split has no readable images", which did not say why."""
    images, labels = sample
    pick = torch.cat([(labels == c).nonzero().flatten()[:per_class] for c in range(3)])
    root = small_folder(tmp_path / "few", images[pick], labels[pick], ["zero", "one", "two"])
    with pytest.raises(
        UserError,
        match=rf"few: too few images to hold out a {split} split: .* every class needs at "
        rf"least 3 images for training, validation and test\. Add images, or give the {split} images "
        r"apart \(a (val|test)/ folder beside train/ in data.root\)",
    ):
        ImageFolderDataModule(root=str(root)).setup("fit")
