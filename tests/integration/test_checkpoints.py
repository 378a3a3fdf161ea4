"""Checkpoints as commands take them: one rule for every spelling of --ckpt_path, checkpoints of other versions and
architectures, runs that are still training, and the tools (export, explain) taking best / last too.

In-process (``lit_nets.__main__.main``) on copies of the shared one-epoch CNN run: the real process is tested
elsewhere.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers.cli import CONFIGS

import lit_nets
from lit_nets.__main__ import main
from lit_nets.core.errors import UserError

CNN = str(CONFIGS / "cnn.yaml")
QUICK = [
    "--data.download",
    "false",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
    "--trainer.enable_progress_bar",
    "false",
    "--figures.enabled",
    "false",
]


@pytest.fixture
def runs(cnn_run, tmp_path: Path, monkeypatch) -> Path:
    """A working folder holding a copy of the shared run as lightning_logs/version_0; the current folder."""
    work, _ = cnn_run
    shutil.copytree(work / "lightning_logs", tmp_path / "lightning_logs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])  # the arguments go in through main(args)
    return tmp_path / "lightning_logs"


def cli(*args: str, capsys=None) -> str:
    """``python -m lit_nets ARGS`` in this process; the one-line error it ended with, or "" when it succeeded."""
    try:
        main(list(args))
    except SystemExit as e:
        assert e.code == 2, e.code
        err = capsys.readouterr().err if capsys else ""
        assert "Traceback" not in err
        return err.strip().splitlines()[-1] if err.strip() else "exit 2"
    return ""


def newest_hparams(root: Path) -> dict:
    newest = max(root.glob("version_*/hparams.yaml"), key=lambda p: p.stat().st_mtime)
    return yaml.safe_load(newest.read_text())


@pytest.mark.parametrize("spelling", ["file", "run folder", "last"])
def test_every_spelling_of_ckpt_path_follows_one_rule_the_checkpoint_wins(runs: Path, caplog, spelling: str) -> None:
    """``--model.dropout 0.5`` on the command line, a checkpoint trained with dropout 0: whichever way the checkpoint
    is named, the model is the checkpoint's and a warning says which given value was not used. (Before, a file path
    took the checkpoint's dropout silently, and ``last`` took the flag.)"""
    ckpt = {
        "file": str(runs / "version_0" / "checkpoints" / "last.ckpt"),
        "run folder": str(runs / "version_0"),
        "last": "last",
    }[spelling]
    caplog.set_level(logging.WARNING, logger="lit_nets")
    assert cli("validate", "--config", CNN, "--ckpt_path", ckpt, "--model.dropout", "0.5", *QUICK) == ""
    assert newest_hparams(runs)["dropout"] == 0.0
    assert "the checkpoint's model arguments are used: dropout 0.0 (not 0.5)" in caplog.text


def doctored(runs: Path, change) -> Path:
    """A copy of the run's checkpoint with its hyper-parameters changed by ``change(hparams)``."""
    checkpoint = torch.load(runs / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    change(checkpoint["hyper_parameters"])
    path = runs.parent / "doctored.ckpt"
    torch.save(checkpoint, path)
    return path


V = re.escape(lit_nets.__version__)


@pytest.mark.parametrize("command", ["test", "export"])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda hp: hp.update(attention_heads=4),
            r"CNNClassifier has no argument\(s\) 'attention_heads' in this "
            rf"version of lit_nets \({V}; the checkpoint was saved by lit_nets {V}\): load it with the version",
        ),
        (lambda hp: hp.pop("class_names"), r"the checkpoint lacks the model argument\(s\) 'class_names'"),
        (lambda hp: hp.pop("mean"), r"the checkpoint lacks the model argument\(s\) 'mean'"),
        (
            lambda hp: hp.update(hidden=64),
            r"holds another architecture than this model \(net.classifier.fc1.weight: "
            r"\[128, 3136\] in the checkpoint, \[64, 3136\] here",
        ),
    ],
)
def test_a_checkpoint_of_another_version_or_architecture_is_one_line(
    runs: Path, capsys, command: str, change, message: str
) -> None:
    import re

    path = doctored(runs, change)
    args = (
        ["test", "--config", CNN, "--ckpt_path", str(path), *QUICK]
        if command == "test"
        else ["export", "--ckpt_path", str(path), "--format", "state_dict"]
    )
    line = cli(*args, capsys=capsys)
    assert re.search(message, line), line


def test_the_tools_take_best_and_last_like_test_and_predict(runs: Path, sample) -> None:
    from PIL import Image

    from lit_nets.core.checkpoint_files import best_checkpoint_of

    Image.fromarray(sample[0][4000, 0].numpy()).save("seven.png")
    assert cli("export", "--ckpt_path", "last", "--format", "state_dict", "--out", "exported") == ""
    assert Path("exported/last.pt").is_file()
    assert cli("explain", "--ckpt_path", "best", "--images", "seven.png") == ""
    best = best_checkpoint_of(runs / "version_0" / "checkpoints" / "last.ckpt")
    assert best is not None and best.name.startswith("epoch00-")
    assert Path("explain/seven.cam.png").is_file()


def test_a_run_being_trained_is_passed_over_and_a_killed_one_is_not(runs: Path, caplog) -> None:
    """A live process holds version_1's lock: ``last`` takes version_0 and says why. Killed with SIGKILL (no chance
    to clean up), the process leaves no lock behind: version_1 is the newest run again."""
    from lit_nets.core.checkpoint_files import RunLock, is_training, resolve

    shutil.copytree(runs / "version_0", runs / "version_1")
    (runs / "version_1" / "checkpoints" / "last.ckpt").touch()  # the newer run (copytree keeps the times)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from lit_nets.core.checkpoint_files import RunLock; "
            "lock = RunLock(sys.argv[1]); lock.acquire(); print('locked', flush=True); time.sleep(120)",
            str(runs / "version_1"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert is_training(runs / "version_1")
        chosen = resolve("last", runs, "fit")
        assert Path(chosen).parent.parent.name == "version_0"
        assert "version_1 is being trained right now (process" in caplog.text
        with pytest.raises(UserError, match=r"version_1 is being trained by another process \(process \d+\)"):
            RunLock(runs / "version_1").acquire()  # resuming into it now would write where it writes
    finally:
        holder.kill()
        holder.wait()
    assert not is_training(runs / "version_1")
    assert Path(resolve("last", runs, "fit")).parent.parent.name == "version_1"


def test_a_checkpoint_saved_with_the_old_name_channels_still_loads(tmp_path: Path) -> None:
    """lit_nets 0.2 renamed the CNN's ``channels`` to ``conv_channels``: a 0.1 checkpoint rebuilds the same net."""
    from lit_nets.deploy.inference import load_classifier
    from lit_nets.models import CNNClassifier

    model = CNNClassifier(conv_channels=[4, 6], num_classes=3, input_shape=[1, 12, 12], class_names=["a", "b", "c"])
    hparams = dict(model.hparams)
    hparams["channels"] = hparams.pop("conv_channels")
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, tmp_path / "old.ckpt")
    loaded = load_classifier(tmp_path / "old.ckpt")
    assert loaded.hparams.conv_channels == [4, 6]
    x = torch.rand(2, 1, 12, 12)
    assert torch.equal(loaded(x), model.eval()(x))
