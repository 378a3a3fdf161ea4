"""The tool subcommands (plot, explain, export, serve) are built by jsonargparse from their functions
(lit_nets/tools.py): help from the docstrings, config files, list options given value after value, one-line errors.
In-process: the same ``main`` as the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.cli import in_process


@pytest.mark.parametrize(
    ("tool", "lines"),
    [
        ("serve", ["--stop_timeout STOP_TIMEOUT", "on SIGTERM/Ctrl-C, seconds to finish the requests in", "--config"]),
        ("export", ["--format {state_dict,torchscript,pt2,onnx,all}", "the formats to write (all: every one)"]),
        ("explain", ["--images IMAGE [IMAGE ...]", "image files (PNG, JPEG)", "last conv block's"]),
        ("plot", ["RUN [RUN ...]", "run folders, e.g. lightning_logs/version_3. (required)", "--print_config"]),
        ("track", ["RUN [RUN ...]", "--tracking_uri TRACKING_URI", "what the tracking server missed"]),
    ],
)
def test_each_tool_helps_from_its_docstring(tool: str, lines: list[str], tmp_path: Path, monkeypatch, capfd) -> None:
    proc = in_process(tool, "--help", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"usage: python -m lit_nets {tool}")
    text = " ".join(proc.stdout.split())  # argparse wraps the help to the terminal's width
    for line in lines:
        assert line in text, (line, proc.stdout)
    assert "<class" not in text, "no Python type names in the help"
    headings = [line for line in proc.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings in (["options:"], ["positional arguments:", "options:"]), "one heading for the options"


def test_a_config_file_sets_a_tools_options_and_the_command_line_wins(
    cnn_run, tmp_path: Path, monkeypatch, capfd
) -> None:
    """``export --config export.yaml``: only the format the file names is written, to the folder it names; a flag
    after it wins over the file."""
    work, _ = cnn_run
    ckpt = work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    (tmp_path / "export.yaml").write_text(f"ckpt_path: {ckpt}\nformat: [state_dict]\nout: from_file\n")
    here = {"cwd": tmp_path, "monkeypatch": monkeypatch, "capfd": capfd}
    proc = in_process("export", "--config", "export.yaml", **here)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name for p in (tmp_path / "from_file").iterdir()} == {"last.pt", "last.pt.json", "last.safetensors"}
    proc = in_process(
        "export", "--config", "export.yaml", "--format", "state_dict", "torchscript", "--out", "flag", **here
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = {p.name for p in (tmp_path / "flag").iterdir()}
    assert written == {"last.pt", "last.pt.json", "last.safetensors", "last.torchscript.pt", "last.torchscript.pt.json"}


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["serve", "--prot", "8001"], "python -m lit_nets serve has no option --prot; did you mean --port?"),
        (["serve", "--ckpt_path", "x", "--port", "eighty"], "--port: expected an int, got eighty"),
        (["explain", "--images", "a.png"], "python -m lit_nets explain needs --ckpt_path"),
        (["export", "--ckpt_path", "x", "--format", "onx"], "invalid choice: 'onx'"),
        (["plot"], "python -m lit_nets plot needs RUN"),
    ],
)
def test_a_mistake_in_a_tools_arguments_is_one_line(
    argv: list[str], said: str, tmp_path: Path, monkeypatch, capfd
) -> None:
    proc = in_process(*argv, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and said in proc.stderr, proc.stderr
    assert proc.stdout == ""
