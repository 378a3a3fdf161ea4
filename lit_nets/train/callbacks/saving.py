"""Checkpoints and the run's safety: last.ckpt at every epoch, periodic checkpoints, the lock that marks a run as
being trained, and a save on SIGTERM / Ctrl-C so that the run can resume."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import (
    Callback,
    ModelCheckpoint,
)

from lit_nets.core import private_api
from lit_nets.core.checkpoint_files import RunLock
from lit_nets.core.errors import UserError
from lit_nets.train.callbacks.monitoring import say

log = logging.getLogger(__name__)


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
    cannot be caught: the last regular checkpoint is what survives them. ``signum`` SIGINT: Ctrl-C is answered the
    same way (the Python door's fit, where a notebook's interrupt must leave a resumable run).
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        self.signum = signum
        self.saved: Path | None = None
        self.pending = False  # a SIGTERM came, not yet answered
        self._previous: Any = None
        self._launcher: Any = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            return
        self._launcher = trainer.strategy.launcher
        self._previous = signal.signal(self.signum, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        if not self.pending:
            name = signal.Signals(signum).name
            log.info("Received %s: saving when this training step ends, then stopping", name)
            if self._launcher is not None:  # processes this one started (DDP by script) get it too, as Lightning does
                self._launcher.kill(signum)
        self.pending = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        stop = self.pending or trainer.received_sigterm  # Lightning's flag: a SIGTERM before training started
        if trainer.world_size > 1:  # every process saves (saving is collective), when any was told to stop
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        checkpoint = trainer.checkpoint_callback  # any of them: they all write to the run's checkpoints/ folder
        saved = any(isinstance(c, SaveOnInterrupt) and c.saved is not None for c in trainer.callbacks)  # SIGINT's too
        if not stop or saved or checkpoint is None or checkpoint.dirpath is None:
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
            signal.signal(self.signum, self._previous)
            self._previous = None
