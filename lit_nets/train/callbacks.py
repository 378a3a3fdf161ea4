"""Callbacks the CLI adds to every run, and Throughput, which the benchmark adds."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.callbacks import LearningRateFinder as LightningLearningRateFinder
from lightning.pytorch.profilers import PassThroughProfiler

from lit_nets.core import private_api
from lit_nets.core.checkpoint_files import RunLock
from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)


def prediction_table(
    probs: torch.Tensor,
    preds: torch.Tensor,
    names: list[str],
    ids: list[Any],
    targets: torch.Tensor | None = None,
    k: int = 5,
    max_class_columns: int = 20,
) -> dict[str, Any]:
    """The columns of a predictions file (see :class:`PredictionWriter`), shared with ``cv``'s out-of-fold file."""
    table: dict[str, Any] = {
        "id": list(ids),
        "label": [names[i] for i in preds.tolist()],
        "probability": probs.gather(1, preds[:, None]).squeeze(1).numpy().round(6),
    }
    if targets is not None:
        table["true_label"] = [names[i] for i in targets.tolist()]
    if len(names) <= max_class_columns:
        for c, name in enumerate(names):
            table[f"prob_{name}"] = probs[:, c].numpy().round(6)
    if len(names) > 2:
        from lit_nets.core.models.deployable import top_k

        table["top_k"] = [" ".join(f"{name}:{p:.4f}" for name, p in row) for row in top_k(probs, names, k)]
    return table


class PredictionWriter(BasePredictionWriter):
    """Write ``predict`` results to a CSV file: one row per input.

    Columns: ``id`` (the row number of a CSV file, the file name of an image, the index of a test image),
    ``label`` (the predicted class name), ``probability`` (of that class), ``true_label`` when the inputs had
    labels, then ``prob_<class>`` for every class when there are at most ``max_class_columns`` classes, and
    ``top_k`` ("name:probability" pairs, best first) when there are more than two.

    Args:
        output: CSV file to write (default: predictions.csv in the run folder, or in the working folder
            when the run has no logger).
        top_k: how many classes the top_k column lists.
        max_class_columns: most classes that get a probability column each.
    """

    def __init__(self, output: str | None = None, top_k: int = 5, max_class_columns: int = 20) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.top_k = top_k
        self.max_class_columns = max_class_columns
        self.written: Path | None = None

    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Any, batch_indices: Any) -> None:
        import pandas as pd

        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        if not batches:
            return
        probs = torch.cat([b["probs"] for b in batches]).float().cpu()
        preds = torch.cat([b["preds"] for b in batches]).cpu()
        index = torch.cat([b["index"] for b in batches]).cpu() if "index" in batches[0] else torch.arange(len(preds))
        names = list(getattr(pl_module, "class_names", [str(i) for i in range(probs.shape[1])]))
        given = getattr(trainer.datamodule, "predict_ids", None) if trainer.datamodule is not None else None
        targets = torch.cat([b["target"] for b in batches]).cpu() if all("target" in b for b in batches) else None
        ids = [given[i] for i in index.tolist()] if given is not None else index.tolist()
        table = prediction_table(probs, preds, names, ids, targets, self.top_k, self.max_class_columns)
        frame = pd.DataFrame(table).sort_values("id", kind="stable") if given is None else pd.DataFrame(table)
        self.written = self._path(trainer)
        self.written.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(self.written, index=False)
        say(trainer, f"Predictions:  {self.written} ({len(frame):,} rows)")

    def _path(self, trainer: Any) -> Path:
        path = Path(self.output) if self.output else Path(trainer.log_dir or ".") / "predictions.csv"
        if trainer.world_size > 1:  # each process writes the rows it predicted
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path


class LearningRateLogger(LearningRateMonitor):
    """Lightning's ``LearningRateMonitor``, standing aside in runs without a logger (``--trainer.logger false``),
    where Lightning's own raises: the CLI adds it to every run."""

    def on_train_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        self._active = bool(trainer.loggers)
        if self._active:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_active", False):
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_active", False):
            super().on_train_epoch_start(trainer, *args, **kwargs)


