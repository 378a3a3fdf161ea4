"""Checkpoints edited by hand or broken: every command that takes one (here export, the first thing it does is read
it) ends with one line that names the file and what is wrong, exit status 2, no traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lit_nets.__main__ import main

VALUES = {"num_classes": 3, "input_shape": [13], "class_names": ["a", "b", "c"]}
MLP = {"_class_path": "lit_nets.models.MLPClassifier", **VALUES}


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "an empty file (0 bytes), not a checkpoint"),
        ([1, 2], "holds a list, not a checkpoint"),
        ({"hyper_parameters": [1, 2]}, "its hyper_parameters are a list, not the model's arguments by name"),
        (
            {"hyper_parameters": {**VALUES, "_class_path": "lit_nets.core.checkpoint.model_hparams"}},
            "its _class_path lit_nets.core.checkpoint.model_hparams names a function that is not a lit_nets model",
        ),
        (
            {"hyper_parameters": {**VALUES, "_class_path": "lit_nets.core.checkpoint.REQUIRED"}},
            "names a tuple that is not a lit_nets model",
        ),
        (
            {"hyper_parameters": {**VALUES, "_class_path": "lit_nets.core.errors.UserError"}},
            "names a class that is not a lit_nets model (a subclass of lit_nets.models.Classifier)",
        ),
        ({"hyper_parameters": {**MLP, "class_names": 5}}, "the model argument class_names is 5, not a list of names"),
        ({"hyper_parameters": {**MLP, "num_classes": "3"}}, "the model argument num_classes is '3', not a whole"),
        ({"hyper_parameters": {**MLP, "class_names": ["a"]}}, "not a list of num_classes (3) names"),
    ],
)
def test_an_edited_checkpoint_is_one_line(tmp_path: Path, monkeypatch, capsys, content, said: str) -> None:
    file = tmp_path / "edited.ckpt"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        torch.save(content, file)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])
    with pytest.raises(SystemExit) as exited:
        main(["export", "--ckpt_path", str(file)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: ") and said in err, err
