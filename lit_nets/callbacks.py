"""Callbacks the CLI adds to every run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter, LearningRateMonitor


class PredictionWriter(BasePredictionWriter):
    """Write ``predict`` results to a CSV file: one row per input.

    Columns: ``id`` (the row number of a CSV file, the file name of an image, the index of a test image),
    ``label`` (the predicted class name), ``probability`` (of that class), ``true_label`` when the inputs had
    labels, then ``prob_<class>`` for every class when there are at most ``max_class_columns`` classes, and
    ``top_k`` ("name:probability" pairs, best first) when there are more than two.

    Args:
        output: CSV file to write (default: predictions.csv in the run folder, or in the working folder
            when the run has no logger).
        top_k: how many classes the top_k column lists.
        max_class_columns: most classes that get a probability column each.
    """

    def __init__(self, output: str | None = None, top_k: int = 5, max_class_columns: int = 20) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.top_k = top_k
        self.max_class_columns = max_class_columns
        self.written: Path | None = None

    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Any, batch_indices: Any) -> None:
        import pandas as pd

        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        if not batches:
            return
        probs = torch.cat([b["probs"] for b in batches]).float().cpu()
        preds = torch.cat([b["preds"] for b in batches]).cpu()
        index = torch.cat([b["index"] for b in batches]).cpu() if "index" in batches[0] else torch.arange(len(preds))
        names = list(getattr(pl_module, "class_names", [str(i) for i in range(probs.shape[1])]))
        ids = getattr(trainer.datamodule, "predict_ids", None) if trainer.datamodule is not None else None
        table: dict[str, Any] = {
            "id": [ids[i] for i in index.tolist()] if ids is not None else index.tolist(),
            "label": [names[i] for i in preds.tolist()],
            "probability": probs.gather(1, preds[:, None]).squeeze(1).numpy().round(6),
        }
        if all("target" in b for b in batches):
            table["true_label"] = [names[i] for i in torch.cat([b["target"] for b in batches]).cpu().tolist()]
        if len(names) <= self.max_class_columns:
            for c, name in enumerate(names):
                table[f"prob_{name}"] = probs[:, c].numpy().round(6)
        if len(names) > 2:
            k = min(self.top_k, len(names))
            top = probs.topk(k, dim=1)
            table["top_k"] = [
                " ".join(f"{names[c]}:{p:.4f}" for c, p in zip(cs, ps, strict=True))
                for cs, ps in zip(top.indices.tolist(), top.values.tolist(), strict=True)
            ]
        frame = pd.DataFrame(table).sort_values("id", kind="stable") if ids is None else pd.DataFrame(table)
        self.written = self._path(trainer)
        self.written.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(self.written, index=False)
        print(f"Predictions:  {self.written} ({len(frame):,} rows)")

    def _path(self, trainer: Any) -> Path:
        path = Path(self.output) if self.output else Path(trainer.log_dir or ".") / "predictions.csv"
        if trainer.world_size > 1:  # each process writes the rows it predicted
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path


class LearningRateLogger(LearningRateMonitor):
    """Lightning's ``LearningRateMonitor``, standing aside in runs without a logger (``--trainer.logger false``),
    where Lightning's own raises: the CLI adds it to every run."""

    def on_train_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        self._active = bool(trainer.loggers)
        if self._active:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_active", False):
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_active", False):
            super().on_train_epoch_start(trainer, *args, **kwargs)
