"""A mistake in the arguments or a config file ends with one line that names the key, the file and the closest
valid keys, exit status 2 and no traceback; every shipped config parses and names real classes. Parsing only: no
training, no subprocess (in this process, through the same ``main`` as ``python -m lit_nets``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from helpers.cli import CONFIGS

# imported here, not under capsys: Lightning's log handlers keep the stderr they find when it is imported
from lit_nets.__main__ import main

CNN = str(CONFIGS / "cnn.yaml")
OFFLINE = ("--data.init_args.download", "false", "--trainer.enable_progress_bar", "false")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data.init_args.batch_size", "0"), "error: data.batch_size must be a positive integer, got 0"),
        (
            ("--data.init_args.dataset", "FashionMNIST"),
            "error: FashionMNIST is not in data/FashionMNIST/raw/",
        ),
        (("--ckpt_path", "missing.ckpt"), "error: --ckpt_path missing.ckpt: no such checkpoint file"),
        (("--data.init_args.batch_size", "-5"), "error: data.batch_size must be a positive integer, got -5"),
        (
            ("--model.init_args.lrr", "0.1"),
            "error: model.lrr: CNNClassifier has no argument 'lrr'; did you mean lr? "
            "(python -m lit_nets fit --model.help CNNClassifier lists them all)",
        ),
        (("--model.init_args.lr", "abc"), "error: model.lr: 'abc' is not a float"),
        (
            ("--model.activation", "rleu"),
            "error: model.activation: 'rleu' is not one of relu, leaky_relu, elu, gelu, silu; did you mean relu?",
        ),
        (
            ("--trainer.max_epochz", "3"),
            "error: trainer.max_epochz: Trainer has no argument 'max_epochz'; did you "
            "mean max_epochs or min_epochs or max_steps?",
        ),
        (("--modle.lr", "3"), "error: modle.lr: there is no section 'modle'; did you mean model?"),
        (("--trainer.accelerator", "cpu", "--trainer.devices", "0"), "error: trainer: `Trainer(devices='0')` value is"),
        (("--trainer.max_epochs", "-3"), "error: trainer: `max_epochs` must be a non-negative integer or -1"),
        (("--trainer.accelerator", "cuda", "--trainer.devices", "64"), "error: trainer: "),  # more than exist
    ],
)
def test_bad_input_ends_with_one_clear_line(
    tmp_path: Path, monkeypatch, capsys, args: tuple[str, ...], message: str
) -> None:
    """In this process (the same code path as ``python -m lit_nets``): one line, exit status 2, no traceback; a
    mistake in the arguments themselves prints nothing else (it used to print ~80 lines of usage first)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])  # the arguments go in through main(args)
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", CNN, *OFFLINE, *args])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err and "Traceback" not in err, err
    if any(words in message for words in ("no argument", "no section", "is not a float", "is not one of")):
        assert err.strip().splitlines() == [err.strip()], "the parser's mistakes are the only line"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "model:\n  init_args:\n    lrr: 0.1\n",
            "error: typo.yaml: model.lrr: CNNClassifier has no argument 'lrr'; did you mean lr?",
        ),
        ("trainer:\n  max_epochz: 3\n", "error: typo.yaml: trainer.max_epochz: Trainer has no argument 'max_epochz'"),
        (
            "data:\n  init_args:\n    batchsize: 3\n",
            "error: typo.yaml: data.batchsize: MNISTDataModule has no argument 'batchsize'; did you mean batch_size?",
        ),
        ("modle:\n  lr: 3\n", "error: typo.yaml: modle.lr: there is no section 'modle'; did you mean model?"),
        ("model:\n  init_args:\n    lr: abc\n", "error: typo.yaml: model.lr: 'abc' is not a float"),
        (
            "trainer:\n  callbacks:\n    - class_path: lit_nets.train.callbacks.PeriodicCheckpoint\n      init_args:\n"
            "        every_n_train_step: 3\n",
            "error: typo.yaml: trainer.callbacks.every_n_train_step: "
            "PeriodicCheckpoint has no argument 'every_n_train_step'; did you mean every_n_train_steps?",
        ),
    ],
)
def test_a_mistake_in_a_config_file_names_the_file_the_key_and_the_closest_keys(
    tmp_path: Path, monkeypatch, capsys, yaml_text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])
    (tmp_path / "typo.yaml").write_text(yaml_text)
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", CNN, "--config", "typo.yaml"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.strip().splitlines() == [err.strip()], err
    assert err.startswith(message), err


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name != "debug.yaml"))
def test_every_config_parses_and_names_real_classes(tmp_path: Path, monkeypatch, capsys, config: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", str(CONFIGS / config), "--print_config"])
    assert exited.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    import importlib

    import lit_nets.data
    import lit_nets.models

    for section, public in (("model", lit_nets.models), ("data", lit_nets.data)):
        module, _, name = printed[section]["class_path"].rpartition(".")
        assert getattr(importlib.import_module(module), name) is getattr(public, name)  # a public class, wherever
