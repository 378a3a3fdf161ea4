"""Probabilities that mean what they say: temperature scaling (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017), a binary decision threshold chosen on validation, and the measures of both (expected
calibration error, negative log-likelihood).

A classifier collects its raw validation and test logits (torchmetrics' ``CatMetric``: gathered across DDP
processes). After each validation epoch it fits one temperature ``T`` to them (``model.calibrate: temperature``)
and, for a binary task, the threshold on the second class's probability that maximises F1 (``model.threshold:
f1``); both are buffers, so the checkpoint saved after that epoch holds the ones fitted on its own logits, and
predict, export (the deployed module divides its logits by ``T``) and serve use them.

The fit is scikit-learn's ``CalibratedClassifierCV(method="temperature")`` (1.8) in torch: one parameter, log T,
minimising the NLL with L-BFGS; written here because it runs inside the Lightning loop on the device's tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import CatMetric

from lit_nets.core.models.deployable import probabilities
from lit_nets.core.models.measures import (  # noqa: F401 (N_BINS: the figures' bins, read from here)
    N_BINS,
    expected_calibration_error,
    f1_threshold,
    fit_temperature,
    nll,
)

# buffers a checkpoint saved before calibration existed lacks: they load as "not calibrated, threshold 0.5"
DEFAULTS = {"temperature": 1.0, "decision_threshold": 0.5}


class Calibrated:
    """What a :class:`~lit_nets.core.models.classifier.Classifier` adds for calibration: the buffers, calibrated
    probabilities, the decision, and the validation/test measures. A mixin: it needs ``num_classes``, ``hparams``
    (``calibrate``, ``threshold``), ``log`` and ``register_buffer`` from its class."""

    def setup_calibration(self: Any) -> None:
        threshold = self.hparams.threshold
        given = 0.5 if threshold == "f1" else float(threshold)
        shape = (self.num_classes,) if self.task.labels else ()  # several labels: one of each per label
        self.register_buffer("temperature", torch.full(shape, DEFAULTS["temperature"]))
        self.register_buffer("decision_threshold", torch.full(shape, given))
        self._register_load_state_dict_pre_hook(_fill_missing)
        self.outputs = torch.nn.ModuleDict(
            {f"{stage}_{part}": CatMetric(nan_strategy="disable") for stage in ("val", "test") for part in "zy"}
        )

    def on_validation_epoch_start(self: Any) -> None:
        self._set_threshold(self.val_metrics)

    def on_test_epoch_start(self: Any) -> None:
        self._set_threshold(self.test_metrics)

    def _set_threshold(self: Any, metrics: Any) -> None:
        for metric in metrics.values():  # binary metrics decide at the threshold the model predicts with
            if self.binary_metrics and isinstance(getattr(metric, "threshold", None), float):
                metric.threshold = float(self.decision_threshold)

    def probabilities(self: Any, logits: torch.Tensor) -> torch.Tensor:
        """A probability per class, (batch, num_classes), calibrated by the fitted temperature (1 when none); for
        several labels, each label's (a sigmoid each)."""
        if self.task.labels:
            return torch.sigmoid(logits.float() / self.temperature)
        return probabilities(logits.float() / self.temperature)

    def decide(self: Any, probs: torch.Tensor) -> torch.Tensor:
        """The predicted class of each row of probabilities: for two classes, the second where its probability
        reaches the decision threshold (0.5 unless one was chosen); else the likeliest. Several labels: each label
        whose probability reaches its threshold, (batch, labels) of 0/1."""
        if self.task.labels:
            return (probs >= self.decision_threshold).long()
        if probs.shape[1] == 2:
            return (probs[:, 1] >= self.decision_threshold).long()
        return probs.argmax(dim=1)

    def keep_outputs(self: Any, stage: str, logits: torch.Tensor, targets: torch.Tensor) -> None:
        if targets.dim() == 1 or self.task.labels:  # hard labels (a mixed batch has no single class to score)
            self.outputs[f"{stage}_z"].update(logits.detach().float().flatten(1))
            self.outputs[f"{stage}_y"].update(targets.detach().float())

    def log_calibration(self: Any, stage: str) -> None:
        """After a validation or test epoch: fit the temperature and threshold (validation, when asked), then log
        ``<stage>/ece`` and ``<stage>/nll`` of the probabilities the model gives, and, when calibrated, the raw
        ones' as ``<stage>/ece_uncalibrated`` and ``<stage>/nll_uncalibrated``."""
        kept_z, kept_y = self.outputs[f"{stage}_z"], self.outputs[f"{stage}_y"]
        if kept_z.update_count == 0:
            return
        z, y = kept_z.compute(), kept_y.compute().long()  # every process's (a no-op without DDP)
        kept_z.reset()
        kept_y.reset()
        if self.task.labels:
            return self._log_labels(stage, z, y)
        if stage == "val" and not self.trainer.sanity_checking:
            if self.hparams.calibrate == "temperature":
                self.temperature.fill_(fit_temperature(z, y))
            if self.hparams.threshold == "f1" and self.num_classes == 2:
                self.decision_threshold.fill_(f1_threshold(self.probabilities(z)[:, 1], y))
        values = {"ece": expected_calibration_error(self.probabilities(z), y), "nll": nll(z / self.temperature, y)}
        if self.hparams.calibrate != "none":
            values["ece_uncalibrated"] = expected_calibration_error(probabilities(z), y)
            values["nll_uncalibrated"] = nll(z, y)
            values["temperature"] = self.temperature.clone()
        if self.hparams.threshold == "f1":
            values["threshold"] = self.decision_threshold.clone()
        self._log_values(stage, values)

    def _log_values(self: Any, stage: str, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            self.log(f"{stage}/{name}", value.float(), sync_dist=True)  # the same on every process: a no-op mean

    def _log_labels(self: Any, stage: str, z: torch.Tensor, y: torch.Tensor) -> None:
        """Several labels: per-label temperatures (when asked) and thresholds (always) fitted on validation, then the
        metrics of :func:`lit_nets.core.models.labels.measures`."""
        from lit_nets.core.models import labels

        if stage == "val" and not self.trainer.sanity_checking:
            if self.hparams.calibrate == "temperature":
                self.temperature.copy_(labels.temperatures(z, y))
            self.decision_threshold.copy_(labels.thresholds(self.probabilities(z), y))
        probs = self.probabilities(z)
        values = labels.measures(probs, y, self.decision_threshold, list(self.class_names))
        values["nll"] = labels.nll(z / self.temperature, y)
        if self.hparams.calibrate != "none":
            values["ece_uncalibrated"] = labels.measures(torch.sigmoid(z), y, self.decision_threshold, [])["ece"]
            values["nll_uncalibrated"] = labels.nll(z, y)
        self._log_values(stage, values)


def _fill_missing(state: dict[str, Any], prefix: str, *args: Any) -> None:
    """A checkpoint from before calibration: its model is uncalibrated, its threshold 0.5."""
    for name, value in DEFAULTS.items():
        state.setdefault(prefix + name, torch.tensor(value))
