"""Faults at exact moments of a training run, for the kill-and-resume tests: callbacks the tests add to a
``python -m lit_nets fit`` run with ``--trainer.callbacks+=faults.KillAfterStep`` (tests/ is on its PYTHONPATH)."""

from __future__ import annotations

import os
import signal

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint


class KillAfterStep(Callback):
    """SIGKILL as the batch after global step ``step`` starts: everything of that step is done and saved."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillBeforeValidation(Callback):
    """SIGKILL as validation starts after global step ``step``: an epoch's last step, saved by a periodic
    checkpoint, but not the checkpoint of the epoch's end."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.global_step == self.step and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGKILL)


class TerminateDuringStep(Callback):
    """SIGTERM (as a cluster sends before pre-empting a job) while the step after global step ``step`` runs."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class TerminateWhileCheckpointing(ModelCheckpoint):
    """SIGTERM at the end of global step ``step``, after the run's other callbacks have had that step's end (Lightning
    runs checkpoint callbacks last): as a SIGTERM that lands while a periodic checkpoint is written. Lightning's own
    handler stopped the run there unsaved, and the process exited 0."""

    def __init__(self, step: int) -> None:
        super().__init__(save_top_k=0)  # saves nothing itself
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class TerminateDuringValidation(Callback):
    """SIGTERM while validation runs after global step ``step`` (Lightning's own handler stopped the run there
    unsaved, and the process exited 0)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.global_step == self.step and not trainer.sanity_checking and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)
