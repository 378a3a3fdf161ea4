"""Runs tracked in MLflow as well as TensorBoard (``--config configs/mlflow.yaml``, which sets ``mlflow.enabled``).

:class:`MLflowTracking` adds Lightning's own ``MLFlowLogger`` to the run's loggers (TensorBoard stays the first, so
the run folder is where it was): every metric the run logs goes to both. At the end of fit and of test it sends
what the run folder holds that MLflow has not got yet: the resolved config as parameters (the CLI's dotted paths)
and ``config.yaml``, the figures (PNG) and per-class tables, and after fit the best checkpoint. The tracking server
is ``mlflow.tracking_uri``, else ``MLFLOW_TRACKING_URI`` (MLflow's convention), else a local ``mlruns/`` folder
(a SQLite file and the artifacts: ``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``). ``cv`` and
``tune`` group their runs under a parent run (:func:`parent_run`), tagged with the fold or the study and trial.

Written by hand: what to send and when (Lightning's ``log_model`` sends every top-k and last checkpoint, not the
run's figures or config).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

LOCAL = "sqlite:///mlruns/mlflow.db"  # MLflow 3 refuses its old file store: a SQLite file in ./mlruns
SENT = (".png", ".csv", ".yaml")  # the run folder's files sent as artifacts (figures, per-class tables, config)
RUN_FILE = ".mlflow_run"  # in the run folder: the MLflow run a resumed run continues


def tracking_uri(given: str | None = None) -> str:
    """The tracking server: the option, ``MLFLOW_TRACKING_URI``, or the local ``mlruns/`` folder."""
    uri = given or os.environ.get("MLFLOW_TRACKING_URI") or LOCAL
    if uri == LOCAL:
        Path("mlruns").mkdir(exist_ok=True)
    return uri


def quiet_mlflow() -> None:
    """MLflow's own INFO lines (its database migrations, each new experiment) are noise in a run's output."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def client(uri: str) -> Any:
    """An MLflow client of ``uri``, or one line that says how to install MLflow (the ``track`` extra)."""
    from lit_nets.core.errors import UserError

    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError("mlflow.enabled needs MLflow (not installed): pip install -e '.[track]'") from None
    quiet_mlflow()
    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow: Any, name: str) -> str:
    """The experiment ``name``, made when it does not exist yet."""
    found = mlflow.get_experiment_by_name(name)
    return found.experiment_id if found is not None else mlflow.create_experiment(name)


def parent_run(options: dict[str, Any], run_name: str, tags: dict[str, str], reuse: str | None = None) -> str:
    """A run that groups others (a ``cv`` command's folds, a ``tune`` study's trials): ``reuse`` when it still
    exists (a continued study), else a new one; its id, which the grouped runs get as ``mlflow.parent_run``."""
    uri = tracking_uri(options.get("tracking_uri"))
    mlflow = client(uri)
    if reuse:
        try:
            return mlflow.get_run(reuse).info.run_id
        except Exception:
            pass
    experiment = experiment_id(mlflow, experiment_name(options))
    return mlflow.create_run(experiment, run_name=run_name, tags={**tags, **host_tags()}).info.run_id


def experiment_name(options: dict[str, Any]) -> str:
    """``mlflow.experiment``, else ``MLFLOW_EXPERIMENT_NAME`` (MLflow's convention), else ``lit_nets``."""
    return options.get("experiment") or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "lit_nets"


def host_tags() -> dict[str, str]:
    """The machine a run was made on (its files are there)."""
    return {"lit_nets.host": socket.gethostname()}


def send_files(uri: str, run_id: str, files: list[Path], folder: str | None = None) -> None:
    """``files`` as artifacts of run ``run_id`` (under ``folder``)."""
    mlflow = client(uri)
    for path in files:
        if path.is_file():
            mlflow.log_artifact(run_id, str(path), folder)


class Group:
    """A parent run in MLflow for the runs of one command (``cv``'s folds, ``tune``'s trials) when the config tracks
    in MLflow (``mlflow.enabled``); nothing otherwise. ``reuse``: the id of the group's run from an earlier start (a
    continued study), kept when it still exists."""

    def __init__(self, config: dict[str, Any], run_name: str, tags: dict[str, str], reuse: str | None = None):
        self.options = config.get("mlflow") or {}
        self.enabled = bool(self.options.get("enabled"))
        self.tags = tags
        self.run_id = parent_run(self.options, run_name, tags, reuse) if self.enabled else None

    def args(self, run_name: str, **tags: Any) -> list[str]:
        """The arguments that put one run of the group in it: its parent, name and tags."""
        if not self.enabled:
            return []
        tags = {**self.tags, **{f"lit_nets.{k}": str(v) for k, v in tags.items()}}
        return ["--mlflow.parent_run", self.run_id, "--mlflow.run_name", run_name, "--mlflow.tags", json.dumps(tags)]

    def finish(self, metrics: dict[str, float], files: list[Path]) -> None:
        """The group's results (its summary metrics and files) on its run, and the run marked finished."""
        if not self.enabled:
            return
        uri = tracking_uri(self.options.get("tracking_uri"))
        mlflow = client(uri)
        for name, value in metrics.items():
            mlflow.log_metric(self.run_id, name, float(value))
        send_files(uri, self.run_id, files)
        mlflow.set_terminated(self.run_id, "FINISHED")


