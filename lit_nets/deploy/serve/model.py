"""The model a service runs: a checkpoint or an exported TorchScript, pt2 or ONNX file with its sidecar, and
what ``/info`` says about it."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lit_nets.core.data.schema import ImageSchema, TabularSchema, read_schema
from lit_nets.core.errors import UserError
from lit_nets.core.models.tasks import Task

log = logging.getLogger(__name__)


# -- the model, from a checkpoint or an exported file -------------------------------------------------------
@dataclass
class Served:
    """A model ready to serve: raw inputs in, logits out, and what a client needs to know about it."""

    forward: Any
    class_names: list[str]
    input_shape: list[int]
    schema: ImageSchema | TabularSchema | None
    source: str
    explainer: Any = None  # the Lightning classifier, for Grad-CAM or attributions (checkpoints only)
    threshold: Any = 0.5  # two classes: the second is the answer from this probability; several labels: one each
    task: Task = field(default_factory=Task)  # a value model (regression) answers {"value": ...}

    def decide(self, probs: torch.Tensor) -> int:
        """The class the model predicts from one input's probabilities."""
        if len(probs) == 2:
            return int(probs[1] >= self.threshold)
        return int(probs.argmax())

    @property
    def kind(self) -> str:
        return self.schema.kind if self.schema is not None else "image"

    def info(self, statistics: bool = True) -> dict[str, Any]:
        """What ``/info`` says of the model; ``statistics`` False: without the example record, whose values are the
        training data's medians (what a service with an API key tells a client without the key)."""
        info = {"kind": self.kind, "class_names": self.class_names, "input_shape": self.input_shape}
        if self.task.value:  # what it answers: a number, named
            info.update(task="value", target=self.task.name)
        explains = self.explainer is not None
        info.update(source=self.source, gradcam=explains and self.kind == "image")
        info["attributions"] = explains and self.kind == "tabular"
        if self.task.labels:
            info.update(task="labels", thresholds=dict(zip(self.class_names, self.threshold, strict=True)))
        elif len(self.class_names) == 2:
            info["threshold"] = self.threshold  # the second class is the answer from this probability
        if self.kind == "tabular":
            info["features"] = list(self.schema.features)
            if statistics:
                info["example"] = example_record(self.schema)
        return info


def load(path: str, device: str = "cpu") -> Served:
    """A checkpoint (``.ckpt``) or an exported TorchScript, pt2 or ONNX file with its JSON sidecar."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--ckpt_path {path}: no such file")
    if file.suffix == ".ckpt":
        from lit_nets.core.models.deployable import Deployable
        from lit_nets.deploy.explain import has_conv_layers
        from lit_nets.deploy.inference import load_classifier

        model = load_classifier(file, device)
        net = Deployable.of(model)
        schema = read_schema(model.schema)
        table = isinstance(schema, TabularSchema) and (hasattr(model.net, "embed") or not schema.embedded)
        explains = has_conv_layers(model) or table
        explainer = model if explains else None
        threshold = model.decision_threshold.tolist()
        names, shape = list(model.class_names), list(model.input_shape)
        return Served(net, names, shape, schema, file.name, explainer, threshold, model.task)
    sidecar = file.with_name(file.name + ".json")
    if not sidecar.is_file():
        raise UserError(f"{path}: not a checkpoint (.ckpt), and there is no {sidecar.name} beside it to say what it is")
    meta = json.loads(sidecar.read_text())
    fmt = meta.get("format")
    if fmt == "torchscript":
        with warnings.catch_warnings():  # torch deprecates TorchScript (the README says so)
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(file), map_location=device).eval()
    elif fmt == "pt2":
        net = torch.export.load(str(file)).module().to(device)
    elif fmt == "onnx":
        net = _onnx_runner(file, device)
    else:
        raise UserError(
            f"{path}: a {fmt} export needs its architecture to run; serve the checkpoint, or export to "
            "torchscript, pt2 or onnx"
        )
    schema = read_schema(meta.get("schema"))
    names, shape = list(meta["class_names"]), list(meta["input_shape"][1:])
    kind = (meta.get("task") or {}).get("kind", "classes")
    task = Task.of(meta["task"]) if kind == "value" else Task(kind=kind)
    return Served(net, names, shape, schema, file.name, threshold=meta.get("threshold", 0.5), task=task)


def _onnx_runner(file: Path, device: str):
    try:
        import onnxruntime
    except ImportError:
        raise UserError('serving ONNX needs onnxruntime: pip install -e ".[export]"') from None
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else None
    session = onnxruntime.InferenceSession(str(file), providers=providers or ["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"x": x.cpu().numpy()})[0])


def example_record(table: TabularSchema) -> dict[str, Any]:
    """A valid request for a tabular model: each numeric feature at its training median, each text one at its
    first category."""
    record = {c["name"]: c["fill"] for c in table.numeric}
    record.update({c["name"]: table.known_categories(c)[0] for c in table.categorical})
    return {name: record[name] for name in table.features}


# -- requests -----------------------------------------------------------------------------------------------
