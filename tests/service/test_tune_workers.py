"""``tune --workers N`` on the embedded SQLite study: SIGTERM to the one process started stops every worker, and the
same command finishes the study (the PostgreSQL-shared cases are in test_shared_tune.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import optuna
from helpers.tuning import DONE, finish, start, trials, wait_for
from optuna.trial import TrialState


def test_sigterm_stops_every_worker_and_the_same_command_finishes(tmp_path: Path) -> None:
    """The embedded SQLite study with two workers: SIGTERM to the one process started, while a trial trains, stops
    both workers (the command exits 143 only after both have ended; their trials are left to run again); the same
    command finishes the study at exactly 3 finished trials, each interrupted one run again with its parameters."""
    args = ("--name", "stopped", "--trials", "3", "--workers", "2", "--pruner", "none", "--early_stopping", "null",
            "--trainer.max_epochs", "40")  # fmt: skip
    proc = start(tmp_path, *args)
    folder = tmp_path / "lightning_logs" / "tune" / "stopped"
    url = f"sqlite:///{folder / 'study.db'}"

    def training() -> list[optuna.trial.FrozenTrial]:
        if not list(folder.glob("trial_*/checkpoints/last.ckpt")):  # the study's tables are made by then (a
            return []  # reader opening the file while the command creates them would try to create them too)
        running = [t for t in trials(url, "stopped") if t.state == TrialState.RUNNING]
        return [t for t in running if (folder / f"trial_{t.number}" / "checkpoints" / "last.ckpt").exists()]

    # a trial in training (under load the second worker may still be starting, or waiting: both are stopped alike)
    wait_for(training, "a worker to train an epoch", proc=proc)
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    stopped = trials(url, "stopped")
    done = sum(t.state in DONE for t in stopped)
    assert f"tune: stopped with {done} of 3 trials done; the same command continues the study" in out
    interrupted = [t for t in stopped if t.state == TrialState.RUNNING]
    assert 1 <= len(interrupted) <= 2, "each worker's trial is left to run again"

    again = start(tmp_path, *args)
    out = finish(again)
    assert again.returncode == 0, out[-3000:]
    study = trials(url, "stopped")
    assert sum(t.state in DONE for t in study) == 3
    assert sum(t.state == TrialState.FAIL for t in study) == len(interrupted)
    for trial in interrupted:
        assert f"trial {trial.number} was interrupted; its parameters are run again" in out
        copy = [t for t in study if t.system_attrs.get("failed_trial") == trial.number]
        assert len(copy) == 1 and copy[0].params == trial.params and copy[0].state in DONE
