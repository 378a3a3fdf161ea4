"""The command line: ``python -m lit_nets {fit,validate,test,predict} --config configs/cnn.yaml``.

A :class:`~lightning.pytorch.cli.LightningCLI` subclass. What it adds to Lightning's own:

- the data module's shape, class count, class names and normalisation are linked into the model;
- always-on callbacks: checkpoints (``last.ckpt`` plus the best by ``val/acc``) and a learning-rate monitor,
  configurable under ``--checkpoint.*`` and ``--lr_monitor.*``;
- TensorBoard under ``lightning_logs/``, a fixed seed, and a precision default (``precision: null``) that
  means bf16 mixed precision on GPUs that support it and fp32 everywhere else;
- ``--ckpt_path last|best`` find the newest earlier run's checkpoints (see :mod:`lit_nets.core.checkpoint_files`), and
  every spelling of ``--ckpt_path`` follows one rule: the checkpoint's model arguments win (a warning names the given
  values not used); ``fit`` resumes a run in its own folder;
- ``last.ckpt`` at every epoch's end (:class:`lit_nets.train.callbacks.LastCheckpoint`);
- ``--early_stopping``: Lightning's ``EarlyStopping`` as a group of its own (off by default, on in the tabular
  configs; ``configs/early_stop.yaml`` for the others), so it never replaces a config's ``trainer.callbacks``;
- ``fit`` ends with a test of the best checkpoint (``--test_after_fit false`` to skip) and says where the
  logs and checkpoints are;
- bad input ends with one line ``error: ...`` and exit status 2 (``LIT_NETS_TRACEBACK=1`` shows the
  traceback), a mistake in the arguments or a config file included (:mod:`lit_nets.train.config_errors`);
- ``--help`` at the top lists every subcommand, the tools (plot, explain, export, serve) too; those run through
  :mod:`lit_nets.tools`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, WeightAveraging
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

from lit_nets.core import checkpoint_files as checkpoints
from lit_nets.core import private_api, runtime, threads
from lit_nets.core.data import contract
from lit_nets.core.data.contract import DATA_ARGS
from lit_nets.core.errors import UserError
from lit_nets.core.logs import quiet_warnings
from lit_nets.core.models import injected
from lit_nets.core.models.classifier import Classifier
from lit_nets.core.models.injected import FILLED
from lit_nets.core.models.tasks import Task, follow_task, kind_in_config
from lit_nets.train import config_errors
from lit_nets.train.callbacks import (
    FigureLogger,
    LastCheckpoint,
    LearningRateLogger,
    MLflowTracking,
    PredictionWriter,
    QuietProfiler,
    SaveOnInterrupt,
    ThreadsFollowLoad,
    TrainingLock,
    last_checkpoint,
    main_checkpoint,
    progress_bar,
)
from lit_nets.train.callbacks import tracking as tracked
from lit_nets.train.cli_checkpoint import CheckpointArguments
from lit_nets.train.from_checkpoint import with_checkpoint_classes
from lit_nets.train.launch import leave_process_group
from lit_nets.train.reports import run_summary, stopped_early
from lit_nets.train.run_folders import (
    checkpoint_filename,
    data_defaults,
    logger_args,
    logger_save_dir,
    logs_root,
    refuse_a_used_version,
    remove_if_empty,
)
from lit_nets.train.search_space import flatten

LINKED = DATA_ARGS  # the data module's values the model gets through the CLI's links
DEBUG_RUNS = "lightning_logs/debug"  # profiling runs and configs/debug.yaml's: best and last never resolve to them
log = logging.getLogger(__name__)


def default_precision(accelerator: Any) -> str:
    """bf16 mixed precision on a CUDA GPU that supports it, fp32 elsewhere (bf16 is ~8x slower on CPUs
    without AVX-512 BF16)."""
    wants_gpu = str(accelerator) in ("auto", "gpu", "cuda")
    if wants_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


class LitNetsCLI(CheckpointArguments, LightningCLI):
    """Lightning's CLI with the data -> model links, the always-on callbacks and the defaults of this project (see
    the module docstring)."""

    def __init__(self, *args: Any, callbacks: list[Any] | None = None, **kwargs: Any) -> None:
        """Lightning's arguments, and ``callbacks``: objects added to the Trainer's (cv's and tune's own)."""
        self._extra_callbacks = list(callbacks or [])
        # a command given a checkpoint and no config takes the model and data classes from it (read once, here)
        kwargs["args"], self.checkpoint = with_checkpoint_classes(kwargs.get("args"))
        self.resumed_in: str | None = None  # the run folder a fit resumes in (_resume_in_its_folder)
        self.threads = 1  # torch's threads per process (_size_threads)
        private_api.fast_hparams_yaml()  # hparams.yaml of a wide table's schema in 0.4 s, not 3-4 s
        private_api.skip_inherited_hooks()  # no calls of Callback's empty methods: 5% of a small table's epoch
        kwargs.setdefault("model_class", Classifier)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("datamodule_class", LightningDataModule)  # lit_nets' or a user's (the contract)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # a resumed run rewrites its config
        kwargs.setdefault("save_config_callback", tracked.SecretlessConfig)
        kwargs.setdefault("auto_configure_optimizers", False)  # the optimiser is a flat model argument
        kwargs.setdefault(
            "trainer_defaults",
            {
                "logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": ".", "name": "lightning_logs", "default_hp_metric": False},
                },
                "max_epochs": 5,
                # added to whatever callbacks the config gives: save on SIGTERM, mark the run folder as being trained
                "callbacks": [SaveOnInterrupt(), TrainingLock()],
            },
        )
        with quiet_warnings():  # the whole run happens in here (run=True, as main() builds it)
            super().__init__(*args, **kwargs)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "fit":
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=True,
                help="After fit, test the best checkpoint on the test split (when the data has one).",
            )
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--threads",
            type=int | None,
            default=None,
            help="torch's threads per process (default: the CPU share this process may use: its affinity, a cgroup "
            "quota, less the cores other processes keep busy, divided by the processes on this machine).",
        )
        for name in LINKED:  # from the data module as the contract reads it (a missing one: one line)
            parser.link_arguments("data", f"model.init_args.{name}", self._data_value(name), apply_on="instantiate")
        for name in FILLED:  # a network given to the classifier takes the data's values under these names
            target = f"model.init_args.net.init_args.{name}"
            parser.link_arguments("data", target, self._data_value(name), apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "model": {"class_path": "lit_nets.models.CNNClassifier"},
                "data": {"class_path": "lit_nets.data.MNISTDataModule"},
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,  # a LastCheckpoint writes it (see _instantiate_trainer)
                "checkpoint.save_top_k": 1,
                "checkpoint.enable_version_counter": False,  # each run has a folder of its own
                "checkpoint.filename": None,  # epoch{epoch:02d}-<monitor>{<monitor>:.4f}: see checkpoint_filename
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        # optional, so null by default: a config turns it on with a class_path (configs/mlp.yaml, early_stop.yaml)
        parser.add_lightning_class_args(EarlyStopping, "early_stopping", subclass_mode=True, required=False)
        parser.add_lightning_class_args(LearningRateLogger, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "epoch"})
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(FigureLogger, "figures")
        parser.add_lightning_class_args(MLflowTracking, "mlflow")

    # -- parsing ------------------------------------------------------------------------------------------------
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # raise instead of printing the usage text and exiting: parse_arguments says it in one line
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def _data_value(self, name: str) -> Any:
        """The link function of one data value: the data module's ``name`` as the contract reads it, after a command
        on a checkpoint has handed the module the checkpoint's data values (``use_trained``) so that new files are
        encoded as the model was trained."""

        def value(dm: Any) -> Any:
            if self.checkpoint is not None and self.subcommand != "fit" and getattr(dm, "trained", 0) is None:
                dm.use_trained(self.checkpoint.data_values)
            return contract.value(dm, name)

        return value

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        from jsonargparse import ArgumentError

        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            given = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
            raise UserError(config_errors.one_line(str(e), given)) from None
        self._resolve_ckpt_path()

    def _parse_ckpt_path(self) -> None:
        """Nothing: :meth:`_resolve_ckpt_path` has read the checkpoint, and merged the model's own arguments only.
        Lightning's (private) method would merge the file's hyper-parameters again, data values included
        (:mod:`lit_nets.core.private_api`)."""

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        from lightning.pytorch.callbacks import ProgressBar as AnyProgressBar

        callbacks = [c for c in callbacks if c is not None]  # --early_stopping null: none
        given = config.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, AnyProgressBar) for c in [*given, *callbacks]
        ):
            callbacks = [*callbacks, progress_bar()]  # bars by time on a terminal, a line per epoch elsewhere
        # last.ckpt at every epoch's end: Lightning 2.6's save_last writes it only with a new best (LastCheckpoint),
        # added after the main checkpoint so that it records the best as updated at that epoch
        main = next((c for c in callbacks if type(c) is ModelCheckpoint), None)
        if main is not None and main.save_last:
            main.save_last = False
            callbacks = [*callbacks, LastCheckpoint()]
        callbacks = [*callbacks, *self._extra_callbacks]
        if config.get("profiler") is None:
            config = {**config, "profiler": QuietProfiler()}
        if self.subcommand == "predict":  # no run folder of its own: predictions go beside the checkpoint (predict)
            config = {**config, "logger": False}
        trainer = super()._instantiate_trainer(config, callbacks)
        if self.subcommand == "predict":  # Lightning's config.yaml would land in the working folder
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, SaveConfigCallback)]
        self._size_threads(trainer)
        return trainer

    def _size_threads(self, trainer: Any) -> None:
        """torch's threads for each process of this run on this machine (:mod:`lit_nets.core.threads`), said in one
        line, kept in the run's config and hyper-parameters; the processes DDP starts inherit the number."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        processes = trainer.num_devices if trainer.world_size > 1 else 1
        self.threads, why = threads.choose(config.get("threads"), processes)
        threads.apply(self.threads)
        config.threads = self.threads
        automatic = why.startswith("the CPU share")
        if automatic and processes == 1 and self.subcommand == "fit":
            trainer.callbacks.append(ThreadsFollowLoad(threads.LoadWatch(self.threads)))
            why += "; looked at again each epoch"
        rank_zero_info(f"Threads:      {self.threads} per process ({why})")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        # a network given to the classifier keeps its class path and arguments (saved with the model's); without one,
        # the links into it are left out of the model's recorded arguments (lit_nets.core.private_api)
        self.parser.add_instantiator(injected.record, nn.Module, subclasses=True)
        model = private_api.model_instantiator(self, "model", "net")
        self.parser.add_instantiator(model, Classifier, subclasses=True, prepend=True)
        model_args = config.model.get("init_args") if config.get("model") else None
        if model_args is not None and model_args.get("init_from") in ("best", "last"):
            model_args.init_from = checkpoints.resolve(
                model_args.init_from, logs_root(config), "init_from", what="model.init_from"
            )
            rank_zero_info(f"Transfer: model.init_from {model_args.init_from}")
        if self.subcommand == "fit":
            data_defaults(config)
        init = logger_args(config)
        if init is not None and init.get("save_dir") is not None:
            init.save_dir = logger_save_dir(config)
        profiling = self.subcommand == "fit" and config.trainer.get("profiler") is not None
        if profiling and init is not None and init.get("name") == "lightning_logs":  # a run to look at, not to use
            init.name = DEBUG_RUNS
        if self.subcommand == "fit" and not config.get("ckpt_path"):
            refuse_a_used_version(config)
        follow_the_task(config)
        checkpoint = config.get("checkpoint")
        if checkpoint is not None and checkpoint.get("filename") is None:
            checkpoint.filename = checkpoint_filename(checkpoint.get("monitor"))
        if config.trainer.precision is None:
            config.trainer.precision = default_precision(config.trainer.accelerator)
        if torch.cuda.is_available():
            torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer

    # -- the runs ---------------------------------------------------------------------------------------------
    @contextmanager
    def _checkpoint_warnings(self) -> Iterator[None]:
        """Lightning's warnings about checkpoint folders that say nothing here: a checkpoint of another run folder
        (testing one, or resuming one into a new folder) starts best-tracking anew in this run's folder, and a run
        resumed in its own folder finds its checkpoints there."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*The dirpath has changed from.*")
            if self.resumed_in:
                warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
            yield

    def fit(self, model: Any, **kwargs: Any) -> None:
        log_dir = self.trainer.log_dir if self.trainer.is_global_zero else None  # (computed: not made yet)
        existed = log_dir is not None and Path(log_dir).exists()
        try:
            with self._checkpoint_warnings():
                self.trainer.fit(model, **kwargs)
        except (SIGTERMException, KeyboardInterrupt):
            raise  # stopped, with its state saved: resumable
        except BaseException:
            if log_dir is not None and not existed and self.trainer.current_epoch == 0:  # within its first epoch
                remove_if_empty(Path(log_dir))
            raise

    def validate(self, model: Any, **kwargs: Any) -> None:
        with self._checkpoint_warnings():
            self.trainer.validate(model, **kwargs)
        self._say_where()

    def test(self, model: Any, **kwargs: Any) -> None:
        with self._checkpoint_warnings():
            self.trainer.test(model, **kwargs)
        self._say_where()

    def _say_where(self) -> None:
        """After validate and test: the run folder and the files drawn into it (the metrics table says the rest)."""
        log_dir = self.trainer.log_dir  # a collective under DDP: every process asks, rank 0 prints
        figures = next((c for c in self.trainer.callbacks if isinstance(c, FigureLogger)), None)
        if not self.trainer.is_global_zero or not log_dir:
            return
        print(f"Run folder:   {log_dir}")
        if figures is not None and figures.written:
            print(f"Figures:      {', '.join(str(p) for p in figures.written)}")

    def predict(self, model: Any, **kwargs: Any) -> None:
        # the writer appends each batch to the file and counts: nothing kept (a million rows' outputs in memory)
        writer = next(c for c in self.trainer.callbacks if isinstance(c, PredictionWriter))
        if writer.output is None:  # beside the checkpoint's run, named after what is predicted
            run = Path(self.checkpoint.file).parent.parent if self.checkpoint and self.checkpoint.run else Path(".")
            source = getattr(self.datamodule, "predict_path", None) or getattr(self.datamodule, "predict_root", None)
            writer.output = str(run / (f"{Path(source).stem}.predictions.csv" if source else "predictions.csv"))
        with self._checkpoint_warnings():
            self.trainer.predict(model, **{**kwargs, "return_predictions": False})
        if self.trainer.is_global_zero:
            print(writer.summary())

    # -- after fit: test the best checkpoint and say where everything is ------------------------------------
    def _before_run(self) -> None:
        self._check_checkpoint_fits()
        data = self.config[self.subcommand].get("data") if self.subcommand else None
        if self.datamodule is not None and not self.datamodule.hparams and data is not None:
            # a data module of the user's that records nothing: its class and arguments go in the checkpoint, for
            # the commands that later run on it (test, predict, export's parity check)
            spec = data.as_dict()
            self.datamodule.save_hyperparameters({"_class_path": spec["class_path"], **(spec.get("init_args") or {})})
        if self.subcommand == "fit" and self.trainer.logger is not None:  # hparams.yaml: merged with the model's
            self.trainer.logger.log_hyperparams({"threads": self.threads})
        tracking = next((c for c in self.trainer.callbacks if isinstance(c, MLflowTracking)), None)
        if tracking is not None and tracking.enabled:  # MLflow's parameters: the resolved config, by dotted path
            values = tracked.without_secrets(self.config[self.subcommand]).as_dict()
            values["config"] = ", ".join(str(p) for p in values.get("config") or [])  # the files, as given
            values["mlflow"].pop("tags", None)  # the run's tags, not parameters
            tracking.params = flatten(values)
        runtime.freeze_heap()  # start-up is over: its objects need no more garbage collections

    before_fit = before_validate = before_test = before_predict = _before_run

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.interrupted:
            return
        ckpt, last_ckpt = main_checkpoint(trainer), last_checkpoint(trainer)
        best = ckpt.best_model_path if ckpt else ""
        last = last_ckpt.path if last_ckpt else ""  # read now: testing restores the callbacks' older state
        stopped = stopped_early(trainer)  # as is early stopping's
        test_results: list[dict[str, float]] = []
        wants_test = self.config_init["fit"].get("test_after_fit", True)
        # a SIGTERM during the last epoch's validation: the run is complete and saved, but told to stop, so no test
        told_to_stop = any(isinstance(c, SaveOnInterrupt) and c.pending for c in trainer.callbacks)
        wants_test = wants_test and not told_to_stop
        splits = getattr(self.datamodule, "splits", None)
        has_test = contract.has_loader(self.datamodule, "test") and (splits is None or splits.test is not None)
        if wants_test and has_test and best and not trainer.fast_dev_run:
            # Lightning's weight averaging (EMA) saves the average as a checkpoint's weights and, while it holds its
            # average (in this process, after fit), loads the trained weights back over them: the test would see
            # weights validation never chose. Without it, the test reads the checkpoint's weights, as test would.
            for averaging in [c for c in trainer.callbacks if isinstance(c, WeightAveraging)]:
                trainer.callbacks.remove(averaging)
            test_results = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
        log_dir = trainer.log_dir  # a collective under DDP: every process asks, rank 0 prints
        if trainer.is_global_zero:
            print(
                run_summary(trainer, log_dir, best, last, test_results, getattr(self.datamodule, "source", ""), stopped)
            )
        if told_to_stop:
            raise SIGTERMException
        leave_process_group()

    after_validate = after_test = after_predict = lambda self: leave_process_group()


def follow_the_task(config: Any) -> None:
    """A value target's run keeps its best checkpoint (and stops early) by ``val/rmse``, several labels' by
    ``val/map``, where the config names a metric of classes (the CLI's default ``val/acc``): said in one line
    (:func:`lit_nets.core.models.tasks.follow_task`)."""
    data = config.get("data")
    args = data.get("init_args") if data is not None and hasattr(data, "get") else None
    kind = kind_in_config(args)
    said = follow_task(config, Task(kind=kind)) if kind != "classes" else ""
    if said:
        rank_zero_info(f"Monitor:      {said}")