class FigureLogger(Callback):
    """Pictures of a run, saved as PNG in the run folder and logged to TensorBoard (``figures/...``).

    - after test (and after ``validate``): the confusion matrix with class names (torchmetrics' own plot) and a
      CSV of precision, recall, F1 and support per class; for images, a grid of the most confident mistakes;
    - at the end of fit, for CNNs: the first conv layer's filters, and its activations of one validation image.

    Args:
        enabled: draw the figures (off: nothing is drawn, e.g. for benchmarks).
        max_mistakes: how many mistakes the grid shows, the most confident first.
    """

    def __init__(self, enabled: bool = True, max_mistakes: int = 24) -> None:
        self.enabled = enabled
        self.max_mistakes = max_mistakes
        self.written: list[Path] = []
        self.folder: Path | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # ``trainer.log_dir`` is a collective under DDP (rank 0 broadcasts its folder): ask here, where every process
        # comes, not in the drawing code that only rank 0 runs (rank 0 waited there for the others forever)
        self.folder = Path(trainer.log_dir or trainer.default_root_dir)

    # -- collecting during test / validate ------------------------------------------------------------------
    def _collecting(self, trainer: Any, stage: str) -> bool:
        # validation inside fit runs every epoch: drawn only for the validate subcommand
        return self.enabled and (stage == "test" or trainer.state.fn == "validate")

    def _start(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not self._collecting(trainer, stage):
            return
        from torchmetrics.classification import MulticlassConfusionMatrix

        self.confmat = MulticlassConfusionMatrix(pl_module.num_classes).to(pl_module.device)
        self.mistakes: list[tuple[float, torch.Tensor, int, int]] = []

    def _batch(self, trainer: Any, pl_module: Any, probs: Any, batch: Any, stage: str) -> None:
        if not self._collecting(trainer, stage) or not isinstance(probs, torch.Tensor):
            return
        x, y = batch[0], batch[1]
        preds = probs.argmax(1)
        self.confmat.update(preds, y)
        if x.dim() == 4:  # images: keep the most confident mistakes seen so far
            wrong = (preds != y).nonzero().flatten()
            confidence = probs.gather(1, preds[:, None]).squeeze(1)
            for i in wrong.tolist():
                self.mistakes.append((float(confidence[i]), x[i].cpu(), int(y[i]), int(preds[i])))
            self.mistakes = sorted(self.mistakes, key=lambda m: -m[0])[: self.max_mistakes]

    def _end(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not self._collecting(trainer, stage):
            return
        from lit_nets.core import plots

        counts = self.confmat.compute().cpu()  # synchronised across processes
        if not trainer.is_global_zero:
            return
        names, n = list(pl_module.class_names), int(counts.sum())
        acc = float(counts.diag().sum()) / max(n, 1)
        title = f"Confusion matrix, {stage}: {n:,} inputs, accuracy {acc:.4f}"
        self._emit(trainer, plots.plot_confusion(self.confmat, names, title), f"confusion_matrix_{stage}")
        self.written.append(plots.write_per_class(counts, names, self._folder(trainer) / f"per_class_{stage}.csv"))
        if self.mistakes:
            title = f"The {len(self.mistakes)} most confident mistakes, {stage} (true / predicted, confidence)"
            self._emit(trainer, plots.plot_mistakes(self.mistakes, names, title), f"mistakes_{stage}")

    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start(trainer, pl_module, "test")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        self._batch(trainer, pl_module, outputs, batch, "test")

    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._end(trainer, pl_module, "test")

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start(trainer, pl_module, "val")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        self._batch(trainer, pl_module, outputs, batch, "val")

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._end(trainer, pl_module, "val")

    # -- what a CNN learned, at the end of fit ----------------------------------------------------------------
    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        net = getattr(pl_module, "net", None)
        conv = next((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None) if net is not None else None
        if not self.enabled or conv is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        from lit_nets.core import plots

        self._emit(trainer, plots.plot_filters(conv.weight), "filters_conv1")
        loader = trainer.datamodule.val_dataloader() if trainer.datamodule is not None else None
        if loader is None:
            return
        x, y = next(iter(loader))[:2]
        image = x[:1].to(pl_module.device)
        features = getattr(net, "features", None)
        with torch.no_grad():
            if isinstance(features, torch.nn.Sequential) and hasattr(features, "conv1"):  # our CNN: conv1 [bn1] act1
                first_block = torch.nn.Sequential(*[m for n, m in features.named_children() if n.endswith("1")][:-1])
                maps = first_block(pl_module.normalize(image))[0]
            else:  # a backbone: what its first convolution makes of the image
                seen: list[torch.Tensor] = []
                hook = conv.register_forward_hook(lambda module, args, out: seen.append(out))
                was_training = pl_module.training
                try:
                    pl_module.eval()(image)  # BatchNorm with its running statistics: one image is a batch of one
                finally:
                    hook.remove()
                    pl_module.train(was_training)
                maps = seen[0][0]
        caption = f"the first validation image (class {pl_module.class_names[int(y[0])]})"
        self._emit(trainer, plots.plot_activations(x[0], maps, "conv1", caption), "activations_conv1")

    # -- output ------------------------------------------------------------------------------------------------
    def _folder(self, trainer: Any) -> Path:
        return self.folder or Path(trainer.default_root_dir)

    def _emit(self, trainer: Any, fig: Any, name: str) -> None:
        from lit_nets.core import plots

        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_figure"):  # TensorBoard
                logger.experiment.add_figure(f"figures/{name}", fig, global_step=trainer.global_step, close=False)
        self.written.append(plots.save(fig, self._folder(trainer) / f"{name}.png"))


class Throughput(Callback):
    """Training samples per second of each epoch, from its start to its last optimiser step (validation, logging
    at epoch end and checkpointing excluded), logged as ``perf/train_samples_per_sec`` at the epoch's end.

    Add it to a run with ``--trainer.callbacks+=lit_nets.train.callbacks.Throughput``; ``scripts/benchmark.py`` does.
    Lightning's ThroughputMonitor measures per step with a device sync each time and needs a batch-size function
    in the config, hence this one: one clock reading per batch and one sync (on GPUs) per epoch.
    """

    def __init__(self) -> None:
        self.history: list[float] = []

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._samples, self._start, self._elapsed = 0, time.perf_counter(), None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._samples += len(batch[0])
        if batch_idx + 1 == trainer.num_training_batches:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self._elapsed = time.perf_counter() - self._start

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._elapsed:
            self.history.append(self._samples / self._elapsed)
            pl_module.log("perf/train_samples_per_sec", self.history[-1], on_epoch=True, sync_dist=True)


class LearningRateFinder(LightningLearningRateFinder):
    """Lightning's ``LearningRateFinder`` (a sweep of ``num_training_steps`` batches from ``min_lr`` to ``max_lr``
    before training), with the suggestion taken where the loss falls fastest against log(lr), the steepest descent of
    the curve as it is plotted; ``configs/lr_find.yaml`` adds it.

    Lightning 2.6 differentiates the loss against the learning rate itself although the rates it tries are spaced
    exponentially (Lightning issue #21141; the fix, PR #21171, is not released), so the tiny first steps, where the
    loss moves only with the batches, weigh the most: on the wine set SGD and Adam got the same rate, 0.0035, from
    one kink that the batch order put into both curves. Written by hand until Lightning ships the fix.

    Args:
        min_lr: the smallest learning rate tried.
        max_lr: the largest learning rate tried.
        num_training_steps: batches in the sweep (one learning rate each).
        mode: exponential (rates spaced evenly on a log scale) or linear.
        early_stop_threshold: stop the sweep when the loss exceeds this many times its best (none: never).
        update_attr: set the model's ``lr`` (and the optimiser's) to the suggestion.
        attr_name: the model attribute that holds the learning rate (default: ``lr``).
    """

    def __init__(
        self,
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training_steps: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> None:
        super().__init__(min_lr, max_lr, num_training_steps, mode, early_stop_threshold, False, attr_name)
        self.update_attr, self.log_spaced, self.attr_name = (
            update_attr,
            mode.lower() == "exponential",
            attr_name or "lr",
        )
        self.suggested: float | None = None

    def lr_find(self, trainer: Any, pl_module: Any) -> None:
        from lightning.pytorch.utilities.parsing import lightning_setattr

        super().lr_find(trainer, pl_module)  # the sweep; Lightning restores the model and optimiser after it
        if self.optimal_lr is None:
            return
        self.suggested = steepest_descent(
            self.optimal_lr.results["lr"], self.optimal_lr.results["loss"], self.log_spaced
        )
        if self.suggested is None:
            log.warning("the learning-rate finder has too few finite losses to suggest a rate: keeping the model's")
        elif self.update_attr:
            lightning_setattr(pl_module, self.attr_name, self.suggested)
            for optimizer in trainer.optimizers:  # already built for fit: training continues with the new rate
                for group in optimizer.param_groups:
                    group["lr"] = self.suggested
            log.info("Learning rate set to %.4g (steepest descent of the loss against log(lr))", self.suggested)


def steepest_descent(
    lrs: list[float], losses: list[float], log_spaced: bool = True, skip_begin: int = 10, skip_end: int = 1
) -> float | None:
    """The learning rate where the loss falls fastest (against log(lr) when the rates are log-spaced), leaving out
    the first ``skip_begin`` and the last ``skip_end`` points as Lightning does; None with fewer than 2 points."""
    lr = torch.tensor(lrs[skip_begin:-skip_end], dtype=torch.float64)
    loss = torch.tensor(losses[skip_begin:-skip_end], dtype=torch.float64)
    finite = torch.isfinite(loss)
    lr, loss = lr[finite], loss[finite]
    if len(loss) < 2:
        return None
    slope = torch.gradient(loss, spacing=[lr.log10() if log_spaced else lr])[0]
    return float(lr[slope.argmin()])


def say(trainer: Any, text: str) -> None:
    """Print a result line while a progress bar may be on the screen: through the bar (tqdm clears its line first),
    so that in a log file, where the bar's carriage returns do not clear anything, the line starts a line of its own."""
    import sys

    bar = getattr(trainer, "progress_bar_callback", None)
    if isinstance(bar, TQDMProgressBar) and not sys.stderr.isatty():  # end the bar's line (tqdm writes to stderr)
        sys.stderr.write("\n")
        sys.stderr.flush()
    print(text, flush=True)


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, redrawn at most every ``refresh_seconds`` during training (and at an epoch's last
    batch). Lightning's redraws after every batch; a redraw costs 0.5 to 2.5 ms here (the metrics are read back
    from the device, tqdm formats and writes the line): a sixth of a small MLP's step, and at 4 redraws a second
    still 1% of the seed CNN's training time. The CLI uses this bar unless the trainer has another one or
    ``enable_progress_bar`` is false."""

    def __init__(self, refresh_seconds: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refresh_seconds = refresh_seconds
        self._drawn = 0.0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.monotonic()
        if batch_idx + 1 != self.total_train_batches and now - self._drawn < self.refresh_seconds:
            return
        self._drawn = now
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class QuietProfiler(PassThroughProfiler):
    """Lightning's default profiler (which records nothing) without its cost: Lightning wraps each hook of each
    callback in ``profiler.profile(name)``, about 60 times a training step, and the default builds a new
    generator-based context manager each time. This one hands back one shared no-op context. The CLI uses it
    unless ``--trainer.profiler`` names a real one (simple, advanced, pytorch)."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._nothing


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: the newest state of the run (weights, optimiser, loops, callbacks), written at the end of every
    epoch whatever the monitored metric did. ``--ckpt_path last`` resumes from it.

    The CLI adds one to every run (``--checkpoint.save_last false`` leaves it out). Lightning 2.6's
    ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it also saves a top-k checkpoint, so after a
    run whose best epoch was not its last, ``last.ckpt`` held the best epoch and a resumed run trained the later
    epochs again. This is a second Lightning ModelCheckpoint that monitors nothing and keeps one file, named
    ``last``: Lightning's own logic decides when (after validation, or at the end of a training epoch without
    validation). Lightning runs checkpoint callbacks after all others and in the order given; the CLI adds this one
    after the run's main checkpoint, so ``last.ckpt`` records the best checkpoint as updated at that epoch.

    Args:
        every_n_train_steps: also save every this many optimiser steps (see :class:`PeriodicCheckpoint`); none: at
            the end of each epoch.
    """

    def __init__(self, every_n_train_steps: int | None = None) -> None:
        # no version counter: every writer of last.ckpt (this, SaveOnInterrupt) replaces the same file
        super().__init__(
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            save_last=False,
            every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,
        )

    @property
    def path(self) -> str:
        """The last.ckpt written, or "" before the first save."""
        return self.best_model_path  # the one file this callback keeps


class PeriodicCheckpoint(LastCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` optimiser steps as well, so a run killed without warning (SIGKILL,
    power loss, a pre-empted VM) loses at most that many steps: ``configs/preemptible.yaml`` adds it.

    A :class:`LastCheckpoint` that saves by steps; the run's own LastCheckpoint still saves at each epoch's end.
    Setting ``every_n_train_steps`` on the main checkpoint instead does not do this: Lightning then saves no
    checkpoint at epochs' ends, and a monitored metric that does not exist yet (before the first validation) or is
    about to change (an epoch's last batch) postpones the save to the next validation.

    Args:
        every_n_train_steps: optimiser steps between two saves.
    """

    def __init__(self, every_n_train_steps: int = 100) -> None:
        if every_n_train_steps < 1:
            raise UserError(f"PeriodicCheckpoint: every_n_train_steps must be 1 or more, got {every_n_train_steps}")
        super().__init__(every_n_train_steps=every_n_train_steps)


def main_checkpoint(trainer: Any) -> ModelCheckpoint | None:
    """The run's main ModelCheckpoint (the best by the monitored metric): the first one that is not a
    :class:`LastCheckpoint`. ``trainer.checkpoint_callback`` is the first of any kind, which with
    ``configs/preemptible.yaml`` was the PeriodicCheckpoint (no best checkpoint, so no test after fit)."""
    return next((c for c in trainer.checkpoint_callbacks if not isinstance(c, LastCheckpoint)), None)


def last_checkpoint(trainer: Any) -> LastCheckpoint | None:
    """The run's :class:`LastCheckpoint` that saves at epochs' ends (not a PeriodicCheckpoint), if any."""
    return next((c for c in trainer.checkpoint_callbacks if type(c) is LastCheckpoint), None)


class TrainingLock(Callback):
    """Marks the run folder as being trained while ``fit`` runs (a :class:`lit_nets.core.checkpoint_files.RunLock` on
    ``<run>/.training``), so that ``--ckpt_path last`` / ``best`` of another command pass over it instead of resuming
    from, or testing, a run that is still being written. The CLI adds it to every run."""

    def __init__(self) -> None:
        self.lock: RunLock | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit" or not trainer.loggers:  # without a logger there is no run folder of its own to mark
            return
        folder = trainer.log_dir  # a collective under DDP: every process asks
        if trainer.is_global_zero and folder:
            self.lock = RunLock(folder)
            self.lock.acquire()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class SaveOnInterrupt(Callback):
    """On SIGTERM (a cluster's pre-emption, ``kill``), save the run's state as its ``last.ckpt`` before the process
    ends, so ``--ckpt_path last`` resumes from the step it reached, mid-epoch included.

    It saves at a training step's ``on_train_batch_end``, the point where ModelCheckpoint saves its mid-epoch
    checkpoints, so the saved loop state is one Lightning resumes correctly (saved later, from ``on_exception``
    as OnExceptionCheckpoint does, the resumed run skipped an epoch in our test). Lightning's own handler cannot
    be used for this: it sets ``trainer.received_sigterm`` at once, and the loops stop on it after a step's
    callbacks have run (a SIGTERM in between stopped the run unsaved) or in the middle of validation (unsaved
    too). So while training runs, SIGTERM goes to this callback's handler, which only notes it; the next step's
    end saves and then raises Lightning's flag, and the loop stops right there. A SIGTERM during validation is
    answered once validation and one more step are done. The CLI adds it to every run. SIGKILL and power loss
    cannot be caught: the last regular checkpoint is what survives them.
    """

    def __init__(self) -> None:
        self.saved: Path | None = None
        self.pending = False  # a SIGTERM came, not yet answered
        self._previous: Any = None
        self._launcher: Any = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            return
        self._launcher = trainer.strategy.launcher
        self._previous = signal.signal(signal.SIGTERM, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        if not self.pending:
            log.info("Received SIGTERM: saving when this training step ends, then stopping")
            if self._launcher is not None:  # processes this one started (DDP by script) get it too, as Lightning does
                self._launcher.kill(signum)
        self.pending = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        stop = self.pending or trainer.received_sigterm  # Lightning's flag: a SIGTERM before training started
        if trainer.world_size > 1:  # every process saves (saving is collective), when any was told to stop
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        checkpoint = trainer.checkpoint_callback  # any of them: they all write to the run's checkpoints/ folder
        if not stop or self.saved is not None or checkpoint is None or checkpoint.dirpath is None:
            return
        self.saved = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
        trainer.save_checkpoint(self.saved, weights_only=False)  # the whole state: optimiser, loops, callbacks
        if trainer.is_global_zero:
            say(
                trainer,
                f"Interrupted at epoch {trainer.current_epoch}, step {trainer.global_step}: saved "
                f"{self.saved}; resume with --ckpt_path last",
            )
        private_api.stop_at_once(trainer)  # trainer.should_stop would wait for the epoch's end

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._restore()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
