"""``python -m lit_nets tune``: an Optuna search on the wine CSV, each trial a normal fit run; the winner's best.yaml,
pruning, a killed study resumed, and one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from helpers.cli import CONFIGS, in_process, scalars
from optuna.trial import TrialState
from PIL import Image

QUIET = ("--trainer.enable_progress_bar", "false", "--figures.enabled", "false")
MLP = ("--config", str(CONFIGS / "mlp.yaml"))
SPACE = ("--space", str(CONFIGS / "search" / "mlp.yaml"))


def load(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """Four trials of the shipped MLP space on wine, 12 epochs each (the median pruner on, as by default)."""
    work = tmp_path_factory.mktemp("tune")
    proc = in_process(
        "tune", *MLP, *SPACE, "--trials", "4", "--trainer.max_epochs", "12", *QUIET, cwd=work, check=False
    )
    assert proc.returncode == 0
    return work


def test_four_trials_make_a_study_of_runs_and_the_figures(searched) -> None:
    work = searched
    folder = work / "lightning_logs" / "tune" / "mlp"
    study = load(folder, "mlp")
    assert len(study.trials) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    first = study.trials[0]
    assert first.user_attrs["config_values"] and first.params["model.init_args.lr"] == 0.003, "trial 0: the config"
    assert json.loads(first.params["model.init_args.hidden"]) == [64, 32]
    for trial in study.trials:
        run = folder / f"trial_{trial.number}"
        assert (run / "config.yaml").exists() and trial.user_attrs["run"].endswith(f"trial_{trial.number}")
        assert f"lr: {trial.params['model.init_args.lr']}" in (run / "config.yaml").read_text()
        assert not any(k.startswith("test/") for k in scalars(run)), "the test split is never run in a trial"
    assert study.best_value < 0.2 and study.direction.name == "MINIMIZE", "mlp.yaml's checkpoint monitors val/loss"
    for name in ("history", "importances", "slice"):
        with Image.open(folder / f"{name}.png") as image:
            assert image.size[0] > 300 and image.size[1] > 200
    board = scalars(folder)  # the study folder's own events: a point per complete trial, and the figures
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert [step for step, _ in board["tune/val/loss"]] == [t.number for t in complete]
    assert min(v for _, v in board["tune/best_val/loss"]) == pytest.approx(study.best_value)
    assert len((folder / "trials.csv").read_text().splitlines()) == 1 + 4


def test_best_yaml_trains_the_winner_to_its_score_and_tests_it(searched, monkeypatch, capfd) -> None:
    work = searched
    folder = work / "lightning_logs" / "tune" / "mlp"
    study = load(folder, "mlp")
    proc = in_process("fit", "--config", str(folder / "best.yaml"), cwd=work, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = float(proc.stdout.split("Best:")[1].split("(val/loss ")[1].split(")")[0])
    assert best == pytest.approx(study.best_value, abs=1e-4), "the same seed and values: the same best epoch"
    assert "Test (best):  test/acc" in proc.stdout and "lightning_logs/version_0" in proc.stdout


def test_a_trial_the_pruner_stops_is_recorded_as_pruned(tmp_path: Path, monkeypatch, capfd) -> None:
    """Trial 0 is the config (lr 0.003); a trial with lr 1e-6 learns nothing, and the median pruner, on from the
    second trial and the first epoch here, stops it."""
    space = tmp_path / "lr.yaml"
    space.write_text("model.lr: {type: categorical, choices: [0.003, 1.0e-6]}\n")  # the short form of the path
    proc = in_process(
        "tune",
        *MLP,
        "--space",
        str(space),
        "--trials",
        "4",
        "--startup_trials",
        "1",
        "--warmup_epochs",
        "0",
        "--trainer.max_epochs",
        "10",
        *QUIET,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(tmp_path / "lightning_logs" / "tune" / "mlp", "mlp")
    by_lr = {lr: [t for t in study.trials if t.params["model.init_args.lr"] == lr] for lr in (0.003, 1e-6)}
    assert by_lr[1e-6], "the sampler's seed 0 draws lr 1e-6 for a trial after the first"
    assert all(t.state == TrialState.PRUNED for t in by_lr[1e-6])
    assert all(t.user_attrs["pruned_after"]["epochs"] < 10 for t in by_lr[1e-6])
    assert all(t.state == TrialState.COMPLETE for t in by_lr[0.003])
    assert "pruned after 1 epoch (val/loss" in proc.stdout
    assert f"Best config:  {Path('lightning_logs/tune/mlp/best.yaml')}" in proc.stdout.replace("./", "")


def test_a_killed_study_continues_to_its_total(tmp_path: Path, monkeypatch, capfd) -> None:
    """SIGTERM to tune's process while trial 2 trains; the same command again finishes the 4 trials in the same
    study, with trial 2's parameters run again."""
    args = ["tune", *MLP, *SPACE, "--trials", "4", "--pruner", "none", "--trainer.max_epochs", "15", *QUIET]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lit_nets", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    folder = tmp_path / "lightning_logs" / "tune" / "mlp"
    training = folder / "trial_2" / "checkpoints" / "last.ckpt"  # trial 2 has trained an epoch
    deadline = time.monotonic() + 300
    while not training.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Interrupted at epoch" in out, out[-3000:]
    assert "tune: stopped with 2 of 4 trials done; the same command continues the study" in out
    before = load(folder, "mlp").trials  # trials are queued as they are taken: none waits beyond trial 2
    assert [t.state for t in before] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]

    again = in_process(*args, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trial 2 was interrupted; its parameters are run again" in again.stderr
    after = load(folder, "mlp").trials
    assert [t.state for t in after] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert [t.datetime_complete for t in after[:2]] == [t.datetime_complete for t in before[:2]], "kept, not re-run"
    assert after[3].params == before[2].params and after[3].system_attrs["failed_trial"] == 2
    assert after[4].params != before[2].params, "trial 4 is the sampler's, not a copy"
    assert "(4 of 4 trials" not in again.stderr and "(2 of 4 trials done)" in again.stderr


def test_tune_with_cv_scores_a_trial_by_its_folds(tmp_path: Path, monkeypatch, capfd) -> None:
    proc = in_process(
        "tune",
        *MLP,
        *SPACE,
        "--trials",
        "2",
        "--cv",
        "2",
        "--pruner",
        "none",
        "--name",
        "folds",
        "--trainer.max_epochs",
        "5",
        *QUIET,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "lightning_logs" / "tune" / "folds"
    study = load(folder, "folds")
    for trial in study.trials:
        assert sorted(p.name for p in (folder / f"trial_{trial.number}").glob("fold_*")) == ["fold_0", "fold_1"]
        assert trial.value == pytest.approx(sum(trial.user_attrs["folds"]) / 2)
    assert "on the mean over 2 folds" in proc.stdout


def test_rerun_with_other_settings_is_refused(searched, monkeypatch, capfd) -> None:
    work = searched
    proc = in_process(
        "tune",
        *MLP,
        *SPACE,
        "--trials",
        "4",
        "--trainer.max_epochs",
        "20",
        *QUIET,
        cwd=work,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert (
        proc.returncode == 2
        and "holds a study with other settings (trainer.max_epochs 20, the study's 12)" in proc.stderr
    )


@pytest.mark.parametrize(
    ("space", "args", "message"),
    [
        (
            "model.init_args.lrr: {type: float, low: 0.001, high: 0.1}",
            (),
            "model.init_args.lrr is not an option of this config; closest: model.init_args.lr",
        ),
        ("model.init_args.dropout: {type: float, low: 0.5, high: 0.5}", (), "the range [0.5, 0.5] is empty"),
        ("model.init_args.hidden: {type: categorical, choices: []}", (), "choices must be a non-empty list"),
        ("model.init_args.lr: {type: float, low: 0.0, high: 0.1, log: true}", (), "a log range needs low > 0"),
        ("model.init_args.lr: {type: uniform, low: 0.001, high: 0.1}", (), "type 'uniform' is not one of"),
        (
            "model.init_args.lr: {type: float, low: 0.001, high: 0.1}",
            ("--metric", "val/acx"),
            "tune --metric val/acx is never logged; this run logs val/acc, val/ece, val/f1, val/loss, val/nll",
        ),
        (
            "model.init_args.lr: {type: float, low: 0.001, high: 0.1}",
            ("--metric", "test/acc"),
            "the test split is never used to choose",
        ),
        ("model.init_args.lr: {type: float, low: 0.001, high: 0.1}", ("--cv", "1"), "tune --cv must be 2 or more"),
        ("model.init_args.lr: {type: float, low: 0.001, high: .inf}", (), "high inf is not a finite float"),
        (
            "data.init_args.batch_size: {type: int, low: 1, high: 100000000000000000000000}",
            (),
            "high 100000000000000000000000 is not a finite int",
        ),
        (
            'model.init_args.lr: {type: float, low: 0.001, high: 0.1, log: "false"}',
            (),
            "log must be true or false (without quotes), got 'false'",
        ),
        (
            "data.init_args.batch_size: {type: int, low: 16, high: 32, step: 64}",
            (),
            "step 64 is larger than the range [16, 32]",
        ),
        (b"model.init_args.lr: {type: float, low: 0.001, high: 0.1} # caf\xe9\n", (), "not UTF-8 text (byte 0xe9"),
        (
            "model.init_args.lr: {type: float, low: 0.001, high: 0.1}",
            ("--timeout", "0"),
            "tune --timeout is in seconds and must be above 0",
        ),
        (
            "model.init_args.lr: {type: float, low: 0.001, high: 0.1}",
            ("--name", "../../x"),
            "tune --name '../../x': give a plain folder name",
        ),
        ("model.init_args.lr: {type: float, low: 0.001, high: 0.1}", ("--name", "w/"), "--name 'w/': give a plain"),
        (
            "model.init_args.lr: {type: float, low: 0.001, high: 0.1}",
            ("--storage", "postgresql://lit:topsecret@127.0.0.1:1/tune"),
            "tune --storage postgresql://lit:***@127.0.0.1:1/tune: cannot open the study's database (connection",
        ),
        (
            "model.init_args.lr: {type: float, low: 0.001, high: 0.1}",
            ("--storage", "mysql://lit:topsecret@127.0.0.1/tune"),
            "its database driver is not installed (no module 'MySQLdb'); PostgreSQL's comes with the tune extra",
        ),
        ("model.init_args.lr: {type: float, low: 0.001, high: 0.1}", ("--workers", "0"), "--workers must be 1 or"),
        (
            "model.init_args.dropout: {type: float, low: 1.5, high: 2.5}",
            (),
            "tune: trial 0 (model.init_args.dropout 2.049) stopped: model: dropout must be in [0, 1), got 2.04",
        ),
    ],
)
def test_bad_search_input_is_one_line(tmp_path: Path, monkeypatch, capfd, space: str, args: tuple, message: str):
    if isinstance(space, bytes):
        (tmp_path / "space.yaml").write_bytes(space)
    else:
        (tmp_path / "space.yaml").write_text(space + "\n")
    proc = in_process(
        "tune",
        *MLP,
        "--space",
        str(tmp_path / "space.yaml"),
        "--trials",
        "1",
        "--trainer.max_epochs",
        "1",
        *args,
        *QUIET,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()[-1]) > 20 and proc.stderr.strip().splitlines()[-1].startswith("error:")
    assert "Namespace(" not in proc.stderr and "[W " not in proc.stderr  # no Optuna warning with the config's dump
    assert "topsecret" not in proc.stderr, "a storage URL's password is never printed"
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob("lightning_logs/tune/w*"))  # nothing written


def test_tune_on_an_image_folder_with_the_cnn_space(tmp_path: Path, monkeypatch, capfd) -> None:
    """The shipped CNN space on the PNG-folder sample (2 trials of 10 steps): every key of it is an option of a
    folder config too, and trial 0 is configs/png_folder.yaml's own values."""
    proc = in_process(
        "tune",
        "--config",
        str(CONFIGS / "png_folder.yaml"),
        "--space",
        str(CONFIGS / "search" / "cnn.yaml"),
        "--trials",
        "2",
        "--pruner",
        "none",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "10",
        *QUIET,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(tmp_path / "lightning_logs" / "tune" / "png_folder", "png_folder")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.trials[0].params["model.init_args.lr"] == 0.001 and study.best_value > 0.3  # val/acc, 10 steps
    assert "trial 0 samples what the space does not hold" not in proc.stderr
