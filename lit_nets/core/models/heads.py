"""What the task decides in a :class:`~lit_nets.core.models.classifier.Classifier`: its loss, its validation and test
metrics (torchmetrics) and its predictions, for classes (one logit with BCE, or C with cross-entropy), several labels
(a logit each, BCE with per-label positive weights) and a value (regression: MSE, Huber or MAE on the standardised
target; RMSE, MAE and R² in the target's units)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score, MulticlassAccuracy, MulticlassF1Score
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score


def metrics(model: Any, prefix: str) -> MetricCollection:
    """The validation or test metrics of ``model``'s task, logged as ``<prefix><name>``."""
    if model.task.labels:  # measured per epoch at the thresholds chosen then (lit_nets.core.models.labels)
        return MetricCollection({}, prefix=prefix)
    if model.task.value:
        found: dict[str, Any] = {"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError(), "r2": R2Score()}
    elif model.binary_metrics:  # thresholded at the model's decision threshold (set before each epoch)
        found = {"acc": BinaryAccuracy(), "f1": BinaryF1Score()}
    else:
        c = model.num_classes
        found = {"acc": MulticlassAccuracy(c, average="micro"), "f1": MulticlassF1Score(c, average="macro")}
        if c > 5:
            found["acc_top5"] = MulticlassAccuracy(c, top_k=5, average="micro")
    # compute_groups off: with it, F1 and top-5 accuracy (same state shapes) were merged, reported alike
    return MetricCollection(found, prefix=prefix, compute_groups=False)


def loss(model: Any, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss of a batch; ``y`` holds class indices, a probability per class (MixUp / CutMix batches), or a value
    in the target's units. Logits of shape (batch, k, outputs) are an ensemble's members in training: the mean of
    their losses."""
    if logits.dim() == 3:
        logits, y = logits.flatten(0, 1), y.repeat_interleave(logits.shape[1], dim=0)
    if model.task.value:  # on the standardised target: the same learning rates suit any unit
        out, target = logits[:, 0], ((y - model.task.mean) / model.task.std).to(logits.dtype)
        kind = model.hparams.loss
        if kind == "huber":
            return F.huber_loss(out, target)
        return F.l1_loss(out, target) if kind == "mae" else F.mse_loss(out, target)
    w = model.class_weights
    if model.task.labels:  # a sigmoid per label; the data's class_weights: each label's negatives per positive
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), pos_weight=w)
    if model.binary:
        pos_weight = None if w is None else (w[1] / w[0]).reshape(1)
        y = y[:, 1] if y.dim() == 2 else y  # soft labels: the second class's share
        return F.binary_cross_entropy_with_logits(logits.squeeze(1), y.to(logits.dtype), pos_weight=pos_weight)
    if y.dim() == 2:
        y = y.to(logits.dtype)
    return F.cross_entropy(
        logits, y, weight=None if w is None else w.to(logits.dtype), label_smoothing=model.label_smoothing
    )


def values(model: Any, out: torch.Tensor) -> torch.Tensor:
    """A value model's outputs in the target's units, one per input, within the training targets' range."""
    task = model.task
    return (out.float()[:, 0] * task.std + task.mean).clamp(task.low, task.high)


def predict(model: Any, batch: Any) -> dict[str, torch.Tensor]:
    """``model``'s probabilities and predicted class per input (a value's: values); the batch is ``x``, ``(x, y)`` or
    ``(x, y, index)`` where ``y < 0`` marks unlabelled inputs and ``index`` numbers the inputs for the prediction
    writer."""
    if not isinstance(batch, (list, tuple)):
        batch = (batch,)
    if model.task.value:  # a value per input, in the target's units (unlabelled: NaN targets)
        out = {"values": values(model, model(batch[0]))}
        labelled = len(batch) > 1 and not bool(batch[1].isnan().any())
    else:
        probs = model.probabilities(model(batch[0]))
        out = {"probs": probs, "preds": model.decide(probs)}
        labelled = len(batch) > 1 and bool((batch[1] >= 0).all())
    if labelled:
        out["target"] = batch[1]
    if len(batch) > 2:
        out["index"] = batch[2]
    return out
