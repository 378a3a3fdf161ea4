"""Running ``python -m lit_nets tune`` as a user does and reading its study back: shared by the tests of many
workers (tests/service/test_shared_tune.py, test_tune_workers.py)."""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from helpers.cli import CONFIGS
from lit_nets.train import tune_slots, tune_study

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


# tune's worker loop without training (tests/integration/test_tune_slots.py, tests/service/test_shared_tune.py)


def options(**given) -> argparse.Namespace:
    defaults = dict(storage=None, heartbeat=30, trials=40, timeout=None, seed=0, name="slots", pruner="none")
    return argparse.Namespace(**{**defaults, **given})


def shared_study(folder: Path, **given) -> tune_slots.Shared:
    """The study ``slots`` in ``folder`` (created by the first caller), as a worker opens it."""
    opts = options(**given)
    rdb = tune_study.storage(opts, folder)
    try:
        study = optuna.create_study(storage=rdb, study_name=opts.name)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=opts.name, storage=rdb)
    return tune_slots.Shared(study, rdb, opts, folder)


def worker(folder: Path, start: float, total: int, storage: str | None, name: str) -> None:
    """One process of a study: the tune loop with an objective that records which trial it ran."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    shared = shared_study(folder, trials=total, storage=storage, name=name)
    ran = folder / f"ran_{os.getpid()}"

    def objective(trial) -> float:
        with open(ran, "a") as f:
            f.write(f"{trial.number}\n")
        return float(trial.number)

    while time.time() < start:  # every process starts taking at the same moment
        time.sleep(0.001)
    tune_slots.work(shared, objective, lambda study, frozen: None)


def run_workers(folder: Path, processes: int, total: int, storage: str | None = None, name: str = "slots") -> list[int]:
    """``processes`` workers on one study of ``total`` trials; every trial number any of them ran."""
    shared_study(folder, storage=storage, name=name)  # the study exists before they start
    start = time.time() + 2
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=worker, args=(folder, start, total, storage, name)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    return [int(line) for file in folder.glob("ran_*") for line in file.read_text().split()]
