"""One LightningModule base for every classifier: loss, metrics, optimiser, logging.

Subclasses only say which plain network to build (:meth:`Classifier.build_net`). The data's shape, class
count, class names and normalisation reach the model through the CLI's argument links, so they are saved in
the checkpoint's hyper-parameters and a checkpoint alone is enough to rebuild the model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from lit_nets.core import private_api
from lit_nets.core.errors import UserError
from lit_nets.core.models import heads, injected, optimizing, stepping
from lit_nets.core.models.calibration import Calibrated
from lit_nets.core.models.fast_path import EpochTotals, PlainHookName
from lit_nets.core.models.nets import CNN, Pixels, Standardize
from lit_nets.core.models.tasks import Task

log = logging.getLogger(__name__)
Loss = Literal["ce", "bce", "mse", "huber", "mae"]
Optimizer = Literal["adam", "adamw", "sgd"]
Scheduler = Literal["none", "cosine", "step", "plateau", "onecycle"]
Calibrate = Literal["none", "temperature"]


class Classifier(PlainHookName, Calibrated, LightningModule):
    """A classifier around a plain network: the network given (``net``, a ``torch.nn.Module`` of yours named in a
    config) or the one a subclass builds (:meth:`build_net`); see docs/extend.md.

    Args:
        net: the network, a ``torch.nn.Module`` that maps a batch of inputs to logits (``class_path`` and
            ``init_args`` in a config; the data's ``num_classes`` and ``input_shape`` fill its arguments of those
            names). Default: the subclass's :meth:`build_net`.
        num_classes: number of classes (set from the data by the CLI).
        input_shape: shape of one input without the batch dim (set from the data by the CLI).
        mean: per-channel (or per-feature) mean of the inputs, on the [0, 1] scale for images
            (set from the data by the CLI; none for already-normalised inputs).
        std: per-channel (or per-feature) standard deviation of the inputs (set from the data by the CLI).
        class_names: a name per class, for predictions and plots (set from the data by the CLI).
        class_weights: a loss weight per class, for imbalanced data (set from the data by the CLI when
            ``data.class_weights: balanced``; for ``bce`` the positive class gets weight[1] / weight[0]).
        schema: how raw records become the input vector: columns, encodings, imputation (set from CSV data by
            the CLI; kept in the checkpoint so predicting on new files needs nothing else).
        value_target: the number the model predicts (regression; set from the data by the CLI): its name and
            training mean and std (:mod:`lit_nets.core.models.tasks`); none for classes.
        multi_label: several labels at once (set from the data by the CLI): a sigmoid per class name, ``loss: bce``
            with per-label positive weights (the data's ``class_weights``), a threshold per label chosen on validation.
        loss: ``ce`` (cross-entropy over C logits) or ``bce`` (binary: one logit, BCE-with-logits); for a value
            ``mse``, ``huber`` or ``mae`` (on the standardised target).
        optimizer: adam, adamw or sgd (with momentum).
        lr: learning rate.
        weight_decay: L2 penalty (decoupled for adamw).
        momentum: momentum for sgd (Nesterov).
        label_smoothing: for ``ce``, the share of each target spread evenly over all classes (0.1 is common);
            it regularises overconfident logits. The logged losses include it; accuracies do not change meaning.
        scheduler: learning-rate schedule: none, cosine (to 0 over max_epochs), step (x0.1 every third of
            max_epochs), plateau (x0.1 when val/acc stalls for 2 epochs) or onecycle (per step).
        init_from: a checkpoint (or a plain state_dict of the network) to start from, for transfer learning:
            every network tensor with the same name and shape is loaded before training, except the output
            layer; the log lists what was loaded and what was not. ``best`` / ``last``: of the newest run.
        init_head: load the output layer too when its shape matches (same classes, e.g. fine-tuning).
        calibrate: ``temperature``: after each validation, fit one temperature that divides the logits so the
            probabilities are calibrated on the validation split (Guo et al. 2017; kept in the checkpoint, used by
            predict, export and serve; ``val/`` and ``test/ece`` and ``nll`` then come with ``_uncalibrated``
            twins). ``none``: the network's own probabilities.
        threshold: for two classes, the second class's probability from which it is predicted: a number, or
            ``f1`` to choose the one with the best F1 on the validation split (kept in the checkpoint).
        compile: ``torch.compile`` the network for training (in place: checkpoints keep their names). For long
            GPU runs; it takes tens of seconds to compile, and on our 2-core CPU it trained the seed CNN at half
            the eager speed, so it is off by default.
        step_batch_size: inputs per optimiser step when a training batch holds more: each batch of
            ``data.batch_size`` is cut into steps of this many, Lightning's cost per step paid once per batch
            (:mod:`lit_nets.core.models.stepping`: manual optimisation). Default: one step per batch.
    """

    def __init__(
        self,
        net: injected.Network | None = None,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        class_weights: Sequence[float] | None = None,
        schema: dict[str, Any] | None = None,
        value_target: dict[str, Any] | None = None,
        multi_label: bool = False,
        loss: Loss = "ce",
        optimizer: Optimizer = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        label_smoothing: float = 0.0,
        scheduler: Scheduler = "none",
        init_from: str | None = None,
        init_head: bool = False,
        calibrate: Calibrate = "none",
        threshold: float | Literal["f1"] = 0.5,
        compile: bool = False,
        step_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])  # a module is no hyper-parameter: its class and arguments are
        if net is not None:
            self.hparams["net"] = injected.spec_of(net)
        self._given_net = net
        self.task = Task.of(value_target, multi_label)
        self.task.check_loss(loss)
        self.automatic_optimization = stepping.automatic(step_batch_size)
        if self.task.value and (num_classes != 1 or calibrate != "none" or threshold != 0.5 or class_weights):
            raise UserError(
                "a value (regression) has one output, no classes to calibrate, threshold or weigh: leave "
                "model.calibrate, model.threshold and data.class_weights out"
            )
        if num_classes < 2 and not self.task.value:
            raise UserError(f"a classifier needs at least 2 classes, the data has {num_classes}")
        if loss == "bce" and num_classes != 2 and not multi_label:
            raise UserError(
                f"loss 'bce' is for binary tasks (2 classes), but the data has {num_classes} classes; use loss: ce"
            )
        if lr <= 0:
            raise UserError(f"model.lr must be positive, got {lr}")
        if not 0.0 <= label_smoothing < 1.0:
            raise UserError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        if label_smoothing and loss == "bce":
            raise UserError("model.label_smoothing is for loss 'ce'; the binary 'bce' head has no smoothing here")
        if threshold != 0.5 and self.task.labels:
            raise UserError("several labels get a threshold each, chosen on validation: leave model.threshold out")
        if threshold != 0.5 and num_classes != 2:
            raise UserError(f"model.threshold is for two classes, the data has {num_classes}; leave it at 0.5")
        if threshold != "f1" and not 0.0 < float(threshold) < 1.0:
            raise UserError(f"model.threshold must be between 0 and 1, or f1 (chosen on validation), got {threshold}")
        self.num_classes = num_classes
        self.input_shape = tuple(int(s) for s in input_shape)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise UserError(f"{len(self.class_names)} class names given for {num_classes} classes")
        self.binary = loss == "bce" and not self.task.labels
        self.binary_metrics = self.binary or threshold != 0.5  # a second class's probability against a threshold
        outputs = 1 if self.binary or self.task.value else num_classes  # several labels: a logit each
        self.label_smoothing = label_smoothing
        self.schema = schema
        if class_weights is not None and len(class_weights) != num_classes:
            raise UserError(f"{len(class_weights)} class weights given for {num_classes} classes")
        weights = torch.tensor(list(class_weights), dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)  # rebuilt from hparams on load
        self.normalize: nn.Module = Standardize(mean, std) if mean is not None else Pixels()
        self.net = self.build_net(num_outputs=outputs)
        self._given_net = None
        if not type(self.net).__module__.startswith("lit_nets."):  # a network of the user's: checked once here
            injected.check_outputs(self.net, self.input_shape, outputs, type(self.net).__name__)
        self.example_input_array = torch.zeros(2, *self.input_shape)
        self.setup_calibration()
        # training logs the epoch's loss and accuracy only, from running sums on the device (fast_path)
        self.train_totals = EpochTotals()
        self.train_loss = MeanMetric(nan_strategy="disable")
        accuracy = {} if self.task.kind != "classes" else {"acc": MeanMetric()}  # correct / seen, weighted
        self.train_metrics = MetricCollection(accuracy, prefix="train/")
        self.val_metrics = self.make_metrics("val/")
        self.test_metrics = self.make_metrics("test/")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    @classmethod
    def data_defaults(cls, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """What this model, built with ``args``, needs from the data where a config leaves it unset (a data argument's
        value by name) and where that comes from, in words; asked before the data module is built. Nothing here; a
        backbone's weights say their image size, crop and normalisation."""
        return {}, ""

    def build_net(self, num_outputs: int) -> nn.Module:
        """The plain network: the one given (``net``), else a subclass builds it here (``num_outputs`` logits for
        inputs of ``self.input_shape``)."""
        if isinstance(self._given_net, nn.Module):
            return self._given_net
        if self._given_net is not None and not isinstance(self._given_net, dict):
            raise UserError(f"model.net: {type(self._given_net).__name__} is not a torch.nn.Module")
        if self._given_net is not None:  # a recorded class path and arguments (a checkpoint, Python)
            return injected.build(
                injected.spec_of(self._given_net), {"num_classes": self.num_classes, "input_shape": self.input_shape}
            )
        raise UserError(
            "lit_nets.models.Classifier needs a network: give model.init_args.net (the class_path and init_args of "
            "a torch.nn.Module), or use a subclass that builds one in build_net (docs/extend.md)"
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from lit_nets import __version__

        checkpoint["lit_nets_version"] = __version__  # named when a later version cannot read the checkpoint

    def configure_model(self) -> None:
        if self.hparams.get("compile") and not getattr(self, "_compiled", False):
            self.net.compile()  # nn.Module.compile: the module stays itself, so do its state_dict keys
            self._compiled = True

    def setup(self, stage: str) -> None:
        # Before training only: a resumed run then restores its own weights over these, and loading a
        # finished model from its checkpoint never needs the init_from file again.
        if stage == "fit" and self.hparams.init_from and not getattr(self, "_initialised", False):
            self.load_matching(self.hparams.init_from)
            self._initialised = True

    def load_matching(self, path: str) -> tuple[list[str], dict[str, str]]:
        """Copy the network tensors of ``path`` whose name and shape match (transfer learning): see
        :func:`lit_nets.core.models.transfer.load_matching`."""
        from lit_nets.core.models.transfer import load_matching

        return load_matching(self, path)

    def make_metrics(self, prefix: str) -> MetricCollection:
        """The validation and test metrics (torchmetrics, fed each batch's probabilities, or a value's outputs in the
        target's units, and the targets; logged as ``<prefix><name>`` each epoch; :func:`heads.metrics`): a subclass
        adds its own here (docs/extend.md)."""
        return heads.metrics(self, prefix)

    # -- the forward pass -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for raw inputs (uint8 pixels or [0, 1] floats for images; raw values for features), before the
        temperature: the deployed module (:class:`lit_nets.core.models.deployable.Deployable`) divides them by it,
        and :meth:`probabilities` does."""
        return self.net(self.normalize(x))

    def compute_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of a batch (:func:`heads.loss`): ``y`` holds class indices, a probability per class (MixUp /
        CutMix batches) or a value; an ensemble's members (batch, k, outputs) in training: the mean of their losses."""
        return heads.loss(self, logits, y)

    def _step(self, batch: Any, stage: str, metrics: MetricCollection, mean_loss: MeanMetric) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.compute_loss(logits, y)
        mean_loss.update(loss.detach(), weight=len(y))
        if self.task.value:
            values = heads.values(self, logits.detach())
            metrics.update(values, y)
            return values
        probs = self.probabilities(logits.detach())  # metrics and figures need no graph
        if not self.task.labels:  # several labels: measured per epoch, at thresholds chosen then (labels.py)
            metrics.update(probs[:, 1] if self.binary_metrics else probs, y)
        self.keep_outputs(stage, logits, y)  # for the temperature, threshold and calibration error
        return probs

    # -- the loops ----------------------------------------------------------------------------------------
    # A step only updates metric states on the device (no host sync); each epoch logs their values once and
    # resets them (torchmetrics syncs the states across processes first). Lightning's usual pattern, logging the
    # Metric objects from every step, cost about 1 ms per metric per step here (each self.log call moves its
    # result collection to the device): more than a whole training step of a small MLP.
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if not self.automatic_optimization:  # model.step_batch_size: several optimiser steps on the batch
            return stepping.fused_training_step(self, batch, batch_idx, self.training_loss)
        return self.training_loss(batch, batch_idx)

    def training_loss(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """A training step's loss: the epoch's loss and accuracy counted, ``train/loss_step`` logged."""
        x, y = batch
        logits = self(x)
        loss = self.compute_loss(logits, y)
        with torch.no_grad():  # predicted labels are all that accuracy needs: no softmax, no graph
            logits = logits.mean(dim=1) if logits.dim() == 3 else logits  # an ensemble's members: mean logit votes
            preds = (logits.squeeze(1) > 0).long() if self.binary else logits.argmax(dim=1)
            preds = preds if self.task.kind == "classes" else None  # a value's, labels' training: the loss only
            self.train_totals.add(loss, preds, y.argmax(dim=1) if y.dim() == 2 else y)  # mixed: the larger share
        # only on the steps the logger writes (log_every_n_steps), as Lightning's LearningRateMonitor decides
        if private_api.logs_this_step(self.trainer):
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val", self.val_metrics, self.val_loss)  # probabilities, for the figures

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test", self.test_metrics, self.test_loss)  # probabilities, for the figures

    def on_train_epoch_end(self) -> None:
        totals = self.train_totals.take()
        if totals is not None:
            loss, acc, seen = totals
            self.train_loss.update(loss, weight=seen)
            if "acc" in self.train_metrics:
                self.train_metrics["acc"].update(acc, weight=seen)
        self._log_epoch("train/", self.train_metrics, self.train_loss, prog_bar=("train/loss",))
        if not self.automatic_optimization:  # Lightning steps no schedule under manual optimisation
            stepping.step_schedules(self, "epoch", self.current_epoch)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val/", self.val_metrics, self.val_loss, prog_bar=("val/loss", "val/acc"))
        self.log_calibration("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test/", self.test_metrics, self.test_loss)
        self.log_calibration("test")

    def _log_epoch(self, prefix: str, metrics: MetricCollection, loss: MeanMetric, prog_bar: tuple = ()) -> None:
        if loss.update_count == 0:  # no batch this epoch (e.g. validation disabled)
            return
        values = {f"{prefix}loss": loss.compute(), **metrics.compute()}
        for name, value in values.items():
            self.log(name, value, prog_bar=name in prog_bar, sync_dist=True)  # already synced: a no-op average
        metrics.reset()
        loss.reset()

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """Probabilities and predicted class (a value's: values) per input (:func:`heads.predict`)."""
        return heads.predict(self, batch)

    # -- optimisation ---------------------------------------------------------------------------------------
    def build_optimizer(self, fused: bool = True) -> torch.optim.Optimizer:
        """The optimiser the hyper-parameters name, over :meth:`param_groups`
        (:func:`lit_nets.core.models.optimizing.build_optimizer`: torch's fused kernels where it has them)."""
        return optimizing.build_optimizer(self, fused)

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups: one, of the trainable parameters (frozen layers stay out); a
        subclass may give groups their own ``lr``."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self) -> Any:
        return optimizing.configure_optimizers(self)


class CNNClassifier(Classifier):
    """A CNN classifier for images; the defaults are the seed architecture.

    ``conv3x3(32) → pool → conv3x3(64) → pool → fc(128) → classes``; the input shape comes from the data.

    Args:
        conv_channels: output channels of each conv block (one block per entry); called ``channels`` before 0.2.
        hidden: width of the fully connected hidden layer (0 for none).
        kernel_size: conv kernel size (odd).
        batch_norm: BatchNorm after each conv.
        dropout: dropout probability before each fully connected layer.
        activation: relu, leaky_relu, elu, gelu or silu.
        init: weight initialisation: default (PyTorch's), kaiming or xavier.
        freeze: conv blocks (1-based) whose weights and BatchNorm statistics stay fixed, e.g. [1].
        channels_last: run convolutions in channels-last memory layout (faster on most CPUs and GPUs).
        convs_per_block: convolutions before each pooling, 1 or 2 (VGG's pairs: configs/mnist_best.yaml).
        **kwargs: the :class:`Classifier` arguments (loss, optimizer, lr, ...).
    """

    def __init__(
        self,
        conv_channels: list[int] = [32, 64],  # noqa: B006 (jsonargparse shows list defaults; never mutated)
        hidden: int = 128,
        kernel_size: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.0,
        activation: Literal["relu", "leaky_relu", "elu", "gelu", "silu"] = "relu",
        init: Literal["default", "kaiming", "xavier"] = "default",
        freeze: list[int] = [],  # noqa: B006
        channels_last: bool = True,
        convs_per_block: int = 1,
        **kwargs: Any,
    ) -> None:
        self._cnn_args = dict(
            channels=list(conv_channels),
            hidden=hidden,
            kernel_size=kernel_size,
            batch_norm=batch_norm,
            dropout=dropout,
            activation=activation,
            init=init,
            freeze=list(freeze),
            convs_per_block=convs_per_block,
        )
        self._channels_last = channels_last
        super().__init__(**kwargs)

    def build_net(self, num_outputs: int) -> nn.Module:
        if len(self.input_shape) != 3:
            raise UserError(
                f"CNNClassifier needs images (channels, height, width), the data gives shape {self.input_shape}"
            )
        c, h, w = self.input_shape
        try:
            net = CNN(in_channels=c, num_outputs=num_outputs, image_size=(h, w), **self._cnn_args)
        except ValueError as e:
            raise UserError(f"model: {e}") from e
        return net.to(memory_format=torch.channels_last) if self._channels_last else net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return super().forward(x)


class MLPClassifier(Classifier):
    """A multilayer perceptron classifier for CSV features (or flattened images), built by
    :func:`lit_nets.core.models.table_nets.mlp_for`: a plain MLP; with embedded categorical columns
    (``data.categorical_encoding``) a :class:`~lit_nets.core.models.nets.TabularMLP`; with ``numeric_embedding:
    periodic`` or ``ensemble`` above 1 (tables only) the recipe's
    :class:`~lit_nets.core.models.ensemble.TabularEnsemble`.

    Args:
        hidden: width of each hidden layer (one per entry; [] for logistic regression); one width for an ensemble.
        dropout: dropout probability after each hidden layer.
        activation: relu, leaky_relu, elu, gelu or silu.
        batch_norm: BatchNorm after each hidden layer (not with an ensemble).
        init: weight initialisation: default (PyTorch's), kaiming or xavier (an ensemble keeps TabM's own).
        numeric_embedding: ``none`` or ``periodic`` (each number through trainable sine and cosine frequencies).
        numeric_embedding_size: the size of each number's periodic embedding.
        frequency_scale: the spread of the initial frequencies (larger: finer detail, sooner overfitting).
        ensemble: TabM's ``k``: members sharing the weights, trained together, probabilities averaged (1: one net).
        **kwargs: the :class:`Classifier` arguments (loss, optimizer, lr, ...).
    """

    def __init__(
        self,
        hidden: list[int] = [64, 32],  # noqa: B006 (jsonargparse shows list defaults; never mutated)
        dropout: float = 0.0,
        activation: Literal["relu", "leaky_relu", "elu", "gelu", "silu"] = "relu",
        batch_norm: bool = False,
        init: Literal["default", "kaiming", "xavier"] = "default",
        numeric_embedding: Literal["none", "periodic"] = "none",
        numeric_embedding_size: int = 16,
        frequency_scale: float = 0.1,
        ensemble: int = 1,
        **kwargs: Any,
    ) -> None:
        self._mlp_args = dict(
            hidden=list(hidden), dropout=dropout, activation=activation, batch_norm=batch_norm, init=init
        )
        self._ensemble_args = dict(
            ensemble=ensemble,
            numeric_embedding=numeric_embedding,
            numeric_embedding_size=numeric_embedding_size,
            frequency_scale=frequency_scale,
        )
        super().__init__(**kwargs)

    def build_net(self, num_outputs: int) -> nn.Module:
        from lit_nets.core.models.table_nets import mlp_for

        net = mlp_for(self.schema, self.input_shape, num_outputs, self._mlp_args, self._ensemble_args)
        if hasattr(net, "averages"):  # how an ensemble's members are averaged (classes: their mean probability)
            net.averages = {"value": "value", "labels": "sigmoid"}.get(self.task.kind, "")
        return net
