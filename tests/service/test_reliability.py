"""Faults: crafted and torn checkpoints, SIGTERM in the middle of training, and resuming after each."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.cli import CONFIGS, in_process, run_cli

FAST = [
    "--trainer.limit_train_batches",
    "20",
    "--trainer.limit_val_batches",
    "2",
    "--data.download",
    "false",
    "--trainer.enable_progress_bar",
    "false",
    "--figures.enabled",
    "false",
    "--test_after_fit",
    "false",
]


class Payload:
    """What a crafted checkpoint carries: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("command", "container"),
    [
        ("test", "torch.save"),
        ("test", "pickle.dump"),
        ("export", "torch.save"),
        ("explain", "torch.save"),
        ("serve", "pickle.dump"),
    ],
)
def test_a_crafted_pickle_checkpoint_is_refused_and_runs_nothing(tmp_path: Path, container: str, command: str) -> None:
    marker, evil = tmp_path / "PWNED", tmp_path / "evil.ckpt"
    content = {"state_dict": {}, "hyper_parameters": {"lr": Payload(marker)}}
    if container == "torch.save":
        torch.save(content, evil)
    else:
        evil.write_bytes(pickle.dumps(content))
    args = {
        "test": ["test", "--config", str(CONFIGS / "cnn.yaml"), "--ckpt_path", str(evil)],
        "export": ["export", "--ckpt_path", str(evil)],
        "explain": ["explain", "--ckpt_path", str(evil), "--images", str(evil)],
        "serve": ["serve", "--ckpt_path", str(evil)],
    }[command]
    proc = run_cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "refused to load" in proc.stderr and "Traceback" not in proc.stderr
    if container == "torch.save":
        assert "unsupported GLOBAL posix.system" in proc.stderr  # the message names what it wanted to run
    assert not marker.exists(), "the payload ran"


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """Two short epochs of the seed CNN: last.ckpt and a best checkpoint."""
    work = tmp_path_factory.mktemp("short_run")
    in_process("fit", "--config", str(CONFIGS / "cnn.yaml"), "--trainer.max_epochs", "2", *FAST, cwd=work, check=True)
    return work


def test_a_torn_last_checkpoint_falls_back_to_the_newest_intact_one(
    short_run: Path, tmp_path: Path, monkeypatch, capfd
) -> None:
    import shutil

    work = tmp_path / "run"
    shutil.copytree(short_run, work)
    checkpoints = work / "lightning_logs" / "version_0" / "checkpoints"
    last = checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # killed while writing it
    here = {"cwd": work, "monkeypatch": monkeypatch, "capfd": capfd}
    explicit = in_process("test", "--config", str(CONFIGS / "cnn.yaml"), "--ckpt_path", str(last), **here)
    assert explicit.returncode == 2 and "not a complete checkpoint (truncated, torn" in explicit.stderr
    best = next(p for p in checkpoints.glob("epoch*.ckpt")).relative_to(work)
    proc = in_process(
        "fit",
        "--config",
        str(CONFIGS / "cnn.yaml"),
        "--ckpt_path",
        "last",
        "--trainer.max_epochs",
        "3",
        *FAST,
        check=True,
        **here,
    )
    assert f"{last.relative_to(work)} is torn (cut short while being written); using {best} instead" in proc.stderr
    resumed = torch.load(last, weights_only=True)  # the run went on in its own folder, and wrote a whole last.ckpt
    assert resumed["epoch"] == 2 and resumed["global_step"] == 60  # 3 epochs of 20 steps: none lost, none repeated


