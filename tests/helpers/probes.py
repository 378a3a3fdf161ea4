"""Callbacks that look inside a ``python -m lit_nets fit`` run for the tests (added with
``--trainer.callbacks+=probes.X``; tests/ is on the run's PYTHONPATH)."""

from __future__ import annotations

import gc
import json

from lightning.pytorch import Callback


class GarbageCollectorState(Callback):
    """Write, as training starts, how many objects the garbage collector has frozen and how many a full
    collection would walk (``gc.get_objects()`` leaves frozen ones out) to the JSON file ``output``."""

    def __init__(self, output: str) -> None:
        self.output = output

    def on_train_start(self, trainer, pl_module) -> None:
        state = {"frozen": gc.get_freeze_count(), "walked": len(gc.get_objects())}
        with open(self.output, "w") as f:
            json.dump(state, f)
