"""How the workers of a study take its trials: exactly ``--trials`` of them, none run by two workers at once.

Trials are queued one at a time, as workers need them: a worker that finds nothing queued queues one trial under
the study's slot lock (a file lock beside an embedded study, an advisory lock in PostgreSQL or MySQL) when the study
holds fewer than ``--trials`` that count, then takes a queued trial with Optuna's atomic WAITING -> RUNNING change.
So ``--trials 1000000`` starts at once, and a killed run leaves at most a queued trial per worker behind. Two
workers that queued at the same moment on a database without such a lock make one trial too many: the one whose
number is past ``--trials`` is marked ``surplus`` and failed before it runs.

A running trial has a heartbeat (a thread here that records it every ``--heartbeat`` seconds). A trial whose
heartbeat is 3 beats old is failed by the next worker that looks, and run again once with its parameters (Optuna's
retry callback) -- unless its worker is a live process of this machine (a late heartbeat on a busy machine is not a
death). A worker on another machine can still be declared dead by a late heartbeat: it learns so at its next epoch
and drops the trial, with a line that says to raise ``--heartbeat``. A database that stops answering ends the
command with one line; the same command continues the study once it answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lit_nets.core import private_api
from lit_nets.core.errors import UserError, shown_url
from lit_nets.train.tune_report import finished
from lit_nets.train.tune_study import RETRY, counted, reason

CURRENT: dict[int, Heartbeat] = {}  # the heartbeat of each trial this process runs, by Optuna's trial id


class TakenOver(Exception):
    """The trial this worker runs was declared dead by another worker (its heartbeat came late) and is run again
    there."""


@dataclass
class Shared:
    """A worker's view of the study: the study, its RDB storage (read without Optuna's cache of this process's own
    trials), and the options and folder of the command."""

    study: Any
    rdb: Any
    options: Any
    folder: Path

    @property
    def study_id(self) -> int:
        return self.rdb.get_study_id_from_name(self.study.study_name)

    @property
    def where(self) -> str:
        return shown_url(self.options.storage) if self.options.storage else str(self.folder / "study.db")


@contextlib.contextmanager
def slot_lock(shared: Shared) -> Iterator[None]:
    """Only one worker at a time counts the study's trials and queues one: a file lock beside an embedded (SQLite)
    study, PostgreSQL's and MySQL's advisory locks for a shared one; none for another database (the surplus check
    then keeps the count)."""
    from sqlalchemy import text

    dialect = shared.rdb.engine.dialect.name
    key = int.from_bytes(hashlib.sha1(f"lit_nets:{shared.study.study_name}".encode()).digest()[:8], "big", signed=True)
    if dialect == "sqlite":
        import fcntl

        with open(shared.folder / ".slots.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        return
    lock_sql = {
        "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
        "mysql": ("SELECT GET_LOCK(:key, 60)", "SELECT RELEASE_LOCK(:key)"),
    }.get(dialect)
    if lock_sql is None:
        yield
        return
    with shared.rdb.engine.connect() as connection:
        connection.execute(text(lock_sql[0]), {"key": key if dialect == "postgresql" else str(key)})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text(lock_sql[1]), {"key": key if dialect == "postgresql" else str(key)})
            connection.commit()


def top_up(shared: Shared, total: int) -> bool:
    """Queue one trial when nothing is queued and the study holds fewer than ``total`` that count; whether a queued
    trial is there now."""
    with slot_lock(shared):
        trials = shared.rdb.get_all_trials(shared.study_id, deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return True
        if len(counted(trials)) >= total:
            return False
        shared.study.enqueue_trial({})
        return True


def take(shared: Shared, total: int) -> Any:
    """A queued trial, now RUNNING here and marked with this worker (``host:pid``, where its run folder is); None
    when nothing is queued. A trial past the study's count (two workers queued at once) is failed as surplus."""
    study = shared.study
    while True:
        trial = private_api.take_queued_trial(study, lambda number: sampler(shared.options, number))
        if trial is None:
            return None
        before = [t for t in shared.rdb.get_all_trials(shared.study_id, deepcopy=False) if t.number < trial.number]
        if len(counted(before)) < max(total, int(study.user_attrs.get("trials", 0))):
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            trial.set_user_attr("worker_started", started(os.getpid()))
            return trial
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=TrialState.FAIL)


