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


class ChosenPerProcess(Callback):
    """Write, after every validation, what each process chose from it (its temperatures and thresholds) to
    ``<output>.rank<R>.json``, one line per validation: processes that chose alike saw the same outputs."""

    def __init__(self, output: str) -> None:
        self.output = output

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        chosen = {"temperature": pl_module.temperature.tolist(), "threshold": pl_module.decision_threshold.tolist()}
        with open(f"{self.output}.rank{trainer.global_rank}.json", "a") as f:
            f.write(json.dumps(chosen) + "\n")
