"""Where ``tune``'s study lives and how workers share it: the storage (SQLite in the study folder, or any database
Optuna's RDB storage takes), the study's settings, its trial slots, and the loop each worker runs.

A study of ``--trials N`` holds N *slots*: trials queued (Optuna's WAITING state) before any runs, the first with
the config's own values, the rest empty (the sampler fills them when a worker takes one). Workers only take queued
slots, each atomically (a WAITING -> RUNNING change in the database that one worker wins), and never create a trial:
so two workers, or twenty on five machines, finish a study of N trials with exactly N trials recorded. A worker
that dies leaves its trial RUNNING; without a heartbeat for ``--heartbeat`` x 3 seconds the next worker to look
fails it, and Optuna's retry callback queues it again once with its parameters (a second death is not retried:
the study gets a fresh slot instead, when the command next starts).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lit_nets.core import private_api
from lit_nets.core.errors import UserError, shown_url
from lit_nets.train import search_space
from lit_nets.train.tune_report import finished

RETRY = optuna.storages.RetryHeartbeatStaleTrialCallback


def embedded_url(folder: Path) -> str:
    """The default storage: SQLite in the study folder."""
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def storage(options: argparse.Namespace, folder: Path) -> Any:
    """The study's RDB storage, with a heartbeat per running trial and one retry of a trial whose worker died."""
    url = options.storage or embedded_url(folder)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=options.heartbeat,
                grace_period=3 * options.heartbeat,
                heartbeat_stale_trial_callback=RETRY(max_retry=1),
            )
    except ImportError as e:  # RDBStorage's, raised from the driver's ModuleNotFoundError
        name = getattr(e.__cause__, "name", None) or getattr(e, "name", None)
        raise UserError(
            f"tune --storage {shown_url(url)}: its database driver is not installed (no module {name!r}); "
            "PostgreSQL's comes with the tune extra (psycopg); for MySQL pip install pymysql and write "
            "mysql+pymysql://..."
        ) from None
    except Exception as e:  # SQLAlchemy's many: a wrong URL, a refused connection, a bad password
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise UserError(
            f"tune --storage {shown_url(url)}: cannot open the study's database ({reason}); check the URL "
            "(dialect://user:password@host:port/database), that the server runs, and that the database exists"
        ) from None


