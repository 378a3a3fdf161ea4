"""The command line: ``python -m lit_nets {fit,validate,test,predict} --config configs/cnn.yaml``.

A :class:`~lightning.pytorch.cli.LightningCLI` subclass. What it adds to Lightning's own:

- the data module's shape, class count, class names and normalisation are linked into the model;
- always-on callbacks: checkpoints (``last.ckpt`` plus the best by ``val/acc``) and a learning-rate monitor,
  configurable under ``--checkpoint.*`` and ``--lr_monitor.*``;
- TensorBoard under ``lightning_logs/``, a fixed seed, and a precision default (``precision: null``) that
  means bf16 mixed precision on GPUs that support it and fp32 everywhere else;
- ``--ckpt_path last|best`` find the newest earlier run's checkpoints (see :mod:`lit_nets.checkpoints`);
- ``fit`` ends with a test of the best checkpoint (``--test_after_fit false`` to skip) and says where the
  logs and checkpoints are;
- bad input ends with one line ``error: ...`` and exit status 2 (``LIT_NETS_TRACEBACK=1`` shows the
  traceback).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lit_nets import checkpoints, runtime
from lit_nets.callbacks import (
    FigureLogger,
    LearningRateLogger,
    PredictionWriter,
    ProgressBar,
    QuietProfiler,
    SaveOnInterrupt,
)
from lit_nets.data.base import TensorDataModule, quiet_worker_warning
from lit_nets.errors import UserError
from lit_nets.models.classifier import Classifier

LINKED = ("num_classes", "input_shape", "mean", "std", "class_names", "class_weights", "schema")


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
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
            },
        )
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
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                # each run has a folder of its own, and a PeriodicCheckpoint writes the same last.ckpt
                "checkpoint.enable_version_counter": False,
                "checkpoint.filename": "epoch{epoch:02d}-val_acc{val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LearningRateLogger, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "epoch"})
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(FigureLogger, "figures")

    # -- before anything is built ---------------------------------------------------------------------------
    def _parse_ckpt_path(self) -> None:
        # Lightning reads a --ckpt_path file here, before any hook of ours: check it first, for a clear message
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            checkpoints.load(ckpt_path, "--ckpt_path")
        super()._parse_ckpt_path()

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        from lightning.pytorch.callbacks import ProgressBar as AnyProgressBar

        given = config.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, AnyProgressBar) for c in [*given, *callbacks]
        ):
            callbacks = [*callbacks, ProgressBar()]  # the bar that redraws by time, not every batch
        callbacks = [*callbacks, SaveOnInterrupt()]
        if config.get("profiler") is None:
            config = {**config, "profiler": QuietProfiler()}
        return super()._instantiate_trainer(config, callbacks)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        # Resolve --ckpt_path before anything is built, so a data module can read what it needs from it.
        if config.get("weights_only", False) is None:  # Lightning would unpickle remote checkpoints as code
            config.weights_only = True
        if "ckpt_path" in config:  # absent when the CLI is built with run=False
            trusted = config.get("weights_only") is False
            config.ckpt_path = checkpoints.resolve(
                config.ckpt_path, logs_root(config), self.subcommand, trusted=trusted
            )
        if config.get("ckpt_path"):
            rank_zero_info(f"Checkpoint: {config.ckpt_path}")
            init_args = config.data.get("init_args") if config.get("data") else None
            wants_schema = init_args is not None and "schema_from" in init_args and not init_args.schema_from
            if self.subcommand != "fit" and wants_schema:
                init_args.schema_from = config.ckpt_path  # predict new files with the trained encoding
        model_args = config.model.get("init_args") if config.get("model") else None
        if model_args is not None and model_args.get("init_from") in ("best", "last"):
            model_args.init_from = checkpoints.resolve(
                model_args.init_from, logs_root(config), "init_from", what="model.init_from"
            )
            rank_zero_info(f"Transfer: model.init_from {model_args.init_from}")
        if config.trainer.precision is None:
            config.trainer.precision = default_precision(config.trainer.accelerator)
        if torch.cuda.is_available():
            torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer
        quiet_worker_warning()
        if self.subcommand != "fit":  # testing a checkpoint from another run folder is the normal case here
            warnings.filterwarnings("ignore", message=r".*The dirpath has changed from.*")
        # Small tabular sets have fewer batches than the step-logging interval; epoch metrics are what we log.
        warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
        # Frozen conv blocks keep their BatchNorm in eval mode on purpose (model.freeze).
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
        # Predict batches carry their own row index (see TensorDataModule.predict_dataloader).
        warnings.filterwarnings("ignore", message=r".*Couldn't infer the batch indices.*")
        # Lightning 2.6 still calls a pytree API that torch 2.14 deprecates; nothing for a user to act on.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

    def predict(self, model: Any, **kwargs: Any) -> None:
        predictions = self.trainer.predict(model, **kwargs)
        if self.trainer.is_global_zero:
            print(predict_summary(predictions))

    # -- after fit: test the best checkpoint and say where everything is ------------------------------------
    def _check_checkpoint_fits(self) -> None:
        """A --ckpt_path of another model or data (classes, input shape) ends with one line, not a state_dict
        size-mismatch traceback."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if not ckpt_path or not hasattr(self.model, "num_classes"):
            return
        saved = checkpoints.hparams_of(ckpt_path)
        here = {"num_classes": self.model.num_classes, "input_shape": list(self.model.input_shape)}
        there = {"num_classes": saved.get("num_classes"), "input_shape": list(saved.get("input_shape") or [])}
        if saved and here != there:
            kind = str(saved.get("_class_path", "a model")).rpartition(".")[2]
            raise UserError(
                f"--ckpt_path {ckpt_path} holds {kind} for {there['num_classes']} classes of input "
                f"{there['input_shape']}, but this run's data gives {here['num_classes']} classes of input "
                f"{here['input_shape']}; use the config the checkpoint was trained with"
            )

    def _before_run(self) -> None:
        self._check_checkpoint_fits()
        runtime.freeze_heap()  # start-up is over: its objects need no more garbage collections

    before_fit = before_validate = before_test = before_predict = _before_run

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.interrupted:
            return
        ckpt = trainer.checkpoint_callback
        best = ckpt.best_model_path if ckpt else ""
        last = ckpt.last_model_path if ckpt else ""  # read now: testing restores the callback's older state
        test_results: list[dict[str, float]] = []
        wants_test = self.config_init["fit"].get("test_after_fit", True)
        has_test = getattr(self.datamodule, "splits", None) is not None and self.datamodule.splits.test is not None
        if wants_test and has_test and best and not trainer.fast_dev_run:
            test_results = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
        log_dir = trainer.log_dir  # a collective under DDP: every process asks, rank 0 prints
        if trainer.is_global_zero:
            print(run_summary(trainer, log_dir, best, last, test_results, getattr(self.datamodule, "source", "")))


