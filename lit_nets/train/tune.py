"""``python -m lit_nets tune``: a hyper-parameter search with Optuna, each trial a normal ``fit`` run.

    python -m lit_nets tune --config configs/mlp.yaml --space configs/search/mlp.yaml --trials 40
    python -m lit_nets tune --config configs/mlp.yaml --space configs/search/mlp.yaml --trials 40 --cv 5

The space is a YAML file keyed by the CLI's dotted paths (:mod:`lit_nets.train.search_space`). A trial is ``fit`` with
the trial's values added to the command line, in ``lightning_logs/tune/<name>/trial_N`` (``trial_N/fold_k`` with
``--cv K``), and its value is the objective metric of its best checkpoint on the validation split (the mean over the
folds with ``--cv``): by default the metric the config's checkpoint monitors (``val/acc``, max, unless the config
says otherwise). Trials are pruned from their epoch metrics (Optuna's median or successive-halving pruner, through
optuna-integration's Lightning callback). The test split is never run. The study lives in SQLite in the study
folder, or with ``--storage URL`` in a database server that workers on other machines share; ``--workers N`` runs N
processes here (:mod:`lit_nets.train.tune_study`, :mod:`lit_nets.train.tune_workers`). The same command again
continues it (``--trials`` is the total), and a trial that a kill interrupted is run again with its parameters.
At the end: ``best.yaml`` (the complete config of the winner: ``fit --config best.yaml`` trains it and then tests
it), ``trials.csv``, and Optuna's figures (history, importances, slice) as PNGs and in TensorBoard.
"""

from __future__ import annotations

import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import optuna
from optuna_integration import PyTorchLightningPruningCallback

from lit_nets.core.errors import UserError, shown_url
from lit_nets.core.options import command_options
from lit_nets.train import cv, runs, search_space, tune_slots, tune_study, tune_workers
from lit_nets.train.tune_report import ProgressLine, best_trial, board, finished, report

HELP_EPILOG = "Every other option is fit's (--config, --trainer.*, --model.*, --data.*): see fit --help."


@dataclass
class TuneOptions:
    """tune's own options (every other one is fit's, given to every trial).

    Args:
        space: the search space, a YAML file (configs/search/ has three).
        trials: trials the study should have in all.
        timeout: seconds after which no new trial starts (default: none).
        cv: K: a trial's value is the mean over K folds (default: one split).
        metric: the objective, a val/ metric (default: the config's checkpoint monitor).
        direction: max or min (default: min for a loss, else max).
        pruner: stop bad trials early: median, halving or none.
        startup_trials: trials before the median pruner prunes.
        warmup_epochs: epochs before a trial can be pruned (default: a quarter of max_epochs).
        seed: the sampler's seed.
        name: the folder under lightning_logs/tune/ (default: the last config's name).
        storage: the study's database, any URL Optuna's RDB storage takes (postgresql://user:password@host:5432/db,
            mysql+pymysql://...): workers on other machines join the study there (default: SQLite in the study
            folder).
        workers: worker processes on this machine sharing the study.
        heartbeat: seconds between a running trial's heartbeats; a trial silent for 3 times that is failed and run
            again once.
        worker: (internal) the number of a worker process that tune --workers started.
    """

    space: str
    trials: int = 20
    timeout: float | None = None
    cv: int | None = None
    metric: str | None = None
    direction: Literal["max", "min"] | None = None
    pruner: Literal["median", "halving", "none"] = "median"
    startup_trials: int = 5
    warmup_epochs: int | None = None
    seed: int = 0
    name: str | None = None
    storage: str | None = None
    workers: int = 1
    heartbeat: int = 30
    worker: int | None = None


def parse(argv: list[str], prog: str) -> tuple[TuneOptions, list[str]]:
    """tune's own options, checked, and the rest: fit's options, given to every trial."""
    about = __doc__.split("\n\n")[0].replace("``", "")
    options, rest = command_options(TuneOptions, argv, f"{prog} tune", about, HELP_EPILOG)
    if options.worker is not None and options.storage is None:
        options.storage = os.environ.get(tune_workers.STORAGE_VARIABLE)
    if options.trials < 1:
        raise UserError(f"tune --trials must be 1 or more, got {options.trials}")
    if options.timeout is not None and not options.timeout > 0:
        raise UserError(
            f"tune --timeout is in seconds and must be above 0 (leave it out for none), got {options.timeout}"
        )
    if options.workers < 1:
        raise UserError(f"tune --workers must be 1 or more, got {options.workers}")
    if options.heartbeat < 1:
        raise UserError(f"tune --heartbeat is in seconds and must be 1 or more, got {options.heartbeat}")
    if options.name is not None:
        runs.check_name(options.name, "tune --name")
    if options.cv is not None and options.cv < 2:
        raise UserError(f"tune --cv must be 2 or more folds, got {options.cv}")
    if options.metric is not None and not options.metric.startswith("val/"):
        raise UserError(
            f"tune --metric {options.metric}: the objective must be a validation metric (val/acc, "
            "val/loss, val/f1, ...); the test split is never used to choose"
        )
    runs.refuse_folds_and_resuming(rest, "tune", "starts every trial from scratch and sets folds itself (--cv)")
    options.name = options.name or runs.config_name(rest)
    return options, rest


