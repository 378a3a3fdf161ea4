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
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only

from lit_nets.core import checkpoint_files as checkpoints
from lit_nets.core import runtime
from lit_nets.core.checkpoint import Checkpoint, check_weights, classifier_class
from lit_nets.core.data.base import DATA_ARGS, TensorDataModule, trained_values
from lit_nets.core.errors import UserError
from lit_nets.core.logs import quiet_warnings
from lit_nets.core.models.classifier import Classifier
from lit_nets.train import config_errors
from lit_nets.train.callbacks import (
    FigureLogger,
    LastCheckpoint,
    LearningRateLogger,
    PredictionWriter,
    ProgressBar,
    QuietProfiler,
    SaveOnInterrupt,
    TrainingLock,
    last_checkpoint,
    main_checkpoint,
)

LINKED = DATA_ARGS  # the data module's values the model gets through the CLI's links
log = logging.getLogger(__name__)


def _differs(a: Any, b: Any) -> bool:
    """Whether two config values differ (a tuple and a list of the same items do not)."""
    normal = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return normal(a) != normal(b)


def default_precision(accelerator: Any) -> str:
    """bf16 mixed precision on a CUDA GPU that supports it, fp32 elsewhere (bf16 is ~8x slower on CPUs
    without AVX-512 BF16)."""
    wants_gpu = str(accelerator) in ("auto", "gpu", "cuda")
    if wants_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


