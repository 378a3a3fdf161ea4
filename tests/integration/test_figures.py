"""What a user looks at: figures after test, curves, Grad-CAM, predictions for every data module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.cli import CONFIGS, in_process, quiet_trainer
from PIL import Image

from lit_nets.train.callbacks import PredictionWriter

CNN = str(CONFIGS / "cnn.yaml")
FAST = ("--data.download", "false", "--trainer.enable_progress_bar", "false", "--trainer.limit_train_batches", "25")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A short fit (2 epochs of 25 batches) on the MNIST sample, tested on all 1,000 test digits."""
    work = tmp_path_factory.mktemp("figures")
    in_process("fit", "--config", CNN, "--trainer.max_epochs", "2", *FAST, cwd=work, check=True)
    return work / "lightning_logs" / "version_0"


def not_blank(path: Path) -> float:
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    return pixels.std()


def test_a_run_folder_holds_its_figures(run: Path) -> None:
    for name in ("confusion_matrix_test", "mistakes_test", "filters_conv1", "activations_conv1"):
        assert (run / f"{name}.png").is_file(), name
        assert not_blank(run / f"{name}.png") > 10, f"{name}.png looks blank"
    per_class = pd.read_csv(run / "per_class_test.csv", dtype={"class": str})
    assert per_class["class"].tolist() == [str(d) for d in range(10)]
    assert per_class["support"].sum() == 1000, "the confusion matrix counts every test digit once"
    assert per_class[["precision", "recall", "f1"]].apply(lambda c: c.between(0, 1)).all().all()


def test_tensorboard_holds_the_figures(run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"images": 0})
    acc.Reload()
    images = set(acc.Tags()["images"])
    expected = {
        f"figures/{n}" for n in ("confusion_matrix_test", "mistakes_test", "filters_conv1", "activations_conv1")
    }
    assert expected <= images, images


def test_validate_draws_the_validation_confusion_matrix(run: Path, monkeypatch, capfd) -> None:
    work = run.parents[1]
    in_process("validate", "--config", CNN, "--ckpt_path", "last", *FAST, cwd=work, monkeypatch=monkeypatch, check=True)
    per_class = pd.read_csv(work / "lightning_logs" / "version_1" / "per_class_val.csv")
    assert per_class["support"].sum() == 400 and (work / "lightning_logs/version_1/confusion_matrix_val.png").is_file()


@pytest.mark.parametrize("runs", [1, 2])
def test_plot_draws_curves_of_one_or_several_runs(run: Path, runs: int, monkeypatch, capfd) -> None:
    work = run.parents[1]
    here = {"cwd": work, "monkeypatch": monkeypatch, "capfd": capfd, "check": True}
    if runs == 2 and not (work / "lightning_logs" / "version_9").exists():
        in_process(
            "fit",
            "--config",
            CNN,
            "--trainer.max_epochs",
            "3",
            "--model.activation",
            "elu",
            "--trainer.logger.init_args.version",
            "9",
            "--test_after_fit",
            "false",
            *FAST,
            **here,
        )
    dirs = [str(run)] + ([str(work / "lightning_logs" / "version_9")] if runs == 2 else [])
    out = work / f"curves_{runs}.png"
    proc = in_process("plot", *dirs, "--out", str(out), **here)
    assert f"Curves: {out}" in proc.stdout
    assert not_blank(out) > 10


def test_plot_of_a_folder_that_is_no_run_says_so(tmp_path: Path, monkeypatch, capfd) -> None:
    proc = in_process("plot", str(tmp_path), cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 2 and "is not a run folder" in proc.stderr and "Traceback" not in proc.stderr


def test_explain_writes_an_overlay_per_image_whose_heat_maps_differ(
    run: Path, sample, tmp_path: Path, monkeypatch, capfd
) -> None:
    images, labels = sample
    files = []
    for i, scale in ((4003, 1), (4507, 3)):  # test digits of two different classes; the second scanned at 84x84
        files.append(tmp_path / f"digit_{int(labels[i])}.png")
        Image.fromarray(np.kron(images[i, 0].numpy(), np.ones((scale, scale), np.uint8))).save(files[-1])
    ckpt = run / "checkpoints" / "last.ckpt"
    proc = in_process(
        "explain",
        "--ckpt_path",
        str(ckpt),
        "--images",
        *map(str, files),
        "--out",
        "cams",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    assert proc.stdout.count("-> ") == 2
    overlays = [Image.open(tmp_path / "cams" / f"{f.stem}.cam.png") for f in files]
    assert [o.size for o in overlays] == [(28, 28), (84, 84)], "each overlay at its image's own size"
    a, b = (np.asarray(o.resize((28, 28)), dtype=float) for o in overlays)
    assert np.abs(a - b).mean() > 5, "two different digits get different heat maps"
    for f in files:
        assert not_blank(tmp_path / "cams" / f"{f.stem}.explain.png") > 10


def test_explain_refuses_an_mlp_with_a_reason(tmp_path: Path, monkeypatch, capfd) -> None:
    from lit_nets.models import MLPClassifier

    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(MLPClassifier(input_shape=[4], num_classes=2))
    trainer.save_checkpoint(tmp_path / "mlp.ckpt")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "x.png")
    proc = in_process(
        "explain", "--ckpt_path", "mlp.ckpt", "--images", "x.png", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd
    )
    assert proc.returncode == 2 and "explain needs an image model" in proc.stderr


@pytest.mark.parametrize("kind", ["mnist", "folder", "csv"])
def test_predict_writes_one_row_per_input_for_every_data_module(tmp_path: Path, kind: str) -> None:
    from lit_nets.core.data.samples import write_csv_sample, write_png_sample
    from lit_nets.data import CSVDataModule, ImageFolderDataModule, MNISTDataModule
    from lit_nets.models import CNNClassifier, MLPClassifier

    if kind == "mnist":
        dm, expected = MNISTDataModule(data_dir=str(tmp_path / "data"), download=False), 1000
    elif kind == "folder":
        root = write_png_sample("uci_digits_png", tmp_path / "uci")
        new = root / "3"  # a flat folder of images
        dm, expected = (
            ImageFolderDataModule(root=str(root), image_size=16, predict_root=str(new)),
            len(list(new.glob("*.png"))),
        )
    else:
        path = write_csv_sample("wine", tmp_path / "wine.csv")
        frame = pd.read_csv(path).drop(columns="cultivar")
        frame.to_csv(tmp_path / "new.csv", index=False)
        dm, expected = CSVDataModule(path=str(path), target="cultivar", predict_path=str(tmp_path / "new.csv")), 178
    links = ("num_classes", "input_shape", "mean", "std", "class_names", "schema")
    model = (MLPClassifier if kind == "csv" else CNNClassifier)(**{k: getattr(dm, k) for k in links})
    writer = PredictionWriter(output=str(tmp_path / "predictions.csv"))
    quiet_trainer(callbacks=[writer]).predict(model, dm)
    out = pd.read_csv(tmp_path / "predictions.csv", dtype={"label": str})
    assert len(out) == expected and out["label"].isin(model.class_names).all()
    assert out["id"].is_unique
