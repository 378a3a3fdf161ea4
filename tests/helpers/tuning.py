"""Running ``python -m lit_nets tune`` as a user does and reading its study back: shared by the tests of many
workers (tests/service/test_shared_tune.py, test_tune_workers.py)."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from helpers.cli import CONFIGS

SEARCH = ("--config", str(CONFIGS / "mlp.yaml"), "--space", str(CONFIGS / "search" / "mlp.yaml"))
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def start(cwd: Path, *args: str) -> subprocess.Popen:
    """``python -m lit_nets tune`` as a user starts it (no progress bars: its output is read by the test)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "lit_nets", "tune", *SEARCH, *args, "--trainer.enable_progress_bar", "false"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 400) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


@functools.cache
def storage(url: str) -> optuna.storages.RDBStorage:
    """One storage (one connection pool) per database for the test's own reads: a new one per poll would leave
    its connections open until the server refuses more."""
    return optuna.storages.RDBStorage(url)


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage(url)).trials


def has_study(url: str, name: str) -> bool:
    return name in optuna.study.get_all_study_names(storage(url))


def wait_for(condition, what: str, timeout: float = 300, proc: subprocess.Popen | None = None) -> None:
    """Poll ``condition``; fail after ``timeout``, or at once (with its output) when ``proc`` has ended."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the command ended (exit {proc.returncode}) before {what}: {finish(proc)[-3000:]}")
        time.sleep(0.1)
