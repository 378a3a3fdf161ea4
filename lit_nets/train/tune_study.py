"""Where ``tune``'s study lives and what it holds: the storage (SQLite in the study folder, or any database Optuna's
RDB storage takes), the settings it was created with, and its first trial. How workers take its trials is
:mod:`lit_nets.train.tune_slots`.

The command that *creates* a study records its settings (the config, the space, the objective) in the same moment;
every other command, worker or machine that opens it compares its own settings with those and is refused on any
difference, before it trains anything: one study never mixes trials of two settings.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lit_nets.core.errors import UserError, shown_url
from lit_nets.train import search_space

RETRY = optuna.storages.RetryHeartbeatStaleTrialCallback
SETTINGS_WAIT = 30.0  # seconds a command waits for the creator of a study to record its settings
# options that change how a run looks or where it runs, not what a trial scores: machines may differ in them
NOT_SETTINGS = ("trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.accelerator",
                "trainer.devices", "threads", "data.init_args.num_workers", "mlflow.")  # fmt: skip


def embedded_url(folder: Path) -> str:
    """The default storage: SQLite in the study folder."""
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def storage(options: Any, folder: Path) -> Any:
    """The study's RDB storage, with a heartbeat per running trial (its grace period: 3 beats)."""
    url = options.storage or embedded_url(folder)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=options.heartbeat,
                grace_period=3 * options.heartbeat,
            )
    except ImportError as e:  # RDBStorage's, raised from the driver's ModuleNotFoundError
        name = getattr(e.__cause__, "name", None) or getattr(e, "name", None)
        raise UserError(
            f"tune --storage {shown_url(url)}: its database driver is not installed (no module {name!r}); "
            "PostgreSQL's comes with the tune extra (psycopg); for MySQL pip install pymysql and write "
            "mysql+pymysql://..."
        ) from None
    except Exception as e:  # SQLAlchemy's many: a wrong URL, a refused connection, a bad password
        raise UserError(
            f"tune --storage {shown_url(url)}: cannot open the study's database ({reason(e)}); check the URL "
            "(dialect://user:password@host:port/database), that the server runs, and that the database exists"
        ) from None
    if url.startswith("sqlite"):
        serialize_sqlite(rdb.engine)
    return rdb


def serialize_sqlite(engine: Any) -> None:
    """Make every SQLite transaction take the database's write lock when it begins (``BEGIN IMMEDIATE``).

    Python's sqlite3 driver starts a transaction only at the first write, so the read of a trial's state and the
    write that takes it ran in two: two workers both read WAITING and both took the trial (measured: 136 takes of
    100 queued trials by 6 processes). SQLAlchemy's documented recipe for the driver; ``timeout`` (60 s) is how
    long a transaction waits for the lock."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners (the tables' creation) are not reused


def reason(error: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's background link."""
    found = getattr(error, "orig", None) or error
    return (str(found).strip().splitlines() or [type(found).__name__])[0]


def open_study(
    folder: Path, options: Any, settings: dict[str, Any], direction: str, worker: bool = False
) -> tuple[Any, Any, bool]:
    """The study, its RDB storage, and whether this command created it (then it recorded ``settings``). A command
    that finds the study compares its settings with the recorded ones first; a worker started by ``tune --workers``
    only loads it (the command that started it has checked)."""
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
    rdb = storage(options, folder)
    if not embedded and not worker:
        refuse_others_runs(rdb, options.name, folder)
    try:  # only one command creates a study (the storage's unique name): it alone records the settings
        study = optuna.create_study(storage=rdb, study_name=options.name, direction=f"{direction}imize", pruner=pruner)
        study.set_user_attr("settings", settings)
        return study, rdb, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=options.name, storage=rdb, pruner=pruner)
    if worker:
        return study, rdb, False
    where = f"{folder}" if embedded else f"the study {options.name} in {shown_url(options.storage)}"
    saved = recorded_settings(study)
    if saved is None:  # a study whose creator stopped before recording them, or of an older lit_nets
        study.set_user_attr("settings", settings)
    elif saved != json.loads(json.dumps(settings)):
        raise UserError(
            f"{where} holds a study with other settings ({differences(saved, settings)}); give --name for "
            "a new study, or run this one with the settings it has"
        )
    return study, rdb, False


def recorded_settings(study: Any) -> dict[str, Any] | None:
    """The settings the study's creator recorded: it does so right after creating it, so a command that found the
    study a moment earlier waits a little for them (None: never recorded)."""
    deadline = time.monotonic() + SETTINGS_WAIT
    while True:
        saved = study.user_attrs.get("settings")
        if saved is not None or study.get_trials(deepcopy=False) or time.monotonic() > deadline:
            return saved
        time.sleep(0.5)


def study_settings(options_now: dict[str, Any], params: list[search_space.Param], **objective: Any) -> dict:
    """What a study is created with and every later command must share: the config's values (less the searched
    ones and those that only change how a run is shown or where it runs), the space, the objective."""
    searched = {p.path for p in params}
    config = {k: v for k, v in options_now.items() if k not in searched and not k.startswith(NOT_SETTINGS)}
    return {"config": config, "space": [p.describe() for p in params], **objective}


def refuse_others_runs(rdb: Any, name: str, folder: Path) -> None:
    """A shared study's trial runs go to ``folder/trial_N``: a folder that holds an embedded study (``study.db``) or
    trial runs the study ``name`` did not record there is another study's, and its runs would be mixed with these."""
    ours = set()
    if name in optuna.get_all_study_names(rdb):
        ours = {t.user_attrs.get("run") for t in optuna.load_study(study_name=name, storage=rdb).trials}
    others = [p.name for p in sorted(folder.glob("trial_*")) if str(p) not in ours]
    if (folder / "study.db").exists() or others:
        embedded = (folder / "study.db").exists()
        what = "an embedded study (study.db)" if embedded else f"runs of another study ({others[0]})"
        raise UserError(
            f"{folder} holds {what}, not of the study {name} in this --storage: give --name for a folder of its own"
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
    study cannot know that from here: there the heartbeat finds the dead (:mod:`lit_nets.train.tune_slots`)."""
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


def first_trial(study: Any, params: list[search_space.Param], values: dict[str, Any]) -> None:
    """Queue a new study's trial 0: the config's own values where the space holds them, the baseline to beat.
    The other trials are queued one at a time as workers take them (:func:`lit_nets.train.tune_slots.top_up`)."""
    inside = {p.path: p.stored(values[p.path]) for p in params if p.contains(values[p.path])}
    outside = [f"{p.path} {values[p.path]!r}" for p in params if p.path not in inside]
    if outside:
        print(
            f"tune: trial 0 samples what the space does not hold of the config's values: {', '.join(outside)}",
            file=sys.stderr,
        )
    study.enqueue_trial(inside, user_attrs={"config_values": True} if inside else None)


def counted(trials: list[Any]) -> list[Any]:
    """The trials that hold a place among ``--trials``: queued, running or finished (not failed, and not a surplus
    trial that two workers' simultaneous queueing made one too many)."""
    return [t for t in trials if t.state != TrialState.FAIL and not t.user_attrs.get("surplus")]