def started(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot, from ``/proc``): with the pid it names one
    process, whatever reuses the number later."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive_here(attrs: dict[str, Any]) -> bool:
    """Whether the worker a trial records is a live process of this machine."""
    host, _, pid = str(attrs.get("worker", "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    recorded = attrs.get("worker_started")
    return recorded is None or started(int(pid)) in (None, recorded)


def fail_dead_trials(shared: Shared) -> None:
    """Fail the running trials whose heartbeat is 3 beats old and whose worker is not alive on this machine, each
    queued again once with its parameters (Optuna's ``fail_stale_trials``, with the live-process check)."""
    for trial_id in private_api.stale_trial_ids(shared.rdb, shared.study_id):
        trial = shared.rdb.get_trial(trial_id)
        if alive_here(trial.user_attrs):
            continue
        try:
            if not shared.rdb.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RETRY(max_retry=1)(shared.study, shared.rdb.get_trial(trial_id))
        print(
            f"tune: trial {trial.number} (worker {trial.user_attrs.get('worker', '?')}) has not beaten for "
            f"{3 * shared.options.heartbeat} s: failed, and run again once with its parameters",
            file=sys.stderr,
            flush=True,
        )


class Heartbeat:
    """A thread that records a running trial's heartbeat every ``interval`` seconds and notices when another worker
    has failed the trial (:class:`TakenOver` at the trial's next epoch, :func:`check`). A database error here is
    kept, not raised: the trial's own next write says it."""

    def __init__(self, shared: Shared, trial: Any) -> None:
        self.rdb, self.trial_id, self.interval = shared.rdb, trial._trial_id, shared.options.heartbeat
        self.taken_over = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="lit_nets-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        CURRENT[self.trial_id] = self
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        CURRENT.pop(self.trial_id, None)

    def _beat(self) -> None:
        while True:
            try:
                self.rdb.record_heartbeat(self.trial_id)
                self.taken_over = self.rdb.get_trial(self.trial_id).state != TrialState.RUNNING
            except Exception:  # the database is away: the trial's next report says so, in one line
                pass
            if self.stopping.wait(self.interval):
                return


def check(trial: Any) -> None:
    """Stop the trial (:class:`TakenOver`) when another worker has failed it: called at every epoch."""
    beat = CURRENT.get(trial._trial_id)
    if beat is not None and beat.taken_over:
        raise TakenOver(trial.number)


def connection_lost(error: BaseException | None) -> str | None:
    """The database's reason when ``error`` comes from a database that stopped answering, else None."""
    from sqlalchemy import exc

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):  # already said in one line
            return None
        if isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError)):
            return reason(error)
        if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
            return reason(error)
        seen.add(id(error))
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None


def work(
    shared: Shared,
    objective: Callable[[Any], float],
    after: Callable[[Any, Any], None],
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """One worker's loop: take a queued trial (queueing one when none is), run it with a heartbeat, record it,
    until the study has ``--trials`` finished trials, nothing is left to take or run, or ``--timeout`` passes.
    While others' trials still run and nothing is queued, wait: one of them may die and be queued again."""
    options, study = shared.options, shared.study
    deadline = None if options.timeout is None else time.monotonic() + options.timeout
    running: Any = None
    try:
        while not stop() and (deadline is None or time.monotonic() < deadline):
            fail_dead_trials(shared)
            if len(finished(study)) >= options.trials:
                return
            running = take(shared, options.trials)
            if running is None:
                if top_up(shared, options.trials):
                    continue
                if not shared.rdb.get_all_trials(shared.study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                    return
                time.sleep(min(2.0, options.heartbeat))
                continue
            with Heartbeat(shared, running):
                frozen = run_one(study, running, objective, options.heartbeat)
            running = None
            if frozen is not None:
                after(study, frozen)
    except Exception as e:
        lost = connection_lost(e)
        if lost is None:
            raise
        what = f"trial {running.number} stays running there and" if running is not None else "the study"
        raise UserError(
            f"tune: the study's database {shared.where} stopped answering ({lost}); {what} goes on when you "
            "run the same command again, once the database answers (finished trials are kept)"
        ) from None


def run_one(study: Any, trial: Any, objective: Callable[[Any], float], heartbeat: int) -> Any:
    """Run ``trial`` and record its outcome: the frozen trial, or None when another worker took it over."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        outcome: dict[str, Any] = {"state": TrialState.PRUNED}
    except TakenOver:
        return taken_over(trial, heartbeat)
    except Exception as e:  # a user's error or our bug: recorded, then said (the command stops)
        if connection_lost(e) is None:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study.tell(trial, state=TrialState.FAIL)
        raise
    # KeyboardInterrupt, SIGTERM (Lightning's SystemExit): the trial stays RUNNING, to be run again
    else:
        outcome = {"values": value}
    try:
        return study.tell(trial, **outcome)
    except optuna.exceptions.UpdateFinishedTrialError:
        return taken_over(trial, heartbeat)


def taken_over(trial: Any, heartbeat: int) -> None:
    """Say that another worker declared this worker's trial dead, so its result is not recorded here."""
    print(
        f"tune: trial {trial.number}'s heartbeat came over {3 * heartbeat} s late, so another worker declared it "
        f"dead and runs its parameters again; this worker dropped it. A machine this busy needs a longer --heartbeat "
        f"(now {heartbeat})",
        file=sys.stderr,
        flush=True,
    )


def sampler(options: Any, number: int) -> Any:
    """The sampler for trial ``number``: TPE seeded by the trial's number, so a run repeats, and workers (whose
    trials have different numbers) propose different values."""
    return optuna.samplers.TPESampler(seed=options.seed + number)
