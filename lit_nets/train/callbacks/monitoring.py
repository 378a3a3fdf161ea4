"""What a run shows while it trains: the progress bar, the learning rate, throughput, the learning-rate finder, and
Lightning's profiler kept quiet."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import torch
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    TQDMProgressBar,
)
from lightning.pytorch.callbacks import LearningRateFinder as LightningLearningRateFinder
from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar
from lightning.pytorch.profilers import PassThroughProfiler

log = logging.getLogger(__name__)


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


class Throughput(Callback):
    """Training samples per second of each epoch, from its start to its last optimiser step (validation, logging
    at epoch end and checkpointing excluded), logged as ``perf/train_samples_per_sec`` at the epoch's end.

    Add it to a run with ``--trainer.callbacks+=lit_nets.train.callbacks.Throughput``; ``benchmarks/loops.py`` does.
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

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the logger's version cut to 4 characters ("al_0" of trial_0): noise
        return metrics


class EpochLines(LightningProgressBar):
    """What the CLI shows instead of bars when standard error is no terminal (a log file, a pipe, a CI job): one line
    per epoch with its metrics and time (validation, test and predict say their results in their own lines). tqdm's
    bars redraw with carriage returns, which a file keeps: 446 KB of bars for one short run."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._say_epoch(trainer, pl_module)
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # the model logs the epoch's train/loss after the callbacks' hook: said as the next epoch starts, or at the end
        self._pending = (trainer.current_epoch, time.monotonic() - self._started)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._say_epoch(trainer, pl_module)

    def _say_epoch(self, trainer: Any, pl_module: Any) -> None:
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is None or not self._enabled:
            return
        epoch, seconds = pending
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if not k.endswith("_step")}
        shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(metrics.items()))
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        self._print(f"Epoch {epoch + 1}{epochs}  {shown}  ({seconds:.1f} s)")

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    @staticmethod
    def _print(line: str) -> None:
        import sys

        print(line, file=sys.stderr, flush=True)


def progress_bar() -> Any:
    """The CLI's progress display: bars on a terminal, a line per epoch elsewhere."""
    import sys

    return ProgressBar() if sys.stderr.isatty() else EpochLines()


class ThreadsFollowLoad(Callback):
    """Each epoch (at most every 5 s), look again at the cores other processes keep busy and change torch's threads
    when the share changed (:class:`lit_nets.core.threads.LoadWatch`), with a line that says so. The CLI adds it when
    the threads were chosen automatically for a single process."""

    def __init__(self, watch: Any) -> None:
        self.watch = watch

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        before = self.watch.threads
        after = self.watch.look()
        if after is None:
            return
        from lit_nets.core import threads

        threads.apply(after)
        say(
            trainer,
            f"Threads:      {before} -> {after} per process (other processes now keep {self.watch.others:.1f} of the "
            f"{self.watch.cores} cores busy)",
        )


class QuietProfiler(PassThroughProfiler):
    """Lightning's default profiler (which records nothing) without its cost: Lightning wraps each hook of each
    callback in ``profiler.profile(name)``, about 60 times a training step, and the default builds a new
    generator-based context manager each time. This one hands back one shared no-op context. The CLI uses it
    unless ``--trainer.profiler`` names a real one (simple, advanced, pytorch)."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._nothing
