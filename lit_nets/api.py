"""lit_nets from Python: train from a config in a notebook or a script, and predict on what you hold in memory.

    from lit_nets import api

    run = api.fit("configs/mlp.yaml", trainer={"max_epochs": 50})   # the fit command, in this process
    run.test                                                        # {"test/acc": 0.97, ...}
    run.curves()                                                    # a pandas DataFrame, a row per epoch
    predictor = api.load(run.best)                                  # or an exported .onnx / .pt2 / .torchscript.pt
    predictor.predict(frame)                                        # a DataFrame of raw rows -> a DataFrame

``fit`` is the ``fit`` command (the same CLI, parser, callbacks and run folder; its overrides are the command's
dotted options); a :class:`Predictor` is the service's model (:mod:`lit_nets.deploy.serve.model`): a checkpoint or an
exported file with its sidecar, raw rows encoded by the model's own schema (text categories, missing values), images
decoded and resized by the one decoder. A mistake is a :class:`lit_nets.core.errors.UserError` with the command's
one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Predictor", "Run", "fit", "load"]


@dataclass
class Run:
    """A finished ``fit``: its folder, checkpoints, test metrics and config."""

    folder: Path | None
    best: Path | None
    last: Path | None
    test: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    def curves(self) -> Any:
        """Every scalar the run logged per epoch (train/loss, val/loss, val/acc, ..., test/*), as a pandas DataFrame
        indexed by epoch (read from its TensorBoard files with tensorboard's own reader)."""
        import pandas as pd
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        if self.folder is None:
            raise ValueError("this run has no folder (its logger was off)")
        events = EventAccumulator(str(self.folder), size_guidance={"scalars": 0})
        events.Reload()
        tags = events.Tags()["scalars"]
        import bisect

        marks = sorted((e.step, int(e.value)) for e in events.Scalars("epoch")) if "epoch" in tags else []
        steps = [step for step, _ in marks]

        def epoch_of(step: int) -> int:  # the epoch Lightning logged at that step, or at the last step before it
            at = bisect.bisect_right(steps, step) - 1
            return marks[at][1] if at >= 0 else 0

        columns = {
            tag: {epoch_of(e.step): e.value for e in events.Scalars(tag)}
            for tag in tags
            if tag != "epoch" and not tag.endswith("_step")
        }
        return pd.DataFrame(columns).rename_axis("epoch").sort_index()

    def figure(self) -> Any:
        """The learning curves as a matplotlib figure (a notebook shows it): ``python -m lit_nets plot``'s."""
        from lit_nets.core import plots

        if self.folder is None:
            raise ValueError("this run has no folder (its logger was off)")
        return plots.plot_curves([self.folder])


def fit(config: str | Path | list[str | Path] | None = None, *, verbose: bool = True, **sections: Any) -> Run:
    """Train as ``python -m lit_nets fit --config CONFIG`` does, in this process, and return the :class:`Run`.

    ``sections`` override the config by section, as dicts (``data={"path": "my.csv", "target": "label"}``,
    ``model={"lr": 3e-4}``, ``trainer={"max_epochs": 5}``) or values (``seed_everything=1``); a model's or data's
    ``class_path`` swaps the class; ``ckpt_path="last"`` resumes. ``verbose=False``: no progress bar, model summary or
    Lightning info lines (warnings and the run's summary stay)."""
    import signal

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from lit_nets.core.errors import find_user_error
    from lit_nets.train import runs
    from lit_nets.train.callbacks import SaveOnInterrupt
    from lit_nets.train.in_memory import interruptible, quiet

    args: list[str] = []
    for given in [config] if isinstance(config, str | Path) else list(config or []):
        args += ["--config", str(given)]
    for section, value in sections.items():
        args += _dotted(section, value)
    if not verbose:
        args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    stopper = SaveOnInterrupt(signal.SIGINT)  # Ctrl-C: saved at the step's end, as the commands do on SIGTERM
    with quiet(not verbose), interruptible():
        try:
            cli = runs.fit(args, callbacks=[stopper])
        except SIGTERMException:
            if not stopper.pending:
                raise
            raise KeyboardInterrupt(
                f"training interrupted: saved {stopper.saved}; resume: api.fit(..., ckpt_path='{stopper.saved}')"
            ) from None
        except Exception as e:  # bad input the CLI's parser wrapped in its own error: the command's one line
            found = find_user_error(e)
            if found is None:
                raise
            raise found from None
    trainer = cli.trainer
    checkpoint = trainer.checkpoint_callback
    best = Path(checkpoint.best_model_path) if checkpoint is not None and checkpoint.best_model_path else None
    folder = Path(trainer.log_dir) if trainer.logger is not None and trainer.log_dir else None
    last = folder / "checkpoints" / "last.ckpt" if folder is not None else None
    tested = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    return Run(folder, best, last if last is not None and last.is_file() else None, tested, bool(trainer.interrupted))


def _dotted(section: str, value: Any) -> list[str]:
    """A section's overrides as the command's dotted options (``data={"path": "x"}`` -> ``--data.path x``)."""
    if isinstance(value, dict) and "class_path" not in value:
        return [arg for key, inner in value.items() for arg in _dotted(f"{section}.{key}", inner)]
    if isinstance(value, str):
        return [f"--{section}", value]
    return [f"--{section}", json.dumps(value)]  # numbers, booleans, None, lists and class_path dicts as JSON


def load(path: str | Path, device: str = "cpu") -> Predictor:
    """A checkpoint (``.ckpt``, or ``best`` / ``last`` of the newest run) or an exported TorchScript, pt2 or ONNX
    file with its sidecar, ready to predict on what you hold in memory."""
    from lit_nets.deploy.inference import open_checkpoint
    from lit_nets.deploy.serve.model import load as served

    file = Path(path)
    if not file.is_file():  # best, last, a run folder: the commands' rule
        file = Path(open_checkpoint(str(path), say=False).file)
    return Predictor(served(str(file), device), device)


class Predictor:
    """A trained model for Python: :meth:`predict` takes a pandas DataFrame of raw rows (a table's model: columns by
    name, text categories, missing values as the training file had them), or images (a PIL image, a numpy array
    ``(H, W)``, ``(H, W, C)``, or a batch ``(N, H, W[, C])``, uint8 or floats in [0, 1]) and answers in a DataFrame,
    a row per input: the class and its probability, or the value, or the labels decided."""

    def __init__(self, served: Any, device: str = "cpu") -> None:
        self.served, self.device = served, device

    @property
    def classes(self) -> list[str]:
        """The class names (several labels: the labels; a value: its name)."""
        return list(self.served.class_names)

    @property
    def task(self) -> str:
        """``classes``, ``value`` or ``labels``."""
        return self.served.task.kind

    def inputs(self, given: Any) -> Any:
        """What the model takes, as a tensor on the predictor's device, from rows or images."""
        import torch

        if self.served.kind == "tabular":
            import pandas as pd

            if not isinstance(given, pd.DataFrame):
                raise TypeError(f"this model takes a pandas DataFrame of rows, got {type(given).__name__}")
            return torch.from_numpy(self.served.schema.encode(given, "the DataFrame")).to(self.device)
        return torch.stack([self._image(image) for image in _images(given)]).to(self.device)

    def _image(self, image: Any) -> Any:
        """One image prepared as the service prepares an upload: PNG bytes through the one decoder."""
        import io

        import numpy as np
        from PIL import Image

        from lit_nets.core.data.image_io import decode

        if not isinstance(image, Image.Image):
            array = np.asarray(image)
            if array.dtype != np.uint8:
                array = (np.clip(array.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
            image = Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        schema = self.served.schema
        channels, size = self.served.input_shape[0], tuple(self.served.input_shape[1:])
        crop = getattr(schema, "crop_pct", None)
        return decode(buffer.getvalue(), channels, size, name="the image", crop_pct=crop)

    def outputs(self, given: Any) -> Any:
        """The deployed module's outputs (logits, calibrated; a value's values) for ``given``."""
        import torch

        with torch.inference_mode():
            return torch.as_tensor(self.served.forward(self.inputs(given))).float().cpu()

    def predict_proba(self, given: Any) -> Any:
        """A probability per class (several labels: per label) for each input, as a numpy array."""
        import torch

        from lit_nets.core.models.deployable import probabilities

        if self.task == "value":
            raise ValueError("a value model has no probabilities: use predict")
        out = self.outputs(given)
        return (torch.sigmoid(out) if self.task == "labels" else probabilities(out)).numpy()

    def predict(self, given: Any) -> Any:
        """A pandas DataFrame, a row per input: ``label``, ``probability`` and ``prob_<class>`` (classes; two classes
        decided at the model's threshold), ``value`` (a value), or ``labels`` and ``prob_<label>`` (several labels,
        each decided at its threshold)."""
        import numpy as np
        import pandas as pd

        if self.task == "value":
            return pd.DataFrame({"value": self.outputs(given)[:, 0].numpy()})
        probs = self.predict_proba(given)
        names = self.classes
        if self.task == "labels":
            decided = probs >= np.asarray(self.served.threshold)
            table = {"labels": [" ".join(n for n, on in zip(names, row, strict=True) if on) for row in decided]}
            return pd.DataFrame(table | {f"prob_{n}": probs[:, j] for j, n in enumerate(names)})
        import torch

        chosen = [self.served.decide(torch.from_numpy(row)) for row in probs]
        table = {"label": [names[c] for c in chosen], "probability": probs[np.arange(len(probs)), chosen]}
        return pd.DataFrame(table | {f"prob_{n}": probs[:, j] for j, n in enumerate(names)})

    def confusion(self, given: Any, truth: Any, title: str = "confusion matrix") -> Any:
        """The confusion matrix of the predictions on ``given`` against the true classes ``truth`` (one per input,
        as the training file wrote them), as a matplotlib figure: the ``fit`` command's ``confusion_matrix_test.png``
        drawing."""
        import torch
        from torchmetrics.classification import MulticlassConfusionMatrix

        from lit_nets.core import plots
        from lit_nets.core.data.column_values import label_text

        if self.task != "classes":
            raise ValueError(f"a confusion matrix is for classes; this model predicts {self.task}")
        names = self.classes
        index = {name: i for i, name in enumerate(names)}
        true = [label_text(t) for t in truth]
        unknown = sorted(set(true) - set(index))
        if unknown:
            raise ValueError(f"truth: {unknown[:3]} are not classes of this model ({', '.join(names)})")
        predicted = self.predict(given)["label"]
        if len(true) != len(predicted):
            raise ValueError(f"truth: {len(true)} classes for {len(predicted)} inputs")
        matrix = MulticlassConfusionMatrix(len(names))
        matrix.update(torch.tensor([index[p] for p in predicted]), torch.tensor([index[t] for t in true]))
        return plots.plot_confusion(matrix, names, title)


def _images(given: Any) -> list[Any]:
    """One image or a batch of them, as a list: a PIL image; a list; an array ``(H, W)`` or ``(H, W, 3|4)`` (one
    image), ``(N, H, W)`` or ``(N, H, W, C)`` (a batch)."""
    import numpy as np
    from PIL import Image

    if isinstance(given, Image.Image):
        return [given]
    if isinstance(given, list | tuple):
        return list(given)
    array = np.asarray(given)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4)):
        return [array]
    if array.ndim in (3, 4):
        return list(array)
    raise ValueError(f"images: an array of shape {array.shape} is neither an image nor a batch of them")