class TrialPruning(PyTorchLightningPruningCallback):
    """optuna-integration's Lightning pruning callback: it reports the objective at every epoch's validation and
    stops the trial when the pruner says so. Here also a clear error when the metric is never logged, and under
    ``--cv`` fold k's epochs are reported after those of the folds before it (steps the pruner compares across
    trials)."""

    def __init__(self, trial: Any, monitor: str, fold: int = 0) -> None:
        super().__init__(trial, monitor)
        self.fold = fold

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":  # not cv's validation of the best checkpoint
            return
        tune_slots.check(self._trial)  # another worker declared this trial dead: stop it here
        if self.monitor not in trainer.callback_metrics:
            logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
            raise UserError(f"tune --metric {self.monitor} is never logged; this run logs {', '.join(logged)}")
        # the parent reports at step pl_module.current_epoch: a stand-in shifts it past the earlier folds' epochs
        step = self.fold * trainer.max_epochs + pl_module.current_epoch
        try:
            super().on_validation_end(trainer, SimpleNamespace(current_epoch=step))
        except optuna.TrialPruned:
            self._trial.set_user_attr("pruned_after", {"epochs": pl_module.current_epoch + 1, "fold": self.fold})
            raise


def main(argv: list[str], prog: str) -> None:
    """``python -m lit_nets tune ARGV``: open or continue the study, run trials until it has ``--trials``, report."""
    from lit_nets.core.checkpoint_files import RunLock

    options, rest = parse(argv, prog)
    # tune prints its own line per trial, and a failed trial's reason as one line (Optuna's WARNING is its traceback)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config = runs.config_of(rest)  # fit's parser checks the user's arguments first
    options_now = search_space.flatten(config)
    params = search_space.load(options.space, options_now)
    metric, direction, metric_args = objective_metric(options, config)
    logs = f"lightning_logs/tune/{options.name}"
    folder = runs.logs_folder(config, logs)
    if options.warmup_epochs is None:
        options.warmup_epochs = int((config.get("trainer") or {}).get("max_epochs") or 4) // 4
    settings = tune_study.study_settings(options_now, params, metric=metric, direction=direction, cv=options.cv)
    folder.mkdir(parents=True, exist_ok=True)
    if options.worker is not None:  # one of the processes tune --workers started: trials only
        study, rdb, _ = tune_study.open_study(folder, options, settings, direction, worker=True)
        group = tracking_group(study, options, config)
        with board(folder) as writer:
            run_trials(tune_slots.Shared(study, rdb, options, folder), params, rest + metric_args, logs, metric,
                       writer, group)  # fmt: skip
        return
    # the embedded study is one process's (its workers are its children); a shared one has the database as its lock
    lock = RunLock(folder) if options.storage is None else None
    if lock is not None:
        lock.acquire()
    try:
        study, rdb, created = tune_study.open_study(folder, options, settings, direction)
        shared = tune_slots.Shared(study, rdb, options, folder)
        if created:
            tune_study.first_trial(study, params, options_now)
        elif lock is not None:
            tune_study.retry_interrupted(study)
        if options.trials > int(study.user_attrs.get("trials", 0)):
            study.set_user_attr("trials", options.trials)  # the most any command asked for (tune_slots.take)
        say_what_is_searched(study, folder, options, params, metric, direction, config)
        group = tracking_group(study, options, config)  # before the workers start: one parent run for them all
        with board(folder) as writer:
            try:
                if options.workers > 1:
                    tune_workers.run(argv, options)
                else:
                    run_trials(shared, params, rest + metric_args, logs, metric, writer, group)
            except (KeyboardInterrupt, SystemExit):  # SIGTERM (Lightning's SystemExit), Ctrl-C
                print(
                    f"tune: stopped with {len(finished(study))} of {options.trials} trials done; the same command "
                    "continues the study (the interrupted trials first)",
                    file=sys.stderr,
                )
                raise
            report(study, options, params, rest + metric_args, folder, metric, writer)
            best = best_trial(study)
            files = [folder / "best.yaml", folder / "trials.csv", *sorted(folder.glob("*.png"))]
            group.finish({f"best_{metric}": best.value} if best else {}, files)
    except Exception as e:
        lost = tune_slots.connection_lost(e)
        if lost is None:
            raise
        where = shown_url(options.storage) if options.storage else str(folder / "study.db")
        raise UserError(
            f"tune: the study's database {where} stopped answering ({lost}); run the same command again once it "
            "answers (finished trials are kept, an interrupted one runs again)"
        ) from None
    finally:
        if lock is not None:
            lock.release()


