"""What lit_nets needs of a data module: the contract a ``LightningDataModule`` of the user's meets to train, test,
predict, cross-validate, export and serve (docs/extend.md, "Your own data").

Required, as attributes or properties readable once the module is built (reading them may load the data):

- ``num_classes`` (int), ``input_shape`` (one input's shape, without the batch), ``class_names`` (a name per
  class);
- the loaders Lightning asks for: ``train_dataloader`` and ``val_dataloader`` for ``fit``, ``test_dataloader`` for
  ``test`` (and the test after fit), ``predict_dataloader`` for ``predict``; their batches are ``(x, y)``
  (``predict``: ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, index)``).

Optional, None when absent: ``mean`` and ``std`` (the model normalises with them; raw inputs otherwise),
``class_weights``, ``schema`` (a table's encoding), ``value_target`` (a number to predict, regression: ``{"name":
..., "mean": ..., "std": ..., "low": ..., "high": ...}`` with ``num_classes`` 1 and ``class_names`` ``[name]``;
:mod:`lit_nets.core.models.tasks`), ``multi_label`` (True: several labels at once, a 0/1 per class name in each
``y`` row, ``class_weights`` each label's negatives per positive), ``predict_ids`` (names of the predicted rows),
and the init arguments ``fold`` and ``folds`` (``cv``: validate on fold ``fold`` of ``folds``). lit_nets' own data
modules (:class:`lit_nets.core.data.base.TensorDataModule`) meet all of it.
"""

from __future__ import annotations

from typing import Any

import torch

from lit_nets.core.errors import UserError

REQUIRED = ("num_classes", "input_shape", "class_names")
OPTIONAL = ("mean", "std", "class_weights", "schema", "value_target", "multi_label")
# what the data gives a model
DATA_ARGS = (*REQUIRED[:2], "mean", "std", REQUIRED[2], "class_weights", "schema", "value_target", "multi_label")
GUIDE = "docs/extend.md#your-own-data"


def name_of(dm: Any) -> str:
    """The data module's class path, as a message names it."""
    cls = type(dm)
    return f"{cls.__module__}.{cls.__qualname__}"


def value(dm: Any, name: str) -> Any:
    """The data module's ``name`` (one of :data:`DATA_ARGS`), checked: a required one missing, or of the wrong kind,
    is one line naming it; an optional one missing is None."""
    if not hasattr(dm, name):
        if name in OPTIONAL:
            return False if name == "multi_label" else None
        raise UserError(
            f"data: {name_of(dm)} has no {name}; a data module gives lit_nets {', '.join(REQUIRED)} ({GUIDE})"
        )
    found = getattr(dm, name)
    one_value = name == "num_classes" and found == 1 and getattr(dm, "value_target", None) is not None
    if name == "num_classes" and not one_value and (not isinstance(found, int) or isinstance(found, bool) or found < 2):
        raise UserError(f"data: {name_of(dm)}.num_classes is {found!r}: give the number of classes, 2 or more")
    if name == "input_shape":
        if isinstance(found, torch.Size | tuple):
            found = list(found)
        if not isinstance(found, list) or not found or not all(isinstance(d, int) and d > 0 for d in found):
            raise UserError(
                f"data: {name_of(dm)}.input_shape is {found!r}: give one input's shape without the batch, e.g. "
                "[3, 32, 32] or [13]"
            )
    if name == "class_names":
        found = list(found)
        count = value(dm, "num_classes")
        if len(found) != count or not all(isinstance(n, str) for n in found):
            raise UserError(
                f"data: {name_of(dm)}.class_names is {found!r}: give num_classes ({count}) names, one per class"
            )
    return found


def model_values(dm: Any) -> dict[str, Any]:
    """What the data gives a model (:data:`DATA_ARGS`), checked: ``Classifier(**model_values(dm), ...)``."""
    return {name: value(dm, name) for name in DATA_ARGS}


def has_loader(dm: Any, stage: str) -> bool:
    """Whether the data module gives a loader for ``stage`` (train, val, test, predict)."""
    from lightning.pytorch.utilities.model_helpers import is_overridden

    return is_overridden(f"{stage}_dataloader", dm)


def first_inputs_of(dm: Any, size: int) -> torch.Tensor:
    """Up to ``size`` inputs of the test split (else the validation split), as the model takes them."""
    splits = getattr(dm, "splits", None)
    if splits is not None and (splits.test is not None or splits.val is not None):
        from lit_nets.core.data.splits import first_inputs

        return first_inputs(splits.test if splits.test is not None else splits.val, size)
    stage = "test" if has_loader(dm, "test") else "val"
    found, batches = 0, []
    for batch in getattr(dm, f"{stage}_dataloader")():
        x = batch[0] if isinstance(batch, list | tuple) else batch
        batches.append(x)
        found += len(x)
        if found >= size:
            break
    if not batches:
        raise UserError(f"data: {name_of(dm)}'s {stage}_dataloader gives no batch")
    return torch.cat(batches)[:size]