def open_study(
    folder: Path, options: argparse.Namespace, settings: dict[str, Any], direction: str, worker: bool = False
) -> Any:
    """The study: a new one, or the one in the storage when its settings are these. A worker started by ``tune
    --workers`` only loads it (the command that started it has checked and written the settings)."""
    embedded = options.storage is None
    if embedded:
        names = optuna.get_all_study_names(embedded_url(folder)) if (folder / "study.db").exists() else []
        if options.name not in names and any(folder.glob("trial_*")):
            raise UserError(
                f"{folder} holds trial runs but no study of them (study.db is gone): move the folder away or "
                "give --name for a new study"
            )
    pruner = {
        "median": lambda: optuna.pruners.MedianPruner(options.startup_trials, options.warmup_epochs),
        "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }[options.pruner]()
    study = optuna.create_study(
        storage=storage(options, folder),
        study_name=options.name,
        direction=f"{direction}imize",
        pruner=pruner,
        load_if_exists=True,
    )
    if worker:
        return study
    if not embedded:
        refuse_others_runs(study, folder)
    where = f"{folder}" if embedded else f"the study {options.name} in {shown_url(options.storage)}"
    saved = study.user_attrs.get("settings")
    if saved is None or not finished(study):  # a study with nothing to compare yet takes this command's settings
        study.set_user_attr("settings", settings)
    elif saved != json.loads(json.dumps(settings)):
        raise UserError(
            f"{where} holds a study with other settings ({differences(saved, settings)}); give --name for "
            "a new study, or run this one with the settings it has"
        )
    return study


def refuse_others_runs(study: Any, folder: Path) -> None:
    """A shared study's trial runs go to ``folder/trial_N``: a folder that holds an embedded study (``study.db``) or
    trial runs this study did not record there is another study's, and its runs would be mixed with these."""
    ours = {t.user_attrs.get("run") for t in study.get_trials(deepcopy=False)}
    others = [p.name for p in sorted(folder.glob("trial_*")) if str(p) not in ours]
    if (folder / "study.db").exists() or others:
        embedded = (folder / "study.db").exists()
        what = "an embedded study (study.db)" if embedded else f"runs of another study ({others[0]})"
        raise UserError(
            f"{folder} holds {what}, not of the study {study.study_name} in this --storage: give --name for a "
            "folder of its own"
        )


def differences(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """What differs between a study's stored settings and this command's, in a few words."""
    now = json.loads(json.dumps(now))
    found = [
        f"{k} {now[k]!r}, the study's {saved.get(k)!r}"
        for k in ("metric", "direction", "cv", "space")
        if now[k] != saved.get(k)
    ]
    old, new = saved.get("config", {}), now["config"]
    found += [
        f"{k} {new.get(k)!r}, the study's {old.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    return "; ".join(found[:3]) + ("; ..." if len(found) > 3 else "")


def retry_interrupted(study: Any) -> None:
    """With the embedded study, a trial left running by a process that was killed (this process holds the study
    folder's lock, so none runs now) is failed at once and queued again with its parameters (once). A shared
    study cannot know that from here: there the heartbeat finds the dead (:func:`work`)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        retried = len(study.trials)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RETRY(max_retry=1)(study, study.trials[trial.number])
        if len(study.trials) > retried:
            print(f"tune: trial {trial.number} was interrupted; its parameters are run again", file=sys.stderr)
        else:
            print(f"tune: trial {trial.number} was interrupted again; a new trial takes its place", file=sys.stderr)


def fill_slots(study: Any, total: int, params: list[search_space.Param], values: dict[str, Any]) -> None:
    """Queue the trials the study lacks to hold ``total`` (trial 0 of a new study: the config's own values, where
    the space holds them, the baseline to beat; the rest empty, for the sampler)."""
    if not study.trials:
        inside = {p.path: p.stored(values[p.path]) for p in params if p.contains(values[p.path])}
        outside = [f"{p.path} {values[p.path]!r}" for p in params if p.path not in inside]
        if outside:
            print(
                f"tune: trial 0 samples what the space does not hold of the config's values: {', '.join(outside)}",
                file=sys.stderr,
            )
        study.enqueue_trial(inside, user_attrs={"config_values": True} if inside else None)
    held = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL]
    for _ in range(total - len(held)):
        study.enqueue_trial({})


def work(
    study: Any,
    options: argparse.Namespace,
    objective: Callable[[Any], float],
    after: Callable[[Any, Any], None],
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """One worker's loop: take a queued trial, run it with a heartbeat, record it, until the study has
    ``--trials`` finished trials, nothing is queued or running, or ``--timeout`` passes. While others' trials
    still run and nothing is queued, wait: one of them may die and be queued again."""
    deadline = None if options.timeout is None else time.monotonic() + options.timeout
    while not stop() and (deadline is None or time.monotonic() < deadline):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, queued again once
        if len(finished(study)) >= options.trials:
            return
        trial = private_api.take_queued_trial(study, lambda number: sampler(options, number))
        if trial is None:
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return
            time.sleep(min(2.0, options.heartbeat))
            continue
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # where its run folder is
        with private_api.heartbeat(trial):
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                frozen = study.tell(trial, state=TrialState.PRUNED)
            except Exception:  # a user's error or our bug: recorded, then said (the command stops)
                study.tell(trial, state=TrialState.FAIL)
                raise
            # KeyboardInterrupt, SIGTERM (Lightning's SystemExit): the trial stays RUNNING, to be run again
            else:
                frozen = study.tell(trial, value)
        after(study, frozen)


def sampler(options: argparse.Namespace, number: int) -> Any:
    """The sampler for trial ``number``: TPE seeded by the trial's number, so a run repeats, and workers (whose
    trials have different numbers) propose different values."""
    return optuna.samplers.TPESampler(seed=options.seed + number)
