"""B's epochs in C's own process (``loops.py --interleave``): before each epoch of ``lit_nets fit``, one epoch of the
tuned plain loop (B, :class:`loops.PlainLoop`) on the same data, from the same initial weights, with its validation
pass. C's epoch is clocked from the end of B's to the start of the next, so the two alternate within a second: a
slow spell of a shared machine (minutes long on our VM) hits both sides of every epoch's ratio, where separate
processes a few seconds apart read 0.94 to 1.74 for the same code. Both share the process's threads, allocator and
heap; B's dropout draws from the global generator too, so C's masks (not its steps) differ from a fit alone.

``loops.py`` adds it to C's command and this folder to its ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lightning.pytorch.callbacks import Callback
from loops import PlainLoop


class PlainEpochsBeside(Callback):
    """Write ``{"plain": [B's seconds an epoch], "fit": [C's], "plain_acc": B's training accuracy in its last
    epoch}`` to ``output`` when training ends.

    Args:
        output: the JSON file.
        precision: B's autocast, as ``loops.py --precision`` (none: fp32).
    """

    def __init__(self, output: str, precision: str | None = None) -> None:
        self.output, self.precision = output, precision
        self.plain: list[float] = []
        self.fit: list[float] = []
        self.started: float | None = None
        self.loop: PlainLoop | None = None
        self.plain_acc: float | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        from lit_nets.deploy.inference import load_classifier

        start = Path(self.output).with_suffix(".start.ckpt")  # C's initial weights, through a checkpoint of them
        trainer.save_checkpoint(start)
        run = SimpleNamespace(device=str(pl_module.device), precision=self.precision)
        self.loop = PlainLoop(load_classifier(start), trainer.datamodule, run)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._close()
        _, with_validation, _, self.plain_acc = self.loop.epoch(validate=True)
        self.plain.append(with_validation)
        self.started = time.perf_counter()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()
        Path(self.output).write_text(json.dumps({"plain": self.plain, "fit": self.fit, "plain_acc": self.plain_acc}))

    def _close(self) -> None:
        if self.started is not None:
            self.fit.append(time.perf_counter() - self.started)
            self.started = None
