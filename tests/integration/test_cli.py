"""End to end through the CLI in subprocesses, on the shipped MNIST sample, offline.

One 2-epoch fit is shared by the tests of this module (it is the slow part); each test then reads what it
left behind or continues from it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers.cli import CONFIGS, in_process, run_cli, scalars

# imported here, not under capsys: Lightning's log handlers keep the stderr they find when it is imported

CNN = str(CONFIGS / "cnn.yaml")
OFFLINE = ("--data.init_args.download", "false", "--trainer.enable_progress_bar", "false")
STEPS_PER_EPOCH = 57  # 3,600 training digits in batches of 64


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, object]:
    work = tmp_path_factory.mktemp("cli")
    proc = run_cli("fit", "--config", CNN, "--trainer.max_epochs", "2", *OFFLINE, cwd=work)
    return work, proc


def test_fit_logs_checkpoints_and_reaches_the_accuracy_bar(trained) -> None:
    work, proc = trained
    run = work / "lightning_logs" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("epoch*-val_acc*.ckpt"))) == 1
    assert (run / "config.yaml").is_file()
    logged = scalars(run)
    for tag in ("train/loss", "val/loss", "val/acc", "val/f1", "test/loss", "test/acc"):
        assert tag in logged, f"{tag} missing from the event file; logged: {sorted(logged)}"
    assert [step for step, _ in logged["val/acc"]] == [STEPS_PER_EPOCH - 1, 2 * STEPS_PER_EPOCH - 1]
    test_acc = logged["test/acc"][-1][1]
    assert test_acc >= 0.90, f"test accuracy {test_acc:.3f} after 2 epochs on the sample"
    # the run says where things are, and says loudly that it used the sample
    assert "Run folder:" in proc.stdout and "last.ckpt" in proc.stdout and "Test (best):  test/acc" in proc.stdout
    assert "OFFLINE SAMPLE" in proc.stderr
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())  # plain YAML: no Python tags
    assert "NOT the full MNIST" in hparams["data_source"]
    assert hparams["num_classes"] == 10 and hparams["input_shape"] == [1, 28, 28]


def test_resume_continues_epochs_and_steps(trained, monkeypatch, capfd, recwarn) -> None:
    work, _ = trained
    first = torch.load(work / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert (first["epoch"], first["global_step"]) == (1, 2 * STEPS_PER_EPOCH)
    proc = in_process(
        "fit",
        "--config",
        CNN,
        "--ckpt_path",
        "last",
        "--trainer.max_epochs",
        "3",
        *OFFLINE,
        cwd=work,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    assert "Restored all states from the checkpoint" in proc.stderr + proc.stdout
    resumed = newest_run(work)
    # in the run's own folder: its curves go on, and Lightning has nothing to warn about (a new folder made it say
    # that the dirpath changed and best_model_score would not be reloaded)
    assert resumed.name == "version_0" and "Resuming lightning_logs/version_0 in its own folder" in proc.stderr
    said = proc.stderr + " ".join(str(w.message) for w in recwarn)  # in this process, warnings are recorded
    assert "dirpath has changed" not in said and "exists and is not empty" not in said
    last = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 3 * STEPS_PER_EPOCH)
    steps = [step for step, _ in scalars(resumed)["val/acc"]]
    assert steps == [STEPS_PER_EPOCH - 1, 2 * STEPS_PER_EPOCH - 1, 3 * STEPS_PER_EPOCH - 1], "one curve, 3 epochs"


def newest_run(work: Path) -> Path:
    """The run folder under ``work/lightning_logs`` written last."""
    return max((work / "lightning_logs").glob("version_*"), key=lambda p: (p / "hparams.yaml").stat().st_mtime)


def test_last_checkpoint_is_the_last_epoch_when_the_best_is_an_earlier_one(tmp_path: Path, monkeypatch, capfd) -> None:
    """Lightning 2.6 writes last.ckpt only with a new best; here the "best" is the epoch with the highest training
    loss (the first, by far), and last.ckpt must still hold the final epoch, so that resuming continues after it."""
    short = (
        "--trainer.limit_train_batches",
        "10",
        "--trainer.limit_val_batches",
        "4",
        "--checkpoint.monitor",
        "train/loss",
        "--checkpoint.mode",
        "max",
    )
    here = {"cwd": tmp_path, "monkeypatch": monkeypatch, "capfd": capfd}
    assert in_process("fit", "--config", CNN, "--trainer.max_epochs", "3", *short, *OFFLINE, **here).returncode == 0
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    (best,) = checkpoints.glob("epoch*.ckpt")
    assert best.name.startswith("epoch00-"), best
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 30), "last.ckpt is the final state, not the best"
    resume = ("fit", "--config", CNN, "--ckpt_path", "last", "--trainer.max_epochs", "4", *short, *OFFLINE)
    assert in_process(*resume, **here).returncode == 0
    resumed = newest_run(tmp_path)
    last = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (3, 40)
    assert [step for step, _ in scalars(resumed)["val/acc"]][-1] == 39
    assert len([step for step, _ in scalars(resumed)["val/acc"] if step > 29]) == 1, "only the fourth epoch ran"


def test_test_subcommand_uses_the_best_checkpoint(trained, monkeypatch, capfd) -> None:
    work, _ = trained
    proc = in_process(
        "test",
        "--config",
        CNN,
        "--ckpt_path",
        "best",
        *OFFLINE,
        cwd=work,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    said = r"Checkpoint:   lightning_logs/version_0/checkpoints/(epoch\d\d-val_acc[\d.]+\.ckpt)  \(the best checkpoint "
    said += r"of the newest run; run version_0, epoch \d, val/acc [\d.]+\)"
    assert re.search(said, proc.stderr), proc.stderr[-800:]  # which checkpoint 'best' is, before anything runs
    # and says where its figures went
    folder = proc.stdout.split("Run folder:   ")[1].split()[0]
    assert f"Figures:      {folder.removeprefix('./')}/confusion_matrix_test.png" in proc.stdout, proc.stdout[-1500:]
    acc = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.strip().startswith("test/acc ")))
    assert acc >= 0.90


def test_predict_covers_every_test_image(trained, monkeypatch, capfd) -> None:
    work, _ = trained
    proc = in_process(
        "predict",
        "--config",
        CNN,
        "--ckpt_path",
        "best",
        *OFFLINE,
        cwd=work,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("Predicted 1,000 inputs; accuracy against their labels 0.9"), line


def test_print_config_round_trips(tmp_path: Path, monkeypatch, capfd) -> None:
    def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        proc = in_process(*args, cwd=cwd, monkeypatch=monkeypatch, capfd=capfd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    overrides = (
        "--model.init_args.dropout",
        "0.25",
        "--data.init_args.batch_size",
        "32",
        "--trainer.max_epochs",
        "1",
    )
    printed = run_cli("fit", "--config", CNN, *overrides, *OFFLINE, "--print_config", cwd=tmp_path).stdout
    (tmp_path / "printed.yaml").write_text(printed)
    again = run_cli("fit", "--config", "printed.yaml", "--print_config", cwd=tmp_path).stdout
    assert again == printed
    config = yaml.safe_load(printed)
    assert config["model"]["init_args"]["dropout"] == 0.25 and config["data"]["init_args"]["batch_size"] == 32
    # and the printed file runs
    run_cli(
        "fit",
        "--config",
        "printed.yaml",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--test_after_fit",
        "false",
        cwd=tmp_path,
    )
    saved = yaml.safe_load((tmp_path / "lightning_logs/version_0/config.yaml").read_text())
    assert saved["model"] == config["model"] and saved["data"] == config["data"]


def test_test_without_an_earlier_run_says_so(tmp_path: Path, monkeypatch, capfd) -> None:
    proc = in_process(
        "test", "--config", CNN, "--ckpt_path", "best", *OFFLINE, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd
    )
    assert proc.returncode == 2 and "no earlier run with checkpoints under lightning_logs/" in proc.stderr


def test_debug_overlay_stacks_on_a_config(tmp_path: Path, monkeypatch, capfd) -> None:
    proc = in_process(
        "fit",
        "--config",
        CNN,
        "--config",
        str(CONFIGS / "debug.yaml"),
        "--data.init_args.download",
        "false",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    last = torch.load(tmp_path / "lightning_logs/debug/version_0/checkpoints/last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (0, 10)
    assert "Test (best):" in proc.stdout


def test_help_reads_the_docstrings_from_the_module_and_the_console_script(tmp_path: Path, monkeypatch, capfd) -> None:
    """The installed ``lit-nets`` (which starts through lit_nets.__main__.run, like ``python -m lit_nets``) prints
    every subcommand, and each model argument's help is its docstring line."""
    script = Path(sys.executable).parent / "lit-nets"
    if not script.exists():
        pytest.skip("the lit-nets console script is not installed in this environment")
    top = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert top.returncode == 0, top.stderr[-3000:]
    for line in (
        "fit       train a model",
        "validate  evaluate a checkpoint",
        "test      evaluate a checkpoint",
        "predict   predictions.csv",
        "cv        k-fold cross-validation",
        "tune      a hyper-parameter search (Optuna)",
        "plot      learning curves",
        "explain   why a model decided: Grad-CAM",
        "export    state_dict, TorchScript",
        "serve     an HTTP service",
    ):
        assert f"\n  {line}" in top.stdout, top.stdout  # every subcommand, the tools too, with what it does
    assert top.stdout.startswith("usage: lit-nets SUBCOMMAND")
    typo = in_process("fti", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert typo.returncode == 2 and typo.stderr.strip() == (
        "error: unknown subcommand 'fti'; did you mean fit? The subcommands: fit, validate, test, predict, cv, tune, "
        "torchrun, plot, explain, export, serve, track (python -m lit_nets --help says what each does)"
    )
    model_help = in_process("fit", "--model.help", "CNNClassifier", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    model = " ".join(model_help.stdout.split())  # unwrapped
    assert "--model.channels_last" in model and "channels-last memory layout" in model
    assert "--model.optimizer" in model and "adam, adamw or sgd" in model


def test_the_full_mnist_recipe_trains_with_augmentation_and_smoothing_under_a_root_dir(
    tmp_path: Path, monkeypatch, capfd
) -> None:
    """configs/mnist_best.yaml (augmentation, label smoothing, one-cycle) as the README gives it, on the sample for 3
    epochs, with --trainer.default_root_dir: the runs go there (the default logger follows it, as Lightning's own
    does), ``test --ckpt_path best`` finds them there, and the test loss shows the smoothing: with 0.1 over 10
    classes no prediction can score a cross-entropy below 0.50 (without smoothing it would be about 0.1)."""
    common = ("--config", str(CONFIGS / "mnist_best.yaml"), "--trainer.default_root_dir", "runs", *OFFLINE)
    fit = in_process("fit", *common, "--trainer.max_epochs", "3", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert not (tmp_path / "lightning_logs").exists()
    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["hyper_parameters"]["label_smoothing"] == 0.1
    test = in_process("test", *common, "--ckpt_path", "best", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert test.returncode == 0, test.stderr[-3000:]
    logged = scalars(run.parent / "version_1")
    (acc,), (loss,) = logged["test/acc"], logged["test/loss"]
    assert acc[1] >= 0.9 and loss[1] > 0.5, (acc, loss)


def test_a_command_on_a_checkpoint_alone_prints_no_warning_about_its_arguments(trained) -> None:
    """``validate --ckpt_path best`` takes the classes from the checkpoint: Lightning warned that it was given
    arguments twice (the checkpoint's and the command line's), on every such command."""
    work, _ = trained
    proc = run_cli("validate", "--ckpt_path", "best", "--trainer.enable_progress_bar", "false", cwd=work)
    assert "val/acc" in proc.stdout and "args parameter is intended" not in proc.stderr, proc.stderr[-2000:]