# 3 epochs of 40 steps with configs/preemptible.yaml saving last.ckpt every 10 steps, deterministic: a run stopped
# and resumed with --ckpt_path last must end with exactly the weights of a run never stopped
RESUMABLE = [
    "--config",
    str(CONFIGS / "cnn.yaml"),
    "--config",
    str(CONFIGS / "preemptible.yaml"),
    "--trainer.callbacks.init_args.every_n_train_steps",
    "10",
    "--trainer.max_epochs",
    "3",
    *FAST[2:],
    "--trainer.limit_train_batches",
    "40",
    "--trainer.deterministic",
    "true",
]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> dict:
    """The final checkpoint of the run never stopped."""
    work = tmp_path_factory.mktemp("unbroken")
    proc = run_cli("fit", *RESUMABLE, cwd=work)
    # the PeriodicCheckpoint of the overlay is not the run's main checkpoint: the best one is still kept and named
    assert "Best:         ./lightning_logs/version_0/checkpoints/epoch0" in proc.stdout, proc.stdout[-2000:]
    return torch.load(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)


def resume_and_compare(work: Path, reference: dict) -> float:
    """Resume the stopped run in ``work`` with --ckpt_path last; check that it ended where the unbroken run did and
    return the largest difference between their weights."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:  # in this process (no interpreter start); deterministic: true is a process-wide switch, put back after
        in_process("fit", *RESUMABLE, "--ckpt_path", "last", cwd=work, check=True)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    final = torch.load(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (reference["epoch"], reference["global_step"]) == (2, 120)
    return max(
        (final["state_dict"][k].float() - v.float()).abs().max().item() for k, v in reference["state_dict"].items()
    )


def test_sigterm_then_resume_ends_with_the_weights_of_an_unbroken_run(tmp_path: Path, unbroken: dict) -> None:
    """A real SIGTERM from outside, at whatever step the run has reached: it saves that step, and the resumed run
    continues the same epoch's order after the batches already trained on (the loader's place is in the
    checkpoint), so with deterministic on the weights come out equal."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lit_nets", "fit", *RESUMABLE],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"  # step 10 trained
    deadline = time.monotonic() + 300
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    from lit_nets.core.checkpoint_files import is_training, resolve

    assert is_training(started.parent.parent), "the run holds its folder's lock while it trains"
    assert resolve("last", tmp_path / "lightning_logs", "fit") is None, "`last` passes over a run being written"
    time.sleep(0.3)  # a few more steps
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Interrupted at epoch" in out, out[-3000:]
    saved = torch.load(started, weights_only=True)
    said = out.split("Interrupted at epoch ")[1].split(":")[0]  # "E, step S"
    assert said == f"{saved['epoch']}, step {saved['global_step']}" and 0 < saved["global_step"] < 120
    diff = resume_and_compare(tmp_path, unbroken)
    print(f"SIGTERM at step {saved['global_step']}; max |weight difference| after resuming: {diff:.3g}")
    assert diff == 0.0


@pytest.mark.parametrize(
    ("fault", "step", "saved_step"),
    [
        ("KillAfterStep", 75, 70),  # SIGKILL mid-epoch: the 5 steps since the periodic save at 70 are lost
        ("KillBeforeValidation", 40, 40),  # SIGKILL after an epoch's last step, saved periodically, before its end
        ("TerminateDuringStep", 39, 40),  # SIGTERM during an epoch's last step: saved there, then it stops
        ("TerminateWhileCheckpointing", 20, 21),  # after step 20's save point, as its periodic checkpoint is written
        ("TerminateDuringValidation", 40, 41),  # validation ends, then one more step, saved, then it stops
    ],
)
def test_killed_at_an_exact_moment_then_resume_ends_with_the_weights_of_an_unbroken_run(
    tmp_path: Path, unbroken: dict, fault: str, step: int, saved_step: int
) -> None:
    """SIGKILL cannot be caught: the newest last.ckpt (every 10 steps with configs/preemptible.yaml) is what
    survives, and the resumed run repeats the steps since. Killed on an epoch's last step, the saved loader
    position says "the next epoch, from its start", as Lightning resumes there."""
    proc = run_cli(
        "fit",
        *RESUMABLE,
        f"--trainer.callbacks+=helpers.faults.{fault}",
        "--trainer.callbacks.init_args.step",
        str(step),
        cwd=tmp_path,
        check=False,
    )
    if fault.startswith("Kill"):  # SIGKILL ends the process there
        assert proc.returncode == -signal.SIGKILL
    else:  # after SIGTERM the run ends itself once the step is saved, with the exit status of a SIGTERM
        assert (
            proc.returncode == 128 + signal.SIGTERM
            and f"Interrupted at epoch {(saved_step - 1) // 40}, step {saved_step}" in proc.stdout
        )
    saved = torch.load(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == saved_step
    diff = resume_and_compare(tmp_path, unbroken)
    print(f"{fault} at step {step}: resumed from step {saved_step}; max |weight difference|: {diff:.3g}")
    assert diff == 0.0


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """The disk fills up as a checkpoint is written (torch.save raises ENOSPC, as it does on a full disk)."""
    import errno

    import lightning.fabric.utilities.cloud_io as cloud_io

    from lit_nets import __main__ as cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cloud_io.torch, "save", full)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])  # the CLI gets its arguments below, not pytest's
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            [
                "fit",
                "--config",
                str(CONFIGS / "mlp.yaml"),
                "--trainer.max_epochs",
                "1",
                "--trainer.enable_progress_bar",
                "false",
                "--figures.enabled",
                "false",
            ]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "error: no space left on the device" in err and "Traceback" not in err