class LitNetsCLI(LightningCLI):
    """Lightning's CLI with the data -> model links, the always-on callbacks and the defaults of this project (see
    the module docstring)."""

    def __init__(self, *args: Any, callbacks: list[Any] | None = None, **kwargs: Any) -> None:
        """Lightning's arguments, and ``callbacks``: objects added to the Trainer's (cv's and tune's own)."""
        self._extra_callbacks = list(callbacks or [])
        self.checkpoint: Checkpoint | None = None  # the --ckpt_path record, read once (_resolve_ckpt_path)
        kwargs.setdefault("model_class", Classifier)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("datamodule_class", TensorDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # a resumed run rewrites its config
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
        for name in LINKED:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
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

    # -- parsing ------------------------------------------------------------------------------------------------
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # raise instead of printing the usage text and exiting: parse_arguments says it in one line
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        from jsonargparse import ArgumentError

        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            given = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
            raise UserError(config_errors.one_line(str(e), given)) from None
        self._resolve_ckpt_path()
        # Lightning's private _parse_ckpt_path runs next and would merge the file's hyper-parameters again, data
        # values included (see lit_nets.core.private_api): it is handed no path, which before_instantiate_classes
        # puts back
        subcommand = self.config.get("subcommand")
        if subcommand and self.config[subcommand].get("ckpt_path"):
            self._ckpt_path, self.config[subcommand].ckpt_path = self.config[subcommand].ckpt_path, None

    # -- --ckpt_path: one rule for a file, a run folder, best and last -----------------------------------------
    def _resolve_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path`` and use the checkpoint's model arguments: they win over the config and the command
        line (a warning names each value that differed), whichever way the checkpoint was named.

        Resolve first (a file, a run folder, ``best``, ``last``: one route for each), check the arguments against
        the model class (:func:`lit_nets.core.checkpoint.model_hparams`), merge the model's own arguments only (the data
        module gives the data's values). ``fit`` resumes a run of our logs folder in that run's own folder.
        """
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        if config is None or "ckpt_path" not in config:  # no subcommand: the CLI was built with run=False
            return
        if config.get("weights_only", False) is None:  # Lightning would unpickle remote checkpoints as code
            config.weights_only = True
        trusted = config.get("weights_only") is False
        root = logs_root(config)
        given = config.ckpt_path
        self.checkpoint = Checkpoint.open(given, root, subcommand, trusted=trusted)  # the one record of it
        config.ckpt_path = self.checkpoint.file if self.checkpoint else None
        if self.checkpoint is None:
            return
        rank_zero_info(self.checkpoint.line())
        cls, args = self.checkpoint.model
        self._use_checkpoint_arguments(subcommand, cls, args, config.ckpt_path)  # makes a new self.config
        if subcommand == "fit":
            self._resume_in_its_folder(self.config[subcommand], root)
            say_if_finished(self.checkpoint.state, self.config[subcommand], given)

    def _use_checkpoint_arguments(self, subcommand: str, cls: type, args: dict[str, Any], ckpt_path: str) -> None:
        model = self.config[subcommand].model
        given = model.init_args.as_dict() if model.get("init_args") is not None else {}
        same_class = classifier_class({"_class_path": model.class_path}, ckpt_path) is cls
        own = {k: v for k, v in args.items() if k not in DATA_ARGS}
        own["init_from"] = None  # the weights come from the checkpoint
        if given.get("init_from"):
            log.info("model.init_from %s is not used: the weights come from %s", given["init_from"], ckpt_path)
        changed = [
            f"{k} {v!r} (not {given[k]!r})"
            for k, v in own.items()
            if same_class and k != "init_from" and k in given and _differs(given[k], v)
        ]
        if not same_class:
            changed.insert(0, f"the model class {cls.__name__} (not {model.class_path.rpartition('.')[2]})")
        if changed and rank_zero_only.rank == 0:
            log.warning("--ckpt_path %s: the checkpoint's model arguments are used: %s", ckpt_path, "; ".join(changed))
        class_path = f"{cls.__module__}.{cls.__qualname__}"
        update = {subcommand: {"model": {"class_path": class_path, "init_args": own}}}
        self.config = self.parser.parse_object(update, self.config)

    def _resume_in_its_folder(self, config: Any, root: Path) -> None:
        """A run resumed from a checkpoint of a run under ``root`` continues in that run's folder (its curves go on,
        its best checkpoint keeps its score), unless the logger's version is given."""
        logger = config.trainer.logger
        init = logger.get("init_args") if hasattr(logger, "get") else None
        folder = checkpoints.run_folder(config.ckpt_path, root)
        if folder is not None and init is not None and "version" in init and init.version is None:
            init.version = folder
            self._resumed_in = folder
            rank_zero_info(f"Resuming {root / folder} in its own folder")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        from lightning.pytorch.callbacks import ProgressBar as AnyProgressBar

        callbacks = [c for c in callbacks if c is not None]  # --early_stopping null: none
        given = config.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, AnyProgressBar) for c in [*given, *callbacks]
        ):
            callbacks = [*callbacks, ProgressBar()]  # the bar that redraws by time, not every batch
        # last.ckpt at every epoch's end: Lightning 2.6's save_last writes it only with a new best (LastCheckpoint),
        # added after the main checkpoint so that it records the best as updated at that epoch
        main = next((c for c in callbacks if type(c) is ModelCheckpoint), None)
        if main is not None and main.save_last:
            main.save_last = False
            callbacks = [*callbacks, LastCheckpoint()]
        callbacks = [*callbacks, *self._extra_callbacks]
        if config.get("profiler") is None:
            config = {**config, "profiler": QuietProfiler()}
        return super()._instantiate_trainer(config, callbacks)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if getattr(self, "_ckpt_path", None):
            config.ckpt_path = self._ckpt_path  # resolved in parse_arguments
        model_args = config.model.get("init_args") if config.get("model") else None
        if model_args is not None and model_args.get("init_from") in ("best", "last"):
            model_args.init_from = checkpoints.resolve(
                model_args.init_from, logs_root(config), "init_from", what="model.init_from"
            )
            rank_zero_info(f"Transfer: model.init_from {model_args.init_from}")
        if self.subcommand == "fit":
            weights_to_data(config)
        init = logger_args(config)
        if init is not None and init.get("save_dir") is not None:
            init.save_dir = logger_save_dir(config)
        if self.subcommand == "fit" and not config.get("ckpt_path"):
            refuse_a_used_version(config)
        checkpoint = config.get("checkpoint")
        if checkpoint is not None and checkpoint.get("filename") is None:
            checkpoint.filename = checkpoint_filename(checkpoint.get("monitor"))
        if config.trainer.precision is None:
            config.trainer.precision = default_precision(config.trainer.accelerator)
        if torch.cuda.is_available():
            torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer

    def instantiate_classes(self) -> None:
        """Build the data module, model and trainer; validate, test and predict on a checkpoint hand the data
        module the checkpoint's data values (its CSV schema, classes, image size, statistics), so that new files
        are encoded as the model was trained."""
        values = self.checkpoint.data_values if self.checkpoint and self.subcommand != "fit" else None
        with trained_values(values):
            super().instantiate_classes()

    # -- the runs ---------------------------------------------------------------------------------------------
    @contextmanager
    def _checkpoint_warnings(self) -> Iterator[None]:
        """Lightning's warnings about checkpoint folders that say nothing here: a checkpoint of another run folder
        (testing one, or resuming one into a new folder) starts best-tracking anew in this run's folder, and a run
        resumed in its own folder finds its checkpoints there."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*The dirpath has changed from.*")
            if getattr(self, "_resumed_in", None):
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
        with self._checkpoint_warnings():
            predictions = self.trainer.predict(model, **kwargs)
        if self.trainer.is_global_zero:
            print(predict_summary(predictions))

    # -- after fit: test the best checkpoint and say where everything is ------------------------------------
    def _check_checkpoint_fits(self) -> None:
        """A --ckpt_path of another model or data ends with one line that names what differs (classes, input shape,
        or the tensors), not a state_dict size-mismatch traceback."""
        if self.checkpoint is None or not hasattr(self.model, "num_classes"):
            return
        ckpt_path, checkpoint = self.checkpoint.file, self.checkpoint.state
        saved = self.checkpoint.hparams
        here = {"num_classes": self.model.num_classes, "input_shape": list(self.model.input_shape)}
        there = {"num_classes": saved.get("num_classes"), "input_shape": list(saved.get("input_shape") or [])}
        if saved and here != there:
            kind = str(saved.get("_class_path", "a model")).rpartition(".")[2]
            raise UserError(
                f"--ckpt_path {ckpt_path} holds {kind} for {there['num_classes']} classes of input "
                f"{there['input_shape']}, but this run's data gives {here['num_classes']} classes of input "
                f"{here['input_shape']}; use the config the checkpoint was trained with"
            )
        check_weights(self.model, checkpoint.get("state_dict") or {}, ckpt_path)
        self.checkpoint.state = {}  # checked: Lightning reads the weights from the file itself

    def _before_run(self) -> None:
        self._check_checkpoint_fits()
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
        has_test = getattr(self.datamodule, "splits", None) is not None and self.datamodule.splits.test is not None
        if wants_test and has_test and best and not trainer.fast_dev_run:
            test_results = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
        log_dir = trainer.log_dir  # a collective under DDP: every process asks, rank 0 prints
        if trainer.is_global_zero:
            print(
                run_summary(trainer, log_dir, best, last, test_results, getattr(self.datamodule, "source", ""), stopped)
            )
        if told_to_stop:
            raise SIGTERMException


def weights_to_data(config: Any) -> None:
    """A backbone's weights say how their images were prepared: size, centre crop, normalisation (their metadata,
    :func:`lit_nets.core.models.backbones.weights_info`). Each data argument left null (a folder's ``image_size``,
    ``crop_pct``, ``image_channels``, ``mean`` / ``std``) takes the weights' value, so the data module resizes and
    the model normalises as the weights expect; a value given in the config or on the command line is kept."""
    model, data = config.get("model"), config.get("data")
    if model is None or data is None or not str(model.get("class_path", "")).endswith(".BackboneClassifier"):
        return
    from lit_nets.core.models.backbones import weights_info

    init = model.get("init_args") or {}
    info = weights_info(init.get("backbone", "resnet18"), init.get("weights", "DEFAULT"))
    args = data.get("init_args")
    if args is None:
        return
    values = {
        "image_size": info.image_size,
        "crop_pct": info.crop_pct,
        "image_channels": 3,
        "mean": info.mean,
        "std": info.std,
    }
    if args.get("mean") is not None or args.get("std") is not None:
        del values["mean"], values["std"]  # given (both, or one: the data module says what is wrong)
    used = []
    for name, value in values.items():
        if name in args and args[name] is None and value is not None:
            args[name] = value
            used.append(f"{name} {value}")
    if used:
        rank_zero_info(f"Backbone {init.get('backbone')}: {info.described}: data " + ", ".join(used))


def logs_root(config: Any) -> Path:
    """The folder that holds the runs (``lightning_logs`` under the logger's save_dir), from the config."""
    init = logger_args(config)
    if init is not None and init.get("save_dir") is not None:
        return Path(logger_save_dir(config)) / str(init.get("name") or "lightning_logs")
    return Path(config.trainer.default_root_dir or ".") / "lightning_logs"


def remove_if_empty(run: Path) -> None:
    """Take away the folder of a run that failed in its first epoch before it saved any checkpoint (its config,
    hyper-parameters, an event file of next to nothing): a near-empty ``version_N`` that ``last`` and ``best`` would
    pass over anyway. A run that failed later keeps its folder: its curves are worth reading."""
    import shutil

    if run.is_dir() and not any(run.rglob("*.ckpt")):
        shutil.rmtree(run, ignore_errors=True)
        log.info("removed %s: the run failed before it saved a checkpoint", run)


def say_if_finished(checkpoint: dict[str, Any], config: Any, given: str) -> None:
    """A warning when ``fit --ckpt_path`` resumes a run that has nothing left to train: Lightning then only tests
    it, which reads like a training run that did nothing."""
    try:
        done = int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return
    stopper = next(
        (
            v
            for k, v in (checkpoint.get("callbacks") or {}).items()
            if k.startswith("EarlyStopping") and isinstance(v, dict)
        ),
        None,
    )
    max_epochs = config.trainer.get("max_epochs")
    if stopper and stopper.get("stopped_epoch"):
        why = f"early stopping ended it after epoch {stopper['stopped_epoch']}"
        more = "a larger --early_stopping.patience (or --early_stopping null) with a larger --trainer.max_epochs"
    elif max_epochs is not None and max_epochs >= 0 and done >= max_epochs:
        why = f"it ran all {done} of --trainer.max_epochs {max_epochs} epochs"
        more = f"a larger --trainer.max_epochs (e.g. {2 * max(done, 1)})"
    else:
        return
    if rank_zero_only.rank == 0:
        log.warning(
            "--ckpt_path %s: that run has finished (%s), so fit only tests it again; to train it further give %s, or "
            "start a new run from its weights with --model.init_from %s",
            given,
            why,
            more,
            given,
        )


def checkpoint_filename(monitor: str | None) -> str | None:
    """Checkpoint file names that carry the metric they are chosen by: ``epoch07-val_acc0.9840`` for val/acc,
    ``epoch38-val_loss0.0097`` for val/loss (Lightning's default without a monitor)."""
    if not monitor:
        return None
    return f"epoch{{epoch:02d}}-{monitor.replace('/', '_')}{{{monitor}:.4f}}"


def refuse_a_used_version(config: Any) -> None:
    """A new run with ``--trainer.logger.init_args.version`` naming a folder that holds a run would write its
    checkpoints and curves among that run's: one line instead (a resumed run goes on in its own folder)."""
    init = logger_args(config)
    version = init.get("version") if init is not None else None
    # rank 0 only: the other processes of a DDP run start later, when rank 0 may have made the folder already
    if version is None or init.get("save_dir") is None or rank_zero_only.rank != 0:
        return
    folder = logs_root(config) / (f"version_{version}" if isinstance(version, int) else str(version))
    if folder.is_dir() and any(folder.iterdir()):
        raise UserError(
            f"{folder} already holds a run: a new one there would mix its checkpoints and curves with that run's; "
            f"give another --trainer.logger.init_args.version (or leave it out for a new version_N), or continue "
            f"that run with --ckpt_path {folder / 'checkpoints' / 'last.ckpt'}"
        )


def logger_args(config: Any) -> Any:
    """The init_args of the configured logger (None when there is none, or it is not a class_path config)."""
    logger = config.trainer.logger
    return logger.get("init_args") if hasattr(logger, "get") else None


def logger_save_dir(config: Any) -> str:
    """The logger's save_dir: ``--trainer.default_root_dir`` moves the default logger (save_dir ``.``) with it,
    as it moves Lightning's own default logger; a save_dir the user set stays where it is."""
    save_dir = str(logger_args(config).save_dir)
    root = config.trainer.default_root_dir
    return str(root) if root and save_dir == "." else save_dir


def predict_summary(batches: list[dict[str, torch.Tensor]] | None) -> str:
    """How many inputs were predicted, and the accuracy where the inputs had labels."""
    if not batches:
        return "Predicted nothing."
    preds = torch.cat([b["preds"] for b in batches])
    text = f"Predicted {len(preds):,} inputs"
    if all("target" in b for b in batches):
        acc = (preds == torch.cat([b["target"] for b in batches])).float().mean().item()
        text += f"; accuracy against their labels {acc:.4f}"
    return text + "."


def run_summary(
    trainer: Any,
    log_dir: str | None,
    best: str,
    last: str,
    test_results: list[dict[str, float]],
    source: str,
    stopped: str = "",
) -> str:
    """A few lines that say where a run's logs and checkpoints are and how it did (``stopped``: what early stopping
    did, :func:`stopped_early`)."""
    lines = ["", "=" * 100]
    if log_dir:
        root = Path(log_dir).parent
        lines.append(f"Run folder:   {log_dir}    (view: tensorboard --logdir {root})")
        lines.append(f"Config:       {Path(log_dir) / 'config.yaml'}")
    ckpt = main_checkpoint(trainer)
    if best:
        score = ckpt.best_model_score
        score_text = f" ({ckpt.monitor} {float(score):.4f})" if score is not None else ""
        lines.append(f"Best:         {best}{score_text}")
    if last:
        lines.append(f"Last:         {last}    (resume: --ckpt_path last)")
    if stopped:
        lines.append(f"Stopped:      {stopped}")
    if test_results:
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted(test_results[0].items()))
        lines.append(f"Test (best):  {metrics}")
    if source:
        lines.append(f"Data:         {source}")
    lines.append("=" * 100)
    return "\n".join(lines)