def objective_metric(options: TuneOptions, config: dict[str, Any]) -> tuple[str, str, list[str]]:
    """The metric, its direction, and the arguments that make each trial's checkpoint choose its best epoch by it."""
    checkpoint = config.get("checkpoint") or {}
    if options.metric is None and checkpoint.get("monitor"):
        metric = checkpoint["monitor"]
        return metric, options.direction or checkpoint.get("mode", "max"), []
    metric = options.metric or "val/acc"
    direction = options.direction or ("min" if "loss" in metric else "max")
    return metric, direction, ["--checkpoint.monitor", metric, "--checkpoint.mode", direction]


def say_what_is_searched(
    study: Any,
    folder: Path,
    options: TuneOptions,
    params: list[search_space.Param],
    metric: str,
    direction: str,
    config: dict[str, Any],
) -> None:
    """Which split chooses, on what, with which seed: said before the first trial."""
    split = f"the mean over {options.cv} folds of the training data" if options.cv else "the validation split"
    done = len(finished(study))
    where = folder if options.storage is None else f"{shown_url(options.storage)} (trial runs in {folder})"
    print(
        f"tune: study {options.name} in {where} ({done} of {options.trials} trials done); objective: {metric} "
        f"({direction}) of each trial's best checkpoint on {split}; the test split is not used; every trial with "
        f"seed {config.get('seed_everything')}; pruner {options.pruner}; each trial is queued when a worker is "
        "free to take it",
        file=sys.stderr,
    )
    for param in params:
        print(f"tune: searching {param.describe()}", file=sys.stderr)


def run_trials(
    shared: tune_slots.Shared,
    params: list[search_space.Param],
    rest: list[str],
    logs: str,
    metric: str,
    writer: Any,
    group: Any,
) -> None:
    """Trials until the study has ``--trials`` (or ``--timeout`` passes), a progress line after each. Each trial
    is a fit run in ``logs/trial_N`` (``logs/trial_N/fold_k`` with ``--cv``) under the logger's folder."""
    options, folder = shared.options, shared.folder

    if options.worker is not None:  # several processes print to one terminal: no progress bars (a user's wins)
        rest = ["--trainer.enable_progress_bar", "false", *rest]

    def objective(trial: Any) -> float:
        values = {p.path: p.suggest(trial) for p in params}
        try:
            return run_trial(trial, values)
        except Exception as e:
            from lit_nets.core.errors import find_user_error

            found = find_user_error(e)
            if found is None:
                raise
            tried = ", ".join(f"{path} {search_space.shown(v)}" for path, v in values.items())
            raise UserError(
                f"tune: trial {trial.number} ({tried}) stopped: {found}; if the searched values are "
                f"what fit refuses, narrow the ranges in {options.space}"
            ) from None

    def run_trial(trial: Any, values: dict[str, Any]) -> float:
        # the model summary once per trial is noise (first, so that a config or argument of the user's wins)
        args = ["--trainer.enable_model_summary", "false", *rest, *search_space.as_args(values)]
        args += ["--test_after_fit", "false"]
        version = f"trial_{trial.number}"
        trial.set_user_attr("run", str(folder / version))
        if options.cv:
            scores = []
            for fold in range(options.cv):
                pruning = [TrialPruning(trial, metric, fold)]
                run = f"{version}/fold_{fold}"
                tracked = group.args(f"tune/{options.name}/{run}", study=options.name, trial=trial.number, fold=fold)
                done = cv.run_fold(args, fold, options.cv, None, logs, run, pruning, tracked)
                scores.append(done["metrics"][metric])
            trial.set_user_attr("folds", scores)
            return statistics.fmean(scores)
        tracked = group.args(f"tune/{options.name}/{version}", study=options.name, trial=trial.number)
        cli = runs.fit(args + logger_args(logs, version) + tracked, [TrialPruning(trial, metric)])
        score = cli.trainer.checkpoint_callback.best_model_score
        if score is None:
            raise UserError(f"tune: trial {trial.number} saved no best checkpoint: is {metric} logged every epoch?")
        return float(score)

    tune_slots.work(shared, objective, ProgressLine(options.trials, params, metric, options.cv, writer))


def tracking_group(study: Any, options: TuneOptions, config: dict[str, Any]) -> Any:
    """The study's parent run in MLflow when the config tracks there (one per study: its id is kept in the study,
    where workers and later starts find it); a group that does nothing otherwise."""
    from lit_nets.train.callbacks.tracking import Group

    tags = {"lit_nets.study": options.name}
    group = Group(config, f"tune/{options.name}", tags, reuse=study.user_attrs.get("mlflow_run"))
    if group.enabled and study.user_attrs.get("mlflow_run") != group.run_id:
        study.set_user_attr("mlflow_run", group.run_id)
    return group


def logger_args(logs: str, version: str) -> list[str]:
    """The arguments that put a run in ``logs/version`` under the logger's save_dir."""
    return ["--trainer.logger.init_args.name", logs, "--trainer.logger.init_args.version", version]
