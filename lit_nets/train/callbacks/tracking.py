"""Runs tracked in MLflow as well as TensorBoard (``--config configs/mlflow.yaml``, which sets ``mlflow.enabled``).

:class:`MLflowTracking` adds Lightning's own ``MLFlowLogger`` to the run's loggers (TensorBoard stays the first, so
the run folder is where it was): every metric the run logs goes to both. At the end of fit and of test it sends
what the run folder holds that MLflow has not got yet: the resolved config as parameters (the CLI's dotted paths)
and ``config.yaml``, the figures (PNG) and per-class tables, and after fit the best checkpoint. The tracking server
is ``mlflow.tracking_uri``, else ``MLFLOW_TRACKING_URI`` (MLflow's convention), else a local ``mlruns/`` folder
(a SQLite file and the artifacts; ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri
sqlite:///mlruns/mlflow.db`` shows it, and stops cleanly: without the variable MLflow's job runner leaves seven
``huey_consumer`` processes behind). ``cv`` and ``tune`` group their runs under a parent run (:func:`parent_run`),
tagged with the fold or the study and trial.

A tracker never stops or freezes training: an ``http(s)`` server is asked once at start, with a 5 s timeout (one
line when it does not answer), MLflow's own retries are cut to seconds (``MLFLOW_HTTP_REQUEST_*``, a user's values
win), and a server lost mid-run costs one warning: the run goes on, nothing more is sent, and the summary says what
was not sent and the command that sends it later (``python -m lit_nets track RUN``, :mod:`lit_nets.train.track`).
A password in the tracking URI is never logged: the parameters and ``config.yaml`` hold ``user:***@host``.

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
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_only

LOCAL = "sqlite:///mlruns/mlflow.db"  # MLflow 3 refuses its old file store: a SQLite file in ./mlruns
SENT = (".png", ".csv", ".yaml")  # the run folder's files sent as artifacts (figures, per-class tables, config)
RUN_FILE = ".mlflow_run"  # in the run folder: the MLflow run a resumed run continues
log = logging.getLogger(__name__)


# MLflow retries a request 7 times with a backoff factor of 2 and waits 120 s for an answer: minutes of a frozen
# run per call when the server is gone. A few seconds here (the user's environment wins).
SHORT_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
PROBE_TIMEOUT = 5.0  # seconds the tracking server has to answer at start


def tracking_uri(given: str | None = None) -> str:
    """The tracking server: the option, ``MLFLOW_TRACKING_URI``, or the local ``mlruns/`` folder. A URI whose
    password was hidden when a run's config was saved (``user:***@host``) takes it from ``MLFLOW_TRACKING_PASSWORD``
    (MLflow's own variable)."""
    from lit_nets.core.errors import UserError

    uri = given or os.environ.get("MLFLOW_TRACKING_URI") or LOCAL
    if uri == LOCAL:
        Path("mlruns").mkdir(exist_ok=True)
    if ":***@" in uri:
        if not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
            raise UserError(
                f"mlflow.tracking_uri {uri}: the password was not saved with the run's config; give it in "
                "MLFLOW_TRACKING_PASSWORD (or the whole URI in MLFLOW_TRACKING_URI and leave mlflow.tracking_uri out)"
            )
        uri = uri.replace(":***@", "@")  # MLflow sends MLFLOW_TRACKING_USERNAME / _PASSWORD itself
    return uri


def quiet_mlflow() -> None:
    """MLflow's own INFO lines (its database migrations, each new experiment) are noise in a run's output; its
    retries are cut to seconds (:data:`SHORT_RETRIES`)."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, value in SHORT_RETRIES.items():
        os.environ.setdefault(name, value)
    # MLflow prints "View run ... at: URL" at every run's end, a URI's password included; the summary says where
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def probe(uri: str) -> None:
    """One line within seconds when an ``http(s)`` tracking server does not answer (any HTTP answer will do: an
    error page means a server is there)."""
    from lit_nets.core.errors import UserError, shown_url

    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1", timeout=PROBE_TIMEOUT)
    except requests.RequestException as e:
        why = "no answer within 5 s" if isinstance(e, requests.Timeout) else first_line(e)
        raise UserError(
            f"mlflow: the tracking server {shown_url(uri)} does not answer ({why}); start it, or correct "
            "mlflow.tracking_uri / MLFLOW_TRACKING_URI, or leave configs/mlflow.yaml out"
        ) from None


def first_line(error: BaseException) -> str:
    """An error's first line, without a URL's password and at most 200 characters."""
    import re

    from lit_nets.core import errors

    return re.sub(r"(//[^:/@\s]*):[^@/\s]*@", r"\1:***@", errors.first_line(error, 400))[:200]


def check_names(experiment: str, tags: dict[str, Any]) -> None:
    """One line when MLflow would refuse the experiment's name or a tag key (its server takes such a run, then
    refuses the tags when they are set again)."""
    from lit_nets.core import private_api
    from lit_nets.core.errors import UserError

    problems = [("mlflow.experiment", private_api.mlflow_name_error("experiment", experiment))]
    problems += [(f"mlflow.tags {key!r}", private_api.mlflow_name_error("tag", str(key))) for key in tags]
    for where, why in problems:
        if why is not None:
            raise UserError(f"{where}: MLflow refuses it ({first_line(Exception(why))})")


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
    probe(uri)
    if reuse:
        try:
            return mlflow.get_run(reuse).info.run_id
        except Exception:
            pass
    check_names(experiment_name(options), tags)
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
        try:
            for name, value in metrics.items():
                mlflow.log_metric(self.run_id, name, float(value))
            send_files(uri, self.run_id, files)
            mlflow.set_terminated(self.run_id, "FINISHED")
        except Exception as e:  # the results are in the folder: a lost server is a warning
            from lit_nets.core.errors import shown_url

            log.warning(
                "MLflow: the tracking server %s did not take the results of %s (%s): they are in %s",
                shown_url(uri),
                self.run_id,
                first_line(e),
                ", ".join(str(f) for f in files[:2]),
            )


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
            run_id = self.logger.run_id  # the experiment and the run are made here
            if self.folder is not None:  # a resumed run (--ckpt_path last) continues this MLflow run
                self.folder.mkdir(parents=True, exist_ok=True)
                (self.folder / RUN_FILE).write_text(run_id + "\n")
            self.logger.folder = self.folder
            if self.params:
                self.logger.guarded(self.logger.log_config, self.params)

    def _make_logger(self) -> Any:
        uri = self.resolved_uri = tracking_uri(self.uri)
        client(uri)  # MLflow installed (else one line), quiet
        check_names(experiment_name({"experiment": self.experiment}), self.tags)
        probe(uri)
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
        """Where the run is tracked, for the run's summary (and what a lost server did not get)."""
        from lit_nets.core.errors import shown_url

        view = ""
        if self.resolved_uri.startswith("sqlite:"):  # the variable lets mlflow ui stop cleanly (see the module)
            view = "; view: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri " + self.resolved_uri
        where = (
            f"run {self.logger.run_id} of experiment {experiment_name({'experiment': self.experiment})} in "
            f"{shown_url(self.resolved_uri)}"
        )
        lost = self.logger.lost
        if lost is None:
            return where + view
        return (
            f"{where}; the server stopped answering at step {lost[0]} ({lost[1]}): the metrics from there on, the "
            f"figures, config.yaml and the checkpoint were not sent; send them once it answers: python -m lit_nets "
            f"track {self.folder}"
        )

    @rank_zero_only
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not self.enabled or self.logger is None or self.folder is None or self.logger.lost is not None:
            return
        uri, run_id = self.resolved_uri, self.logger.run_id
        new = [p for p in sorted(self.folder.iterdir()) if p.suffix in SENT and p not in self.sent]
        if not self.logger.guarded(send_files, uri, run_id, new):
            return
        self.sent.update(new)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        wanted = stage == "fit" and self.log_checkpoint and best and Path(best) not in self.sent
        if wanted and self.logger.guarded(send_files, uri, run_id, [Path(best)], "checkpoints"):
            tag = ("lit_nets.best_checkpoint", f"checkpoints/{Path(best).name}")
            self.logger.guarded(self.logger.experiment.set_tag, run_id, *tag)
            self.sent.add(Path(best))


