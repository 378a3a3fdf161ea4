"""hparams.yaml written fast (libyaml's C dumper, lit_nets.core.private_api.fast_hparams_yaml) reads back as what
Lightning's own writer gives, and what the C dumper cannot write still goes Lightning's way."""

from __future__ import annotations

from pathlib import Path

import yaml
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.parsing import AttributeDict

from lit_nets.core import private_api


def wide_hparams() -> AttributeDict:
    numeric = [{"name": f"c{i}", "fill": 0.5 * i, "mean": 1.0, "std": 2.0} for i in range(300)]
    schema = {"kind": "tabular", "target": "y", "numeric": numeric, "categorical": [{"name": "k", "categories": ["a"]}]}
    return AttributeDict(num_classes=2, input_shape=(300,), mean=None, schema=schema, loss="ce", threads=2)


def test_the_fast_file_reads_back_as_lightnings(tmp_path: Path) -> None:
    private_api.fast_hparams_yaml()
    for logger in (TensorBoardLogger(tmp_path / "tb"), CSVLogger(tmp_path / "csv")):
        logger.log_hyperparams(wide_hparams())
        logger.save()
        save_hparams_to_yaml(tmp_path / "lightning.yaml", wide_hparams())  # Lightning's own function
        ours = yaml.full_load(Path(logger.log_dir, "hparams.yaml").read_text())
        theirs = yaml.full_load((tmp_path / "lightning.yaml").read_text())
        assert ours == {**theirs, "input_shape": list(theirs["input_shape"])}  # a tuple is a list here
        assert ours["schema"]["numeric"][299]["fill"] == 149.5 and ours["input_shape"] == [300]


def test_an_object_goes_to_lightnings_writer(tmp_path: Path) -> None:
    class Opaque:
        pass

    private_api._save_hparams(tmp_path / "h.yaml", {"lr": 0.1, "thing": Opaque()})
    assert "!!python/object:" in (tmp_path / "h.yaml").read_text()  # Lightning's full dumper wrote it
