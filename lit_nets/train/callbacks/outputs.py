"""What a run writes besides checkpoints: the predictions table and the figures (curves, confusion matrix,
mistakes, filters)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    Callback,
)

from lit_nets.train.callbacks.monitoring import say

log = logging.getLogger(__name__)


def prediction_table(
    probs: torch.Tensor,
    preds: torch.Tensor,
    names: list[str],
    ids: list[Any],
    targets: torch.Tensor | None = None,
    k: int = 5,
    max_class_columns: int = 20,
) -> dict[str, Any]:
    """The columns of a predictions file (see :class:`PredictionWriter`), shared with ``cv``'s out-of-fold file."""
    table: dict[str, Any] = {
        "id": list(ids),
        "label": [names[i] for i in preds.tolist()],
        "probability": probs.gather(1, preds[:, None]).squeeze(1).numpy().round(6),
    }
    if targets is not None:
        table["true_label"] = [names[i] for i in targets.tolist()]
    if len(names) <= max_class_columns:
        for c, name in enumerate(names):
            table[f"prob_{name}"] = probs[:, c].numpy().round(6)
    if len(names) > 2:
        from lit_nets.core.models.deployable import top_k

        table["top_k"] = [" ".join(f"{name}:{p:.4f}" for name, p in row) for row in top_k(probs, names, k)]
    return table


def value_table(values: torch.Tensor, ids: list[Any], targets: torch.Tensor | None = None) -> dict[str, Any]:
    """The columns of a value model's predictions file: ``id``, ``value`` and, when the inputs had them,
    ``true_value``."""
    table: dict[str, Any] = {"id": list(ids), "value": values.double().numpy().round(6)}
    if targets is not None:
        table["true_value"] = targets.double().numpy()
    return table


def label_table(
    probs: torch.Tensor, preds: torch.Tensor, names: list[str], ids: list[Any], targets: torch.Tensor | None = None
) -> dict[str, Any]:
    """The columns of a multi-label model's predictions file: ``id``, ``labels`` (the names decided, space-separated,
    the manifest's format), ``prob_<label>`` for each label and, when the inputs had them, ``true_labels``."""
    joined = lambda rows: [" ".join(n for n, on in zip(names, row, strict=True) if on) for row in rows.tolist()]  # noqa: E731
    table: dict[str, Any] = {"id": list(ids), "labels": joined(preds)}
    for j, name in enumerate(names):
        table[f"prob_{name}"] = probs[:, j].numpy().round(6)
    if targets is not None:
        table["true_labels"] = joined(targets.long())
    return table


