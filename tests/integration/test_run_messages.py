"""What a run says about itself (issue 30): why it stopped, which metric its checkpoints are named by, a folder
without a test split, files that are not images, and which checkpoint ``best`` / ``last`` turned out to be."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers.cli import CONFIGS, in_process
from PIL import Image

from lit_nets.data import ImageFolderDataModule

QUIET = ("--trainer.enable_progress_bar", "false", "--figures.enabled", "false")


def test_a_run_stopped_by_max_time_says_so_and_checkpoints_name_their_metric(tmp_path, monkeypatch, capfd) -> None:
    proc = in_process(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--trainer.max_time",
        "00:00:00:02",
        "--trainer.max_epochs",
        "100000",
        "--early_stopping.patience",
        "100000",
        *QUIET,
        "--test_after_fit",
        "false",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (stopped,) = [line for line in proc.stdout.splitlines() if line.startswith("Stopped:")]
    assert "by the time limit (trainer.max_time, 2 s)" in stopped and "did not trigger" not in stopped, stopped
    names = [p.name for p in (tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("epoch*.ckpt")]
    assert len(names) == 1 and "-val_loss0." in names[0] and "val_acc" not in names[0], names  # mlp.yaml: val/loss


def write_digits(root: Path, sample, per_class: int = 12) -> None:
    images, labels = sample
    for digit in (0, 1):
        for i in (labels == digit).nonzero().flatten()[:per_class].tolist():
            Image.fromarray(images[i, 0].numpy()).save(root / str(digit) / f"{i}.png")


def test_a_folder_without_test_says_so_and_non_images_are_counted(tmp_path, sample, caplog) -> None:
    for split in ("train", "val"):
        for digit in (0, 1):
            (tmp_path / split / str(digit)).mkdir(parents=True)
        write_digits(tmp_path / split, sample)
    (tmp_path / "train" / "0" / "placeholder.gif").write_bytes(b"GIF89a" + b"\0" * 20)
    (tmp_path / "train" / "1" / "notes.txt").write_text("scanned on Monday")
    dm = ImageFolderDataModule(root=str(tmp_path))
    dm.setup("fit")
    assert dm.splits.test is None
    assert "has train/ but no test/ folder: the run has no test split" in caplog.text
    assert "left out 2 file(s) that are not .png/.jpg/.jpeg (.gif, .txt)" in caplog.text
    assert torch.equal(dm.splits.train[1].bincount(), torch.tensor([12, 12]))


def test_best_and_last_say_which_run_epoch_and_score_and_a_finished_run_says_so(tmp_path, monkeypatch, capfd) -> None:
    fit = (
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--trainer.max_epochs",
        "4",
        "--early_stopping",
        "null",
        *QUIET,
    )
    assert in_process(*fit, "--test_after_fit", "false", cwd=tmp_path, monkeypatch=monkeypatch).returncode == 0
    (best,) = (tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("epoch*.ckpt")
    epoch, score = int(best.name[5:7]), best.stem.split("val_loss")[1]
    tested = in_process(
        "test",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--ckpt_path",
        "best",
        *QUIET,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    out = tested.stdout + tested.stderr
    assert f"(the best checkpoint of the newest run; run version_0, epoch {epoch}, val/loss {score})" in out, out
    exported = in_process(
        "export",
        "--ckpt_path",
        "last",
        "--format",
        "state_dict",
        "--out",
        "out",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert "(the last checkpoint of the newest run; run version_0, epoch 3, the run's best val/loss" in exported.stderr
    again = in_process(*fit, "--ckpt_path", "last", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert again.returncode == 0
    assert "that run has finished (it ran all 4 of --trainer.max_epochs 4 epochs), so fit only tests it" in again.stderr
    assert "--trainer.max_epochs (e.g. 8)" in again.stderr


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch, capfd) -> None:
    proc = in_process(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--early_stopping.monitor",
        "val/acx",
        *QUIET,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error: early_stopping.monitor: ") and "val/acx" in proc.stderr
    )
    assert list((tmp_path / "lightning_logs").iterdir()) == []  # no near-empty version_0 left behind


def test_result_lines_start_a_line_of_their_own_in_a_log_file(tmp_path) -> None:
    """A log file (stdout and stderr together, not a terminal) keeps the progress bar's carriage returns: the
    prediction line must not be glued to the bar's last state."""
    import subprocess
    import sys

    fit = ["fit", "--config", str(CONFIGS / "mlp.yaml"), "--trainer.max_epochs", "2", "--early_stopping", "null"]
    for args in (fit, ["predict", "--config", str(CONFIGS / "mlp.yaml"), "--ckpt_path", "best"]):
        with open(tmp_path / "run.log", "w") as log:
            command = [sys.executable, "-m", "lit_nets", *args]
            subprocess.run(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=300)
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert any(line.startswith("Predictions:  ") for line in lines), lines[-5:]
    assert any(line.startswith("Checkpoint:   ") for line in lines)


def test_a_log_file_gets_a_line_per_epoch_not_progress_bars(tmp_path, monkeypatch, capfd) -> None:
    """Standard error that is no terminal (a log file, a pipe, CI): tqdm's bars redraw with carriage returns that a
    file keeps (446 KB for one short run). With defaults on there, one line per epoch with its own train/loss."""
    proc = in_process("fit", "--config", str(CONFIGS / "mlp.yaml"), "--trainer.max_epochs", "3", "--early_stopping",
                      "null", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    epochs = [line for line in proc.stderr.splitlines() if line.startswith("Epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"], epochs
    assert all("train/loss " in line and "val/loss " in line and "_step" not in line for line in epochs), epochs
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr and "v_num" not in proc.stderr


def test_a_debug_run_is_never_what_best_and_last_find(tmp_path, monkeypatch, capfd) -> None:
    """The docs' order led into exporting a debug model: insight.md's profiling commands stack configs/debug.yaml,
    and the next page's ``export --ckpt_path best`` found that 1-epoch run. Debug and profiling runs live in
    lightning_logs/debug/, say so, and are used only when named."""
    here = {"cwd": tmp_path, "monkeypatch": monkeypatch, "capfd": capfd}
    debug = ("--config", str(CONFIGS / "debug.yaml"))
    proc = in_process("fit", "--config", str(CONFIGS / "mlp.yaml"), *debug, **here)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"Run folder:   {Path('lightning_logs/debug/version_0')}" in proc.stdout.replace("./", "")
    assert "Debug run:    not what --ckpt_path best / last find for other commands" in proc.stdout
    refused = in_process("export", "--ckpt_path", "best", "--format", "state_dict", **here)
    assert refused.returncode == 2 and "--ckpt_path best: no earlier run with checkpoints under lightning_logs/" in (
        refused.stderr
    )
    named = in_process("export", "--ckpt_path", "lightning_logs/debug/version_0", "--format", "state_dict", **here)
    assert named.returncode == 0, named.stderr[-2000:]
    profiled = in_process("fit", "--config", str(CONFIGS / "mlp.yaml"), "--trainer.profiler", "simple",
                          "--trainer.max_epochs", "1", *QUIET, **here)  # fmt: skip
    assert profiled.returncode == 0 and "lightning_logs/debug/version_1" in profiled.stdout.replace("\\", "/")