def logs_root(config: Any) -> Path:
    """The folder that holds the runs (``lightning_logs`` under the logger's save_dir), from the config."""
    logger = config.trainer.logger
    init = logger.get("init_args") if hasattr(logger, "get") else None
    base = config.trainer.default_root_dir or "."
    if init is not None and init.get("save_dir") is not None:
        return Path(init.save_dir) / str(init.get("name") or "lightning_logs")
    return Path(base) / "lightning_logs"


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
    trainer: Any, log_dir: str | None, best: str, last: str, test_results: list[dict[str, float]], source: str
) -> str:
    """A few lines that say where a run's logs and checkpoints are and how it did."""
    lines = ["", "=" * 100]
    if log_dir:
        root = Path(log_dir).parent
        lines.append(f"Run folder:   {log_dir}    (view: tensorboard --logdir {root})")
        lines.append(f"Config:       {Path(log_dir) / 'config.yaml'}")
    ckpt = trainer.checkpoint_callback
    if best:
        score = ckpt.best_model_score
        score_text = f" ({ckpt.monitor} {float(score):.4f})" if score is not None else ""
        lines.append(f"Best:         {best}{score_text}")
    if last:
        lines.append(f"Last:         {last}    (resume: --ckpt_path last)")
    if test_results:
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted(test_results[0].items()))
        lines.append(f"Test (best):  {metrics}")
    if source:
        lines.append(f"Data:         {source}")
    lines.append("=" * 100)
    return "\n".join(lines)


class _NoAdverts(logging.Filter):
    """Drop Lightning's "💡 Tip: try installing ..." lines: advertising, not information about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message comes (pytest and notebooks swap it; a handler that kept
    the first one would write to a closed stream later)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging() -> None:
    """Our own messages (``lit_nets.*`` loggers) go to stderr like Lightning's."""
    logger = logging.getLogger("lit_nets")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).addFilter(_NoAdverts())
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_NoAdverts())


def run_tool(name: str, argv: list[str]) -> None:
    """The subcommands that are not Trainer methods, each a module with a ``main(argv)``."""
    import importlib

    importlib.import_module(f"lit_nets.{TOOLS[name]}").main(argv)


TOOLS = {"plot": "plots", "explain": "explain", "export": "export", "serve": "serve"}


def main(args: list[str] | None = None) -> None:
    """Entry point of ``python -m lit_nets`` and the ``lit-nets`` console script.

    Trainer subcommands (fit, validate, test, predict) go to the LightningCLI; ``plot``, ``explain``, ``export``
    and ``serve`` are plain tools with their own arguments (``python -m lit_nets serve --help``).
    """
    setup_logging()
    runtime.tune()
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv and argv[0] in TOOLS:
            run_tool(argv[0], argv[1:])
            return
        LitNetsCLI(args=args)
    except Exception as e:
        user_error = find_user_error(e)
        if user_error is None or os.environ.get("LIT_NETS_TRACEBACK"):
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)


def find_user_error(error: BaseException | None) -> UserError | None:
    """The :class:`UserError` behind ``error``, if any (jsonargparse wraps errors raised while it builds
    the model and data in a ValueError of its own)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        if isinstance(error, MisconfigurationException):  # Lightning's word for a bad trainer setting
            return UserError(f"trainer: {error}")
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            where = f" writing {error.filename}" if error.filename else ""
            return UserError(
                f"no space left on the device{where}. Free some (old runs under lightning_logs/, or fewer "
                "checkpoints with --checkpoint.save_top_k), then resume with --ckpt_path last: a checkpoint is "
                "written to a temporary file first, so the last complete one is still there"
            )
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
