"""``python -m lit_nets cv``: k-fold cross-validation of a config, each fold a normal fit run, on real data (wine, the
MNIST digits as a PNG folder)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers.cli import CONFIGS, in_process

QUIET = ("--trainer.enable_progress_bar", "false", "--figures.enabled", "false")


def cross_validate(tmp_path: Path, monkeypatch, capfd, *args: str):
    proc = in_process("cv", *args, *QUIET, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_three_folds_on_wine_cover_every_training_row_once(tmp_path: Path, monkeypatch, capfd) -> None:
    proc = cross_validate(
        tmp_path,
        monkeypatch,
        capfd,
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--folds",
        "3",
        "--trainer.max_epochs",
        "15",
    )
    folder = tmp_path / "lightning_logs" / "cv" / "mlp"
    assert sorted(p.name for p in folder.glob("fold_*")) == ["fold_0", "fold_1", "fold_2"]
    assert all((folder / f"fold_{k}" / "config.yaml").exists() for k in range(3)), "each fold is a normal run"
    wine = pd.read_csv(tmp_path / "data" / "wine.csv")
    oof = pd.read_csv(folder / "oof_predictions.csv")
    # every row of the file but the 36 test rows (20%), once, each named by its data row with its own label
    assert len(oof) == len(wine) - 36 and oof["id"].is_unique
    assert (oof["true_label"].values == wine.loc[oof["id"], "cultivar"].astype(str).values).all()
    assert sorted(oof.groupby("fold").size().tolist()) == [47, 47, 48]
    table = pd.read_csv(folder / "results.csv")
    folds, mean, std = table.iloc[:3], table.iloc[3], table.iloc[4]
    assert (mean["repeat"], std["repeat"]) == ("mean", "std")
    for metric in ("val/acc", "val/loss", "test/acc", "test/f1"):
        assert mean[metric] == pytest.approx(folds[metric].mean()) and std[metric] == pytest.approx(folds[metric].std())
    assert mean["val/acc"] >= 0.85 and mean["test/acc"] >= 0.85, table  # wine, 15 epochs
    # the OOF accuracy is the folds' validation accuracy, weighted by fold size (the best checkpoints made both)
    assert (oof["label"] == oof["true_label"]).mean() == pytest.approx(
        (folds["val/acc"] * oof.groupby("fold").size().values).sum() / len(oof), abs=1e-6
    )
    assert (
        "| mean ± std |" in proc.stdout
        and f"Out-of-fold:  {Path('lightning_logs/cv/mlp/oof_predictions.csv')}" in proc.stdout.replace("./", "")
    )


def test_repeats_draw_new_folds(tmp_path: Path, monkeypatch, capfd) -> None:
    cross_validate(
        tmp_path,
        monkeypatch,
        capfd,
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--folds",
        "2",
        "--repeats",
        "2",
        "--trainer.max_epochs",
        "3",
        "--name",
        "twice",
    )
    folder = tmp_path / "lightning_logs" / "cv" / "twice"
    assert sorted(str(p.relative_to(folder)) for p in folder.glob("repeat_*/fold_*")) == [
        "repeat_0/fold_0",
        "repeat_0/fold_1",
        "repeat_1/fold_0",
        "repeat_1/fold_1",
    ]
    oof = pd.read_csv(folder / "oof_predictions.csv")
    assert len(oof) == 2 * 142 and (oof.groupby("repeat")["id"].nunique() == 142).all()
    first, second = (set(oof[(oof["repeat"] == r) & (oof["fold"] == 0)]["id"]) for r in (0, 1))
    assert first != second, "a repeat splits the rows into other folds"
    assert len(pd.read_csv(folder / "results.csv")) == 4 + 2
    # a rerun under the same name goes to a new folder: the first run's results and folds stay as they were
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    proc = cross_validate(
        tmp_path,
        monkeypatch,
        capfd,
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--folds",
        "2",
        "--trainer.max_epochs",
        "1",
        "--name",
        "twice",
    )
    assert "holds an earlier run; this one goes to" in proc.stderr and "twice_2" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before
    again = tmp_path / "lightning_logs" / "cv" / "twice_2"
    assert len(pd.read_csv(again / "results.csv")) == 2 + 2 and not (again / "repeat_0").exists()


def test_a_new_fit_into_a_used_version_folder_is_refused(tmp_path: Path, monkeypatch, capfd) -> None:
    args = (
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--trainer.max_epochs",
        "1",
        *QUIET,
        "--trainer.logger.init_args.version",
        "mine",
    )
    first = in_process(*args, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert first.returncode == 0, first.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "lightning_logs" / "mine").rglob("*"))
    second = in_process(*args, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert second.returncode == 2 and "lightning_logs/mine already holds a run" in second.stderr, second.stderr
    assert "--ckpt_path" in second.stderr and "Traceback" not in second.stderr
    assert sorted(p.name for p in (tmp_path / "lightning_logs" / "mine").rglob("*")) == files


def test_two_folds_of_an_image_folder(tmp_path: Path, monkeypatch, capfd) -> None:
    cross_validate(
        tmp_path,
        monkeypatch,
        capfd,
        "--config",
        str(CONFIGS / "png_folder.yaml"),
        "--folds",
        "2",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "10",
    )
    folder = tmp_path / "lightning_logs" / "cv" / "png_folder"
    oof = pd.read_csv(folder / "oof_predictions.csv")
    assert len(oof) == 4000 and oof["id"].is_unique  # the sample's train/ folder: every image once
    root = tmp_path / "data" / "mnist_png"
    assert all((root / name).is_file() for name in oof["id"][:50])
    assert (oof["true_label"].astype(str) == [Path(name).parent.name for name in oof["id"]]).all()
    assert (oof["label"] == oof["true_label"]).mean() > 0.5  # 10 steps of training: well above chance (0.1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--folds", "1"), "error: cv --folds must be 2 or more"),
        (("--folds", "60"), "has 38 rows, fewer than data.folds=60"),
        (("--ckpt_path", "last"), "error: cv sets the folds itself"),
    ],
)
def test_bad_cv_arguments_are_one_line(tmp_path: Path, monkeypatch, capfd, args: tuple, message: str) -> None:
    proc = in_process(
        "cv", "--config", str(CONFIGS / "mlp.yaml"), *args, *QUIET, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
