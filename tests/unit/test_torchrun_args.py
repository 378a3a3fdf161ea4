"""``python -m lit_nets torchrun``: torchrun's options are read by torchrun's own parser (an option's value is never
taken for the command), ``--help`` answers, and a mistake in the options is one line. Parsing only: nothing runs."""

from __future__ import annotations

import sys

import pytest

from lit_nets.__main__ import main
from lit_nets.train import launch


def test_an_option_whose_value_is_a_command_name_is_read_as_its_value() -> None:
    """``--log_dir test`` was split at ``test`` (a subcommand's name): the launcher ran ``test`` with torchrun's
    options after it."""
    args = launch.parse(["--log_dir", "test", "--nnodes", "2", "--nproc_per_node", "2", "fit", "--config", "a.yaml"])
    assert args.log_dir == "test" and args.nnodes == "2" and args.nproc_per_node == "2"
    assert args.module and args.training_script == "lit_nets"
    assert args.training_script_args == ["fit", "--config", "a.yaml"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--nproc_per_node", "abc", "fit"], "error: torchrun: Unsupported nproc_per_node value: abc"),
        (["--bogus", "3", "fit"], "error: torchrun: unrecognized arguments: --bogus"),
        (["--nnodes", "1", "plot", "x"], "error: torchrun: after torchrun's options comes the lit_nets command"),
    ],
)
def test_a_mistake_in_torchruns_options_is_one_line(monkeypatch, capsys, argv: list[str], said: str) -> None:
    monkeypatch.setattr(sys, "argv", ["lit_nets"])
    with pytest.raises(SystemExit) as exited:
        main(["torchrun", *argv])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.strip().startswith(said) and len(err.strip().splitlines()) == 1, err


def test_torchrun_help_answers(capsys) -> None:
    """``torchrun --help`` was an error ("give torchrun's options, then the lit_nets command")."""
    main(["torchrun", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m lit_nets torchrun [torchrun's options] {fit,validate,test,predict}")
    assert "python -m torch.distributed.run --help lists them" in out
