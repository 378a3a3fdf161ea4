"""What a model answers, as a value (not a class per task): a class (``classes``, the default), a number
(``value``: regression), or which of several labels apply (``labels``: multi-label, one yes/no per class name; the
data value ``multi_label``). The data says it (a CSV module's ``data.task``; the data value ``value_target``, the
target's name, mean and std) and the CLI links it into the model with the other data values, so the checkpoint
records it; the task decides the head's outputs, the loss, the metrics, the
monitored metric, and what predict, export and serve answer.

A value's target is standardised for training with the training split's mean and standard deviation (kept in the
task); the deployed module multiplies its output back (``* std + mean``), so predict, export and serve give
values in the target's own units, kept within the lowest and highest training target: an MLP extrapolates without
bound from an input far outside the training data (diamonds holds a stone measured 58.9 mm wide, a typing error, that
an MLP priced at $116,700), where gradient boosting stays within the targets it saw.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from lit_nets.core.errors import UserError

Kind = Literal["classes", "value", "labels"]
VALUE_LOSSES = ("mse", "huber", "mae")
CLASS_METRICS = ("val/acc", "val/f1", "val/acc_top5")  # monitored for classes: none of them exists for a value


@dataclass(frozen=True)
class Task:
    """A model's task: ``kind``; for a value, the target's ``name`` and its training split's ``mean`` and ``std``."""

    kind: Kind = "classes"
    name: str = ""
    mean: float = 0.0
    std: float = 1.0
    low: float = -math.inf
    high: float = math.inf

    @classmethod
    def of(cls, value_target: Task | dict[str, Any] | None, multi_label: bool = False) -> Task:
        """The task of a model given this ``value_target`` (the name, mean and std of a value to predict) or
        ``multi_label``; neither: classes, as every checkpoint from before tasks."""
        if multi_label and value_target is not None:
            raise UserError("a target is a value or several labels, not both: set data.task to one of them")
        if multi_label:
            return cls(kind="labels")
        if value_target is None:
            return cls()
        if isinstance(value_target, Task):
            return value_target
        given = {"kind": "value", **dict(value_target)}
        try:
            task = cls(**given)
        except TypeError as e:
            raise UserError(f"model.task {given!r} is not a task: {e}") from None
        if task.kind not in ("classes", "value"):
            raise UserError(f"model.task kind {task.kind!r}: the tasks are classes and value")
        if task.kind == "value" and not (math.isfinite(task.std) and task.std > 0 and math.isfinite(task.mean)):
            raise UserError(f"model.task: the target's std must be a positive number, got {task.std!r}")
        return task

    @property
    def value(self) -> bool:
        return self.kind == "value"

    @property
    def labels(self) -> bool:
        return self.kind == "labels"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def monitor(self) -> tuple[str, str]:
        """The metric a run of this task keeps its best checkpoint by, and whether higher is better."""
        return {"value": ("val/rmse", "min"), "labels": ("val/map", "max")}.get(self.kind, ("val/acc", "max"))

    def check_loss(self, loss: str) -> None:
        if self.labels and loss != "bce":
            raise UserError(f"model.loss {loss!r}: several labels take one sigmoid each; use loss: bce")
        if self.value and loss not in VALUE_LOSSES:
            raise UserError(
                f"model.loss {loss!r} is for classes; the data's target {self.name!r} is a value: use "
                f"{', '.join(VALUE_LOSSES)} (configs/regression.yaml)"
            )
        if not self.value and loss in VALUE_LOSSES:  # classes or labels
            raise UserError(
                f"model.loss {loss!r} is for a value (regression); the data's target is classes: use ce or bce, or "
                "data.task value for a numeric target"
            )


def kind_in_config(data_args: Any) -> Kind:
    """The task a config's data arguments (``data.init_args``, before the data is built) ask for: ``task: value``;
    several target columns, or an image manifest (several labels); else classes. What ``fit`` points its monitored
    metric at and ``cv`` folds by."""
    if data_args is None or not hasattr(data_args, "get"):
        return "classes"
    if data_args.get("task") == "value":
        return "value"
    if isinstance(data_args.get("target"), list) or "manifest" in data_args:
        return "labels"
    return "classes"


def follow_task(config: Any, task: Task) -> str:
    """Point a run's checkpoint and early stopping at a metric this task logs, where a config names one it does not
    (the CLI's default ``val/acc`` for a value); what was changed, in words (empty when nothing)."""
    changed = []
    metric, mode = task.monitor()
    for name in ("checkpoint", "early_stopping"):
        section = config.get(name)
        args = section.get("init_args", section) if section is not None else None
        if args is None or args.get("monitor") is None:
            continue
        if task.kind != "classes" and args.get("monitor") in CLASS_METRICS:
            args["monitor"], args["mode"] = metric, mode
            changed.append(name)
    return f"{' and '.join(changed)} on {metric} ({mode}): the metric of a {task.kind} task" if changed else ""