class PredictionWriter(BasePredictionWriter):
    """Write ``predict`` results to a CSV file: one row per input, appended every 65,536 rows (a million rows never
    sit in memory as one table; ``predict`` keeps no predictions either).

    Columns: ``id`` (the row number of a CSV file, or its ``data.id_column`` under that name; the file name of an
    image, the index of a test image); for a value (regression) ``value`` and ``true_value``; for classes
    ``label`` (the predicted class name), ``probability`` (of that class), ``true_label`` when the inputs had
    labels, then ``prob_<class>`` for every class when there are at most ``max_class_columns`` classes, and
    ``top_k`` ("name:probability" pairs, best first) when there are more than two.

    Args:
        output: CSV file to write (default: beside the checkpoint, in its run folder: NAME.predictions.csv for
            data.predict_path / predict_root NAME, predictions.csv for the test split).
        top_k: how many classes the top_k column lists.
        max_class_columns: most classes that get a probability column each.
    """

    FLUSH_ROWS = 65_536  # rows held before they are appended to the file

    def __init__(self, output: str | None = None, top_k: int = 5, max_class_columns: int = 20) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self.top_k = top_k
        self.max_class_columns = max_class_columns
        self.written: Path | None = None
        self.columns: list[str] = []
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self.rows = self.labelled = self.correct = self.pending_rows = 0
        self.value = self.multi_label = False

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.written, self.pending, self.pending_rows, self.rows, self.labelled, self.correct = None, [], 0, 0, 0, 0

    def write_on_batch_end(
        self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        value = "values" in prediction  # a value per input (regression): its squared errors are summed
        probs = (prediction["values"] if value else prediction["probs"]).float().cpu()
        preds = torch.zeros(len(probs), dtype=torch.long) if value else prediction["preds"].cpu()
        index = prediction["index"].cpu() if "index" in prediction else torch.arange(len(preds)) + self.rows
        targets = prediction["target"].cpu() if "target" in prediction else None
        self.pending.append((probs, preds, index, targets))
        self.pending_rows += len(preds)
        self.rows += len(preds)
        self.value, self.multi_label = value, preds.dim() == 2
        if targets is not None:
            self.labelled += len(targets)
            if value:
                self.correct += float(((probs - targets) ** 2).sum())
            else:  # several labels: an input is right when every label is
                right = preds == targets
                self.correct += int((right.all(dim=1) if right.dim() == 2 else right).sum())
        if self.pending_rows >= self.FLUSH_ROWS:
            self._flush(trainer, pl_module)

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._flush(trainer, pl_module)
        if self.written is not None:
            say(trainer, f"Predictions:  {self.written} ({self.rows:,} rows)")

    def _flush(self, trainer: Any, pl_module: Any) -> None:
        """Append the batches held so far to the file (a few thousand small appends took 20 times longer)."""
        import pandas as pd

        if not self.pending:
            return
        probs, preds, index = (torch.cat([p[i] for p in self.pending]) for i in range(3))
        labelled = all(p[3] is not None for p in self.pending)
        targets = torch.cat([p[3] for p in self.pending]) if labelled else None
        self.pending, self.pending_rows = [], 0
        names = list(getattr(pl_module, "class_names", None) or [str(i) for i in range(probs.shape[-1])])
        given = getattr(trainer.datamodule, "predict_ids", None) if trainer.datamodule is not None else None
        ids = [given[i] for i in index.tolist()] if given is not None else index.tolist()
        if self.value:
            table = value_table(probs, ids, targets)
        elif preds.dim() == 2:
            table = label_table(probs, preds, names, ids, targets)
        else:
            table = prediction_table(probs, preds, names, ids, targets, self.top_k, self.max_class_columns)
        frame = pd.DataFrame(table)
        frame = frame.rename(columns={"id": getattr(trainer.datamodule, "id_name", "id")})  # data.id_column
        first = self.written is None
        if first:  # the first rows fix the columns (true_label: when they had labels)
            self.written, self.columns = self._path(trainer), list(frame.columns)
            self.written.parent.mkdir(parents=True, exist_ok=True)
        frame.reindex(columns=self.columns).to_csv(self.written, index=False, mode="w" if first else "a", header=first)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """A predict stopped part way (a bad value further down a streamed file, Ctrl-C): its rows so far would pass
        for a whole file's predictions, so the file goes."""
        if self.written is not None and trainer.predicting:
            self.written.unlink(missing_ok=True)
            say(trainer, f"Predictions:  {self.written} removed: the predict stopped after {self.rows:,} rows")
            self.written = None

    def summary(self) -> str:
        """How many inputs were predicted, and the accuracy where every input had a label."""
        if not self.rows:
            return "Predicted nothing."
        text = f"Predicted {self.rows:,} inputs"
        if self.labelled == self.rows and self.value:
            text += f"; RMSE against their targets {(self.correct / self.rows) ** 0.5:.4g}"
        elif self.labelled == self.rows:
            kind = "every label right (subset accuracy)" if self.multi_label else "accuracy against their labels"
            text += f"; {kind} {self.correct / self.rows:.4f}"
        return text + "."

    def _path(self, trainer: Any) -> Path:
        path = Path(self.output) if self.output else Path(trainer.log_dir or ".") / "predictions.csv"
        if trainer.world_size > 1:  # each process writes the rows it predicted
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path


class FigureLogger(Callback):
    """Pictures of a run, saved as PNG in the run folder and logged to TensorBoard (``figures/...``).

    - after test (and after ``validate``): the confusion matrix with class names (torchmetrics' own plot) and a
      CSV of precision, recall, F1 and support per class; for images, a grid of the most confident mistakes;
    - at the end of fit, for CNNs: the first conv layer's filters, and its activations of one validation image.

    Args:
        enabled: draw the figures (off: nothing is drawn, e.g. for benchmarks).
        max_mistakes: how many mistakes the grid shows, the most confident first.
    """

    def __init__(self, enabled: bool = True, max_mistakes: int = 24) -> None:
        self.enabled = enabled
        self.max_mistakes = max_mistakes
        self.written: list[Path] = []
        self.folder: Path | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # ``trainer.log_dir`` is a collective under DDP (rank 0 broadcasts its folder): ask here, where every process
        # comes, not in the drawing code that only rank 0 runs (rank 0 waited there for the others forever)
        self.folder = Path(trainer.log_dir or trainer.default_root_dir)

    # -- collecting during test / validate ------------------------------------------------------------------
    def _collecting(self, trainer: Any, stage: str) -> bool:
        # validation inside fit runs every epoch: drawn only for the validate subcommand
        return self.enabled and (stage == "test" or trainer.state.fn == "validate")

    def _start(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not self._collecting(trainer, stage):
            return
        from torchmetrics import CatMetric
        from torchmetrics.classification import MulticlassConfusionMatrix

        self.value = getattr(getattr(pl_module, "task", None), "value", False)
        self.labels = getattr(getattr(pl_module, "task", None), "labels", False)
        if self.value or self.labels:  # a value per input, or several labels: predicted and true
            self.pairs = [CatMetric(nan_strategy="disable").to(pl_module.device) for _ in range(2)]
            return
        self.confmat = MulticlassConfusionMatrix(pl_module.num_classes).to(pl_module.device)
        # the reliability diagram's: the top class's probability, raw and as given, and whether it was right
        self.confidence = {kind: CatMetric(nan_strategy="disable").to(pl_module.device) for kind in ("raw", "given")}
        self.correct = CatMetric(nan_strategy="disable").to(pl_module.device)
        self.mistakes: list[tuple[float, torch.Tensor, int, int]] = []

    def _batch(self, trainer: Any, pl_module: Any, probs: Any, batch: Any, stage: str) -> None:
        if not self._collecting(trainer, stage) or not isinstance(probs, torch.Tensor):
            return
        x, y = batch[0], batch[1]
        if self.value or self.labels:
            self.pairs[0].update(probs.float())
            self.pairs[1].update(y.float())
            return
        preds = pl_module.decide(probs) if hasattr(pl_module, "decide") else probs.argmax(1)
        self.confmat.update(preds, y)
        temperature = float(getattr(pl_module, "temperature", 1.0))
        top = probs.max(dim=1)
        self.confidence["given"].update(top.values.float())
        # softmax(T log p) = softmax(z): the network's own probabilities, from the calibrated ones
        raw = (probs.float().clamp(min=1e-30).log() * temperature).softmax(dim=1) if temperature != 1 else probs
        self.confidence["raw"].update(raw.max(dim=1).values.float())
        self.correct.update((probs.argmax(1) == y).float())
        if x.dim() == 4:  # images: keep the most confident mistakes seen so far
            wrong = (preds != y).nonzero().flatten()
            confidence = probs.gather(1, preds[:, None]).squeeze(1)
            for i in wrong.tolist():
                self.mistakes.append((float(confidence[i]), x[i].cpu(), int(y[i]), int(preds[i])))
            self.mistakes = sorted(self.mistakes, key=lambda m: -m[0])[: self.max_mistakes]

    def _end(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not self._collecting(trainer, stage):
            return
        from lit_nets.core import plots

        if self.labels:
            probs, true = (pair.compute().cpu() for pair in self.pairs)  # synchronised across processes
            if trainer.is_global_zero:
                from lit_nets.core.models.labels import confusion_counts

                names, cuts = list(pl_module.class_names), pl_module.decision_threshold.cpu()
                counts = confusion_counts(probs, true, cuts)
                title = f"Per label, {stage}: {len(true):,} inputs"
                self._emit(trainer, plots.plot_label_counts(counts, names, cuts, title), f"per_label_{stage}")
                path = self._folder(trainer) / f"per_label_{stage}.csv"
                self.written.append(plots.write_label_counts(counts, names, cuts, path))
            return
        if self.value:
            predicted, true = (pair.compute().cpu() for pair in self.pairs)  # synchronised across processes
            if trainer.is_global_zero:
                rmse = float(((predicted - true) ** 2).mean().sqrt())
                title = f"{stage}: {len(true):,} inputs, RMSE {rmse:.4g}"
                scatter, residual = plots.plot_values(predicted, true, pl_module.task.name, title)
                self._emit(trainer, scatter, f"predicted_vs_true_{stage}")
                self._emit(trainer, residual, f"residuals_{stage}")
            return
        counts = self.confmat.compute().cpu()  # synchronised across processes
        given, raw = (self.confidence[kind].compute().cpu() for kind in ("given", "raw"))
        correct = self.correct.compute().cpu()
        if not trainer.is_global_zero:
            return
        names, n = list(pl_module.class_names), int(counts.sum())
        acc = float(counts.diag().sum()) / max(n, 1)
        title = f"Confusion matrix, {stage}: {n:,} inputs, accuracy {acc:.4f}"
        self._emit(trainer, plots.plot_confusion(self.confmat, names, title), f"confusion_matrix_{stage}")
        self.written.append(plots.write_per_class(counts, names, self._folder(trainer) / f"per_class_{stage}.csv"))
        self._reliability(trainer, pl_module, stage, given, raw, correct)
        if self.mistakes:
            title = f"The {len(self.mistakes)} most confident mistakes, {stage} (true / predicted, confidence)"
            self._emit(trainer, plots.plot_mistakes(self.mistakes, names, title), f"mistakes_{stage}")

    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start(trainer, pl_module, "test")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        self._batch(trainer, pl_module, outputs, batch, "test")

    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._end(trainer, pl_module, "test")

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start(trainer, pl_module, "val")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        self._batch(trainer, pl_module, outputs, batch, "val")

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._end(trainer, pl_module, "val")

    def _reliability(self, trainer: Any, pl_module: Any, stage: str, given: Any, raw: Any, correct: Any) -> None:
        from lit_nets.core import plots
        from lit_nets.core.models.calibration import N_BINS

        def ece(confidence: torch.Tensor) -> float:  # Guo et al.'s, over the figure's bins
            bins = torch.bucketize(confidence.clamp(1e-6, 1), torch.linspace(0, 1, N_BINS + 1)[1:-1], right=True)
            gap = torch.bincount(bins, weights=confidence - correct, minlength=N_BINS)
            return float(gap.abs().sum()) / max(len(correct), 1)

        temperature = float(getattr(pl_module, "temperature", 1.0))
        curves = {f"the network's (ECE {ece(raw):.4f})": (raw, correct)}
        if temperature != 1:
            curves[f"calibrated, T = {temperature:.3f} (ECE {ece(given):.4f})"] = (given, correct)
        title = f"Reliability, {stage}: {len(correct):,} inputs"
        name = "reliability" if stage == "test" else f"reliability_{stage}"
        self._emit(trainer, plots.plot_reliability(curves, title, N_BINS), name)

    # -- what a CNN learned, at the end of fit ----------------------------------------------------------------
    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        net = getattr(pl_module, "net", None)
        conv = next((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None) if net is not None else None
        if not self.enabled or conv is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        from lit_nets.core import plots

        self._emit(trainer, plots.plot_filters(conv.weight), "filters_conv1")
        loader = trainer.datamodule.val_dataloader() if trainer.datamodule is not None else None
        if loader is None:
            return
        x, y = next(iter(loader))[:2]
        image = x[:1].to(pl_module.device)
        features = getattr(net, "features", None)
        with torch.no_grad():
            if isinstance(features, torch.nn.Sequential) and hasattr(features, "conv1"):  # our CNN: conv1 [bn1] act1
                first_block = torch.nn.Sequential(*[m for n, m in features.named_children() if n.endswith("1")][:-1])
                maps = first_block(pl_module.normalize(image))[0]
            else:  # a backbone: what its first convolution makes of the image
                seen: list[torch.Tensor] = []
                hook = conv.register_forward_hook(lambda module, args, out: seen.append(out))
                was_training = pl_module.training
                try:
                    pl_module.eval()(image)  # BatchNorm with its running statistics: one image is a batch of one
                finally:
                    hook.remove()
                    pl_module.train(was_training)
                maps = seen[0][0]
        names = pl_module.class_names
        shown = (
            " ".join(n for n, on in zip(names, y[0].tolist(), strict=True) if on) if y.dim() == 2 else names[int(y[0])]
        )
        caption = f"the first validation image ({'labels' if y.dim() == 2 else 'class'} {shown})"
        self._emit(trainer, plots.plot_activations(x[0], maps, "conv1", caption), "activations_conv1")

    # -- output ------------------------------------------------------------------------------------------------
    def _folder(self, trainer: Any) -> Path:
        return self.folder or Path(trainer.default_root_dir)

    def _emit(self, trainer: Any, fig: Any, name: str) -> None:
        from lit_nets.core import plots

        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_figure"):  # TensorBoard
                logger.experiment.add_figure(f"figures/{name}", fig, global_step=trainer.global_step, close=False)
        self.written.append(plots.save(fig, self._folder(trainer) / f"{name}.png"))
