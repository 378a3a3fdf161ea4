"""``tune --workers N`` on the embedded SQLite study: SIGTERM to the one process started stops every worker, and the
same command finishes the study (the PostgreSQL-shared cases are in test_shared_tune.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import optuna
from helpers.tuning import DONE, finish, has_study, start, trials, wait_for
from optuna.trial import TrialState


def test_sigterm_stops_every_worker_and_the_same_command_finishes(tmp_path: Path) -> None:
    """The embedded SQLite study with two workers: SIGTERM to the one process started, while both workers train,
    stops both (143, their trials left to run again); the same command finishes the study at exactly 3 finished
    trials, the two interrupted ones run again with their parameters."""
    args = ("--name", "stopped", "--trials", "3", "--workers", "2", "--pruner", "none", "--early_stopping", "null",
            "--trainer.max_epochs", "40")  # fmt: skip
    proc = start(tmp_path, *args)
    folder = tmp_path / "lightning_logs" / "tune" / "stopped"
    url = f"sqlite:///{folder / 'study.db'}"

    def both_training() -> list[optuna.trial.FrozenTrial]:
        if not (folder / "study.db").exists() or not has_study(url, "stopped"):
            return []
        running = [t for t in trials(url, "stopped") if t.state == TrialState.RUNNING]
        trained = [t for t in running if (folder / f"trial_{t.number}" / "checkpoints" / "last.ckpt").exists()]
        return trained if len(trained) == 2 else []

    wait_for(both_training, "both workers to train an epoch")
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    stopped = trials(url, "stopped")
    done = sum(t.state in DONE for t in stopped)
    assert f"tune: stopped with {done} of 3 trials done; the same command continues the study" in out
    interrupted = [t for t in stopped if t.state == TrialState.RUNNING]
    assert len(interrupted) == 2, "each worker's trial is left to run again"

    again = start(tmp_path, *args)
    out = finish(again)
    assert again.returncode == 0, out[-3000:]
    study = trials(url, "stopped")
    assert sum(t.state in DONE for t in study) == 3 and sum(t.state == TrialState.FAIL for t in study) == 2
    for trial in interrupted:
        assert f"trial {trial.number} was interrupted; its parameters are run again" in out
        copy = [t for t in study if t.system_attrs.get("failed_trial") == trial.number]
        assert len(copy) == 1 and copy[0].params == trial.params and copy[0].state in DONE
