"""Names of earlier releases: configs and checkpoints made before lit_nets 0.3 put the code in wings (core, train,
deploy). The public class paths keep working; a checkpoint that records a module path of 0.2 still loads; a config
that names one ends with one line that says the new name."""

from __future__ import annotations

import sys

import pytest

from lit_nets.core.checkpoint import classifier_class, lit_nets_class
from lit_nets.data import CSVDataModule, ImageFolderDataModule
from lit_nets.models import BackboneClassifier, CNNClassifier, MLPClassifier
from lit_nets.train.callbacks import PeriodicCheckpoint
from lit_nets.train.config_errors import moved_class


@pytest.mark.parametrize(
    ("recorded", "cls"),
    [
        ("lit_nets.models.classifier.CNNClassifier", CNNClassifier),  # what 0.2's CLI recorded
        ("lit_nets.models.MLPClassifier", MLPClassifier),  # what 0.2's configs said, and still say
        ("lit_nets.models.finetuning.BackboneClassifier", BackboneClassifier),
        ("lit_nets.core.models.classifier.CNNClassifier", CNNClassifier),  # what 0.3 records
    ],
)
def test_a_checkpoint_of_an_earlier_release_names_a_class_this_one_has(recorded: str, cls: type) -> None:
    assert classifier_class({"_class_path": recorded}, "old.ckpt") is cls


def test_a_data_module_path_of_an_earlier_release_still_loads() -> None:
    assert lit_nets_class("lit_nets.data.tabular.CSVDataModule", "old.ckpt") is CSVDataModule
    assert lit_nets_class("lit_nets.data.folder.ImageFolderDataModule", "old.ckpt") is ImageFolderDataModule


def test_a_class_this_release_lacks_is_one_line_naming_it() -> None:
    from lit_nets.core.errors import UserError

    with pytest.raises(UserError, match=r"old.ckpt holds a lit_nets.models.classifier.ResNetClassifier, which"):
        lit_nets_class("lit_nets.models.classifier.ResNetClassifier", "old.ckpt")


def test_the_moved_paths_of_configs() -> None:
    assert moved_class("lit_nets.models.classifier.CNNClassifier") == "lit_nets.models.CNNClassifier"
    assert moved_class("lit_nets.data.tabular.CSVDataModule") == "lit_nets.data.CSVDataModule"
    assert moved_class("lit_nets.callbacks.PeriodicCheckpoint") == "lit_nets.train.callbacks.PeriodicCheckpoint"
    assert moved_class("lit_nets.models.classifier.NoSuchNet") is None  # not a class that moved: no rename said
    assert moved_class("torch.nn.Linear") is None
    assert PeriodicCheckpoint.__name__ == "PeriodicCheckpoint"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--model", "lit_nets.models.classifier.CNNClassifier"],
            "error: model: lit_nets.models.classifier.CNNClassifier was renamed in lit_nets 0.3: use "
            "lit_nets.models.CNNClassifier",
        ),
        (
            ["--trainer.callbacks+=lit_nets.callbacks.PeriodicCheckpoint"],
            "error: trainer.callbacks: lit_nets.callbacks.PeriodicCheckpoint was renamed in lit_nets 0.3: use "
            "lit_nets.train.callbacks.PeriodicCheckpoint",
        ),
        (
            ["--config", "configs/mlp.yaml", "--data.schema_from", "x.ckpt"],
            "error: data.schema_from: removed in lit_nets 0.3: --ckpt_path hands the data module the checkpoint's "
            "schema",
        ),
    ],
)
def test_an_old_config_gets_one_line_with_the_new_name(args: list[str], said: str, monkeypatch, capsys) -> None:
    from helpers.cli import REPO

    from lit_nets.__main__ import main

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])
    base = [] if "--config" in args else ["--config", "configs/cnn.yaml"]
    with pytest.raises(SystemExit) as exited:
        main(["fit", *base, *args, "--print_config"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == said