@functools.cache
def _logger_class() -> type:
    from lightning.pytorch.loggers import MLFlowLogger

    class TrackingLogger(MLFlowLogger):
        """Lightning's MLflow logger with the run's resolved config as its parameters, that never stops a run: the
        first call the server does not answer is a warning, and the logger sends nothing more (:attr:`lost`: the
        step and the reason). Lightning's own hyper-parameter call (the model's and data module's hparams, a wide
        table's schema among them: thousands of entries) is left out: the config holds every value the run was
        given."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.lost: tuple[int | str, str] | None = None
            self.folder: Path | None = None
            self.step: int | str = "start"

        def guarded(self, call: Any, *args: Any) -> bool:
            """``call(*args)`` unless the server was lost; whether it went through. A failure marks it lost."""
            if self.lost is not None:
                return False
            try:
                call(*args)
            except Exception as e:
                from lit_nets.core.errors import shown_url

                self.lost = (self.step, first_line(e))
                log.warning(
                    "MLflow: the tracking server %s stopped answering at step %s (%s); training goes on without it "
                    "(TensorBoard keeps every metric), and the summary says how to send what it missed",
                    shown_url(self._tracking_uri),
                    self.step,
                    self.lost[1],
                )
                return False
            return True

        def log_hyperparams(self, params: Any) -> None:
            return

        @rank_zero_only
        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.step = step if step is not None else self.step
            self.guarded(super().log_metrics, metrics, step)

        @rank_zero_only
        def finalize(self, status: str = "success") -> None:
            self.guarded(super().finalize, status)

        @rank_zero_only
        def log_config(self, params: dict[str, Any]) -> None:
            """The config's values (up to 250 characters: the whole config is the config.yaml artifact). MLflow
            refuses to change a parameter: a resumed run that changed one (a longer ``max_epochs``) keeps the
            first value and names the changed ones in the tag ``lit_nets.changed_on_resume``."""
            from lit_nets.core.private_api import mlflow_name_error

            short = {  # Lightning cuts values at 250 characters; names MLflow refuses are left out
                k: str(v) for k, v in params.items() if len(str(v)) <= 250 and mlflow_name_error("param", k) is None
            }
            logged = self.experiment.get_run(self.run_id).data.params
            super().log_hyperparams({k: v for k, v in short.items() if k not in logged})
            changed = sorted(k for k, v in short.items() if k in logged and logged[k] != v)
            if changed:
                self.experiment.set_tag(self.run_id, "lit_nets.changed_on_resume", ", ".join(changed)[:5000])

    return TrackingLogger


def TrackingLogger(**kwargs: Any) -> Any:  # a class made on first use: MLflow is imported only then
    """A new ``TrackingLogger`` (the class :func:`_logger_class` makes) of MLFlowLogger's ``kwargs``."""
    return _logger_class()(**kwargs)


def without_secrets(config: Any) -> Any:
    """A copy of a run's config (a jsonargparse Namespace) with the tracking URI's password hidden: what
    ``config.yaml`` and MLflow's parameters hold (:func:`tracking_uri` takes it back from
    ``MLFLOW_TRACKING_PASSWORD``)."""
    from lit_nets.core.errors import shown_url

    mlflow = config.get("mlflow") if hasattr(config, "get") else None
    if mlflow is None or not mlflow.get("tracking_uri"):
        return config
    config = config.clone()
    config.mlflow.tracking_uri = shown_url(str(config.mlflow.tracking_uri))
    return config


class SecretlessConfig(SaveConfigCallback):
    """Lightning's ``config.yaml`` of the run, with the tracking URI's password hidden (:func:`without_secrets`)."""

    def __init__(self, parser: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(parser, without_secrets(config), *args, **kwargs)