def test_a_checkpoint_of_another_model_and_data_is_one_line(tmp_path: Path, monkeypatch, capfd) -> None:
    here = {"cwd": tmp_path, "monkeypatch": monkeypatch, "capfd": capfd}
    in_process(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--trainer.max_epochs",
        "1",
        "--test_after_fit",
        "false",
        "--figures.enabled",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        **here,
    )
    wine = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    proc = in_process(
        "test", "--config", str(CONFIGS / "cnn.yaml"), "--data.download", "false", "--ckpt_path", str(wine), **here
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "holds MLPClassifier for 3 classes of input [13], but this run's data gives 10 classes" in proc.stderr


def test_ddp_with_two_cpu_processes_logs_metrics_of_the_whole_validation_set(tmp_path: Path) -> None:
    """The README's DDP command as written (figures and the test after fit on), for 2 epochs: 2 gloo processes. The
    logged val/acc is the synchronised torchmetrics value over every validation batch, so validating the same
    checkpoint in one process gives the same figure (up to the one padded batch)."""
    from helpers.cli import scalars

    # README: python -m lit_nets fit --config configs/cnn.yaml --config configs/ddp.yaml --trainer.accelerator cpu
    #         --trainer.devices 2
    proc = run_cli(
        "fit",
        "--config",
        str(CONFIGS / "cnn.yaml"),
        "--config",
        str(CONFIGS / "ddp.yaml"),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.max_epochs",
        "2",
        cwd=tmp_path,
        timeout=400,
    )  # the defaults on: a hang, as rank 0 once waited in a figure, fails here
    run = tmp_path / "lightning_logs" / "version_0"
    assert "Test (best):  test/acc 0.9" in proc.stdout, proc.stdout[-3000:]
    for figure in ("filters_conv1.png", "activations_conv1.png", "confusion_matrix_test.png", "mistakes_test.png"):
        assert (run / figure).is_file(), figure
    logged = dict(scalars(run)["val/acc"])
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2 * 29  # each process: every other of the 57 batches of 64, for 2 epochs
    in_process(
        "validate",
        "--config",
        str(CONFIGS / "cnn.yaml"),
        "--data.download",
        "false",
        "--ckpt_path",
        str(run / "checkpoints" / "last.ckpt"),
        cwd=tmp_path,
        check=True,
    )
    single = scalars(tmp_path / "lightning_logs" / "version_1")["val/acc"][-1][1]
    print(
        f"val/acc logged by 2 DDP processes {logged[max(logged)]:.4f}, one process on the same checkpoint {single:.4f}"
    )
    assert abs(logged[max(logged)] - single) <= 0.01, (logged, single)
    # the same 2 epochs in one process (twice the optimiser steps, half the batch) reach a similar accuracy
    in_process(
        "fit", "--config", str(CONFIGS / "cnn.yaml"), "--trainer.max_epochs", "2", *FAST[4:], cwd=tmp_path, check=True
    )
    alone = dict(scalars(tmp_path / "lightning_logs" / "version_2")["val/acc"])
    print(f"val/acc after 2 epochs: 2 DDP processes {logged[max(logged)]:.4f}, one process {alone[max(alone)]:.4f}")
    assert abs(logged[max(logged)] - alone[max(alone)]) <= 0.04, (logged, alone)


@pytest.mark.slow
def test_fifty_epochs_do_not_grow_memory_and_keep_the_configured_checkpoints(tmp_path: Path, monkeypatch) -> None:
    """50 epochs of the wine MLP in this process: resident memory after epoch 10 and after epoch 50 differ by less
    than 20 MB, and with save_top_k 2 the folder holds the 2 best epochs plus last.ckpt."""
    from lightning.pytorch.callbacks import Callback

    from lit_nets.train.cli import LitNetsCLI

    class Memory(Callback):
        def __init__(self) -> None:
            self.rss: list[float] = []

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            self.rss.append(pages * os.sysconf("SC_PAGE_SIZE") / 2**20)

    monkeypatch.chdir(tmp_path)
    cli = LitNetsCLI(
        args=[
            "--config",
            str(CONFIGS / "mlp.yaml"),
            "--trainer.max_epochs",
            "50",
            "--checkpoint.save_top_k",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--figures.enabled",
            "false",
        ],
        run=False,
    )
    memory = Memory()
    cli.trainer.callbacks.append(memory)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    growth = memory.rss[49] - memory.rss[9]
    print(f"RSS after epoch 10: {memory.rss[9]:.1f} MB, after epoch 50: {memory.rss[49]:.1f} MB ({growth:+.1f} MB)")
    assert growth < 20, memory.rss
    kept = sorted(p.name for p in (tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt"))
    assert len(kept) == 3 and "last.ckpt" in kept, kept


# RESUMABLE through the Python door: a script a user runs, interrupted with Ctrl-C
PYTHON_FIT = f"""
import sys
from lit_nets import api
trainer = {{"max_epochs": 3, "limit_train_batches": 40, "limit_val_batches": 2, "deterministic": True,
           "enable_progress_bar": False, "callbacks": {{"init_args": {{"every_n_train_steps": 10}}}}}}
try:
    api.fit([{str(CONFIGS / "cnn.yaml")!r}, {str(CONFIGS / "preemptible.yaml")!r}], trainer=trainer,
            data={{"download": False}}, figures={{"enabled": False}}, test_after_fit=False)
except KeyboardInterrupt as e:
    print("KeyboardInterrupt:", e)
    sys.exit(130)
"""


def test_ctrl_c_in_python_saves_the_step_and_resuming_ends_with_the_weights_of_an_unbroken_run(
    tmp_path: Path, unbroken: dict
) -> None:
    """api.fit in a script (or a notebook's kernel) stopped with Ctrl-C: the caller gets KeyboardInterrupt, the
    step reached is saved as last.ckpt, and resuming from it ends where the run never stopped does."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PYTHON_FIT], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    started = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"  # step 10 trained
    deadline = time.monotonic() + 300
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # a few more steps
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "KeyboardInterrupt: training interrupted: saved" in out, out[-3000:]
    saved = torch.load(started, weights_only=True)
    said = out.split("Interrupted at epoch ")[1].split(":")[0]  # "E, step S"
    assert said == f"{saved['epoch']}, step {saved['global_step']}" and 0 < saved["global_step"] < 120
    assert out.count("Interrupted at epoch") == 1  # saved once
    diff = resume_and_compare(tmp_path, unbroken)
    print(f"Ctrl-C at step {saved['global_step']}; max |weight difference| after resuming: {diff:.3g}")
    assert diff == 0.0