def stopped_early(trainer: Any) -> str:
    """What early stopping did in a run, for its summary: at which epoch it stopped (or that it did not), and which
    checkpoint was kept; empty when the run had no early stopping."""
    from lightning.pytorch.callbacks import EarlyStopping, Timer

    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    ckpt = main_checkpoint(trainer)
    kept = ""
    if ckpt is not None and ckpt.best_model_path:
        kept = f"; kept {Path(ckpt.best_model_path).name}, the best by {ckpt.monitor}"
    out_of_time = timer is not None and timer.time_remaining("train") is not None and timer.time_remaining("train") <= 0
    if out_of_time and not (stopper is not None and stopper.stopped_epoch):
        limit = timer.time_elapsed("train") + timer.time_remaining("train")  # --trainer.max_time, in seconds
        return (
            f"by the time limit (trainer.max_time, {limit:g} s) after {trainer.current_epoch} of max_epochs "
            f"{trainer.max_epochs} epochs{kept}"
        )
    if stopper is None:
        return ""
    if not stopper.stopped_epoch:
        return (
            f"ran all {trainer.current_epoch} epochs (early stopping on {stopper.monitor}, patience "
            f"{stopper.patience}, did not trigger){kept}"
        )
    return (
        f"early, after epoch {stopper.stopped_epoch} (counted from 0, as in checkpoint names; max_epochs "
        f"{trainer.max_epochs}): {stopper.monitor} had not improved for {stopper.patience} validations (best "
        f"{float(stopper.best_score):.4f}){kept}"
    )
