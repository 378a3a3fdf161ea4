"""Training for the Python doors: a model and a data module given as objects, fitted in this process with the
commands' rules (threads, devices, precision) and without their files (no run folder, logger or checkpoint file),
as a scikit-learn estimator's ``fit`` does; the best validation epoch's weights kept in memory. Also what a
notebook needs of any fit: one progress bar (:class:`EpochBar`), Lightning's info lines off (:class:`quiet`), and
Ctrl-C answered with ``KeyboardInterrupt`` (:func:`interruptible`)."""

from __future__ import annotations

import copy
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks.progress import ProgressBar


class EpochBar(ProgressBar):
    """One bar over the epochs (tqdm's notebook widget in a notebook, text elsewhere) with the last epoch's losses;
    Lightning's own bars are one per epoch and per validation, which fill a notebook cell. By hand: no such bar in
    Lightning."""

    def __init__(self) -> None:
        super().__init__()
        self.bar: Any = None
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        from tqdm.auto import tqdm

        if self._enabled and trainer.is_global_zero:
            self.bar = tqdm(total=trainer.max_epochs, desc="Training", unit="epoch", dynamic_ncols=True)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.bar is not None:
            shown = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k in ("train/loss", "val/loss")}
            self.bar.set_postfix({k: f"{float(v):.4f}" for k, v in shown.items()}, refresh=False)
            self.bar.update(1)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_exception = lambda self, trainer, pl_module, exception: self.on_train_end(trainer, pl_module)  # noqa: E731


class BestWeights(Callback):
    """Keep a copy of the weights (and buffers: a calibration's temperature) of the epoch with the lowest
    ``val/loss``, in memory, and put them back when training ends: early stopping's answer without a checkpoint
    file. By hand: Lightning keeps the best epoch only in files (ModelCheckpoint)."""

    def __init__(self, monitor: str = "val/loss") -> None:
        self.monitor, self.best, self.state, self.epoch = monitor, float("inf"), None, -1

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or score is None or not float(score) < self.best:
            return
        self.best, self.epoch = float(score), trainer.current_epoch
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)


class quiet:
    """Lightning's info lines (GPU available, which callbacks, ...) off while a quiet fit runs."""

    NAMES = ("lightning.pytorch", "lightning.fabric", "lit_nets")

    def __init__(self, on: bool = True) -> None:
        self.on, self.levels = on, {}

    def __enter__(self) -> None:
        if self.on:  # each logger of theirs: Lightning sets levels on some of its children itself
            names = [n for n in logging.root.manager.loggerDict if n.startswith(self.NAMES)]
            for name in {*self.NAMES, *names}:
                logger = logging.getLogger(name)
                self.levels[name] = logger.level
                logger.setLevel(logging.WARNING)

    def __exit__(self, *exc: Any) -> None:
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


@contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C (SIGINT, a notebook's "interrupt") during a fit reaches the caller as ``KeyboardInterrupt``, and the
    caller's SIGINT handler is back afterwards. Lightning answers a KeyboardInterrupt with ``sys.exit(1)`` and
    ignores SIGINT from then on (``lightning/pytorch/trainer/call.py``): right for a command, but a notebook's kernel
    would lose its interrupt key."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as exit:
        if isinstance(exit.__context__, KeyboardInterrupt):  # Lightning's sys.exit inside its except clause
            raise KeyboardInterrupt("training interrupted") from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def fit(
    build: Any,
    data: Any,
    *,
    max_epochs: int,
    patience: int | None = None,
    progress: bool = True,
    seed: int = 0,
    accelerator: str = "auto",
) -> dict[str, Any]:
    """Train the model ``build()`` makes (in the seeded state, so its initial weights follow ``seed``) on ``data`` in
    this process, for at most ``max_epochs``; with ``patience``, validate each
    epoch, stop once ``val/loss`` has not improved for ``patience`` epochs and keep the best epoch's weights (without,
    no validation). torch's threads follow the CPU share and the device is a GPU when one is present, as in the
    commands; torch's random state is seeded inside and restored afterwards. The trained model (a copy on the CPU,
    in eval mode) and what was done: epochs, best epoch and its ``val/loss``."""
    import torch
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import EarlyStopping

    from lit_nets.core import threads
    from lit_nets.core.logs import quiet_warnings
    from lit_nets.train.cli import default_precision

    threads.apply(threads.choose(None, 1)[0])
    callbacks: list[Any] = [EpochBar()] if progress else []
    best = BestWeights()
    if patience is not None:
        callbacks += [EarlyStopping("val/loss", patience=patience, mode="min"), best]
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with quiet(), quiet_warnings(), interruptible(), torch.random.fork_rng(devices=devices):
        trainer = Trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=1,
            precision=default_precision(accelerator),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            limit_val_batches=None if patience is not None else 0,
            num_sanity_val_steps=0,
            callbacks=callbacks,
        )
        torch.manual_seed(seed)
        model = build()
        trainer.fit(model, datamodule=data)
    model.trainer = None  # a fitted model keeps no trainer (pickled alone)
    done = {"epochs": trainer.current_epoch, "best_epoch": best.epoch, "best_val_loss": best.best}
    return copy.deepcopy(model).cpu().eval(), done