class MLflowTracking(Callback):
    """Track the run in MLflow as well (params, metrics, figures, config, best checkpoint).

    Args:
        enabled: track in MLflow (``configs/mlflow.yaml`` turns it on).
        tracking_uri: the tracking server (default: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``).
        experiment: the MLflow experiment (default: ``MLFLOW_EXPERIMENT_NAME``, else ``lit_nets``).
        run_name: the run's name (default: its run folder, ``lightning_logs/version_3``).
        tags: more tags for the run (``cv`` and ``tune`` add the fold, the study and the trial).
        parent_run: the id of the run this one is grouped under (``cv`` and ``tune`` set it).
        log_checkpoint: send the best checkpoint after fit.
    """

    def __init__(
        self,
        enabled: bool = False,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run: str | None = None,
        log_checkpoint: bool = True,
    ) -> None:
        self.enabled, self.uri, self.experiment = enabled, tracking_uri, experiment
        self.run_name, self.tags, self.parent_run = run_name, dict(tags or {}), parent_run
        self.log_checkpoint = log_checkpoint
        self.logger: Any = None
        self.params: dict[str, Any] = {}  # the resolved config, by dotted path (the CLI sets it before the run)
        self.folder: Path | None = None
        self.sent: set[Path] = set()
        self.resolved_uri = ""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not self.enabled:
            return
        self.folder = Path(trainer.log_dir) if trainer.log_dir else None  # a collective under DDP: every rank asks
        if self.logger is None:
            self.logger = self._make_logger()
        if self.logger not in trainer.loggers:
            trainer.loggers = [*trainer.loggers, self.logger]  # after TensorBoard: trainer.log_dir stays its folder
        if trainer.is_global_zero:
            if self.folder is not None:  # a resumed run (--ckpt_path last) continues this MLflow run
                self.folder.mkdir(parents=True, exist_ok=True)
                (self.folder / RUN_FILE).write_text(self.logger.run_id + "\n")
            if self.params:
                self.logger.log_config(self.params)

    def _make_logger(self) -> Any:
        uri = self.resolved_uri = tracking_uri(self.uri)
        client(uri)  # MLflow installed (else one line), quiet
        tags = {**host_tags(), **self.tags}
        if self.folder is not None:
            tags["lit_nets.run_folder"] = str(self.folder.resolve())
        if self.parent_run:
            tags["mlflow.parentRunId"] = self.parent_run
        name = self.run_name or (str(self.folder) if self.folder is not None else None)
        return TrackingLogger(
            experiment_name=experiment_name({"experiment": self.experiment}),
            run_name=name,
            tracking_uri=uri,
            tags=tags,
            run_id=self._earlier_run(uri),
        )

    def _earlier_run(self, uri: str) -> str | None:
        """The MLflow run of this run folder's earlier start (a resumed run), when the server still has it."""
        recorded = self.folder / RUN_FILE if self.folder is not None else None
        if recorded is None or not recorded.is_file():
            return None
        run_id = recorded.read_text().strip()
        try:
            return client(uri).get_run(run_id).info.run_id
        except Exception:  # another server's run, or deleted: a new run
            return None

    def describe(self) -> str:
        """Where the run is tracked, for the run's summary."""
        from lit_nets.core.errors import shown_url

        view = ""
        if self.resolved_uri.startswith("sqlite:"):
            view = f"; view: mlflow ui --backend-store-uri {self.resolved_uri}"
        return (
            f"run {self.logger.run_id} of experiment {experiment_name({'experiment': self.experiment})} in "
            f"{shown_url(self.resolved_uri)}{view}"
        )

    @rank_zero_only
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not self.enabled or self.logger is None or self.folder is None:
            return
        uri, run_id = self.resolved_uri, self.logger.run_id
        new = [p for p in sorted(self.folder.iterdir()) if p.suffix in SENT and p not in self.sent]
        send_files(uri, run_id, new)
        self.sent.update(new)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if stage == "fit" and self.log_checkpoint and best and Path(best) not in self.sent:
            send_files(uri, run_id, [Path(best)], "checkpoints")
            self.logger.experiment.set_tag(run_id, "lit_nets.best_checkpoint", f"checkpoints/{Path(best).name}")
            self.sent.add(Path(best))


@functools.cache
def _logger_class() -> type:
    from lightning.pytorch.loggers import MLFlowLogger

    class TrackingLogger(MLFlowLogger):
        """Lightning's MLflow logger with the run's resolved config as its parameters. Lightning's own call (the
        model's and data module's hparams, a wide table's schema among them: thousands of entries) is left out:
        the config holds every value the run was given."""

        def log_hyperparams(self, params: Any) -> None:
            return

        @rank_zero_only
        def log_config(self, params: dict[str, Any]) -> None:
            """The config's values (up to 250 characters: the whole config is the config.yaml artifact). MLflow
            refuses to change a parameter: a resumed run that changed one (a longer ``max_epochs``) keeps the
            first value and names the changed ones in the tag ``lit_nets.changed_on_resume``."""
            short = {k: str(v) for k, v in params.items() if len(str(v)) <= 250}  # Lightning cuts longer at 250
            logged = self.experiment.get_run(self.run_id).data.params
            super().log_hyperparams({k: v for k, v in short.items() if k not in logged})
            changed = sorted(k for k, v in short.items() if k in logged and logged[k] != v)
            if changed:
                self.experiment.set_tag(self.run_id, "lit_nets.changed_on_resume", ", ".join(changed)[:5000])

    return TrackingLogger


def TrackingLogger(**kwargs: Any) -> Any:  # a class made on first use: MLflow is imported only then
    """A new ``TrackingLogger`` (the class :func:`_logger_class` makes) of MLFlowLogger's ``kwargs``."""
    return _logger_class()(**kwargs)
