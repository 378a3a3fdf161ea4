"""``tune --workers N``: N worker processes on this machine that share the study, started and stopped by the one
command the user runs.

Each worker is ``python -m lit_nets tune`` with the same arguments and a hidden ``--worker K`` (the storage URL,
which may hold a password, in its environment instead of its command line): it loads the study
and runs trials (:func:`lit_nets.train.tune_study.work`) until the study has its trials. This process checks the
settings, queues the trials, waits for the workers, and writes the report. Their torch threads are the CPU share
divided by N (``LIT_NETS_THREADS`` in their environment; a user's number wins). SIGTERM or Ctrl-C here reaches
every worker (each saves its trial's ``last.ckpt`` and leaves the trial to be run again); a worker that stops with
an error stops the others; one killed from outside (``kill -9``, the OOM killer) does not: another runs its trial
again once the heartbeat says it is dead.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from lit_nets.core import threads
from lit_nets.core.errors import UserError

STORAGE_VARIABLE = "LIT_NETS_TUNE_STORAGE"  # how a worker gets the study's URL (tune.parse reads it)


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` less ``option VALUE`` and ``option=VALUE``."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            kept.append(arg)
    return kept


def run(argv: list[str], options: argparse.Namespace) -> None:
    """Start ``options.workers`` workers with ``argv`` (tune's own arguments), wait for them all."""
    count, why = threads.choose(processes=options.workers)
    env = {**os.environ, "LIT_NETS_THREADS": str(count)}
    if options.storage:  # in the environment, not the command line: a password in argv is anyone's to read (ps)
        env[STORAGE_VARIABLE] = options.storage
    print(
        f"tune: {options.workers} workers on this machine, {count} thread{'s' if count > 1 else ''} each ({why})",
        file=sys.stderr,
        flush=True,
    )
    command = [sys.executable, "-m", "lit_nets", "tune", *without_option(argv, "--storage")]
    workers = [subprocess.Popen([*command, "--worker", str(k)], env=env) for k in range(options.workers)]
    stopping: list[int] = []

    def stop_all(signum: int, _frame: object = None) -> None:
        stopping.append(signum)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, stop_all)
    failed = None
    killed: set[int] = set()
    try:
        while True:
            alive = [w.poll() is None for w in workers]  # every one polled: its returncode is read below
            for k, worker in enumerate(workers):
                if k in killed or stopping or worker.returncode in (None, 0):
                    continue
                if worker.returncode < 0:  # killed from outside (the OOM killer, kill -9): the others go on
                    killed.add(k)
                    print(
                        f"tune: worker {k} was killed (signal {-worker.returncode}); the others go on, and its "
                        f"trial runs again once its heartbeat is {3 * options.heartbeat} s old",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    failed = (k, worker.returncode)
                    stop_all(signal.SIGTERM)
            if not any(alive):
                break
            try:
                time.sleep(0.2)
            except KeyboardInterrupt:  # Ctrl-C: the workers stop as on SIGTERM (saved, their trials run again)
                stop_all(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for worker in workers:
            worker.wait()
    if stopping and failed is None:
        raise KeyboardInterrupt if stopping[0] == signal.SIGINT else SystemExit(128 + signal.SIGTERM)
    if len(killed) == len(workers):
        raise UserError("tune: every worker was killed from outside; the same command continues the study")
    if failed is not None:
        k, status = failed
        raise UserError(
            f"tune: worker {k} stopped with exit status {status} (its reason is above); the other workers were "
            "stopped; the same command continues the study"
        )
