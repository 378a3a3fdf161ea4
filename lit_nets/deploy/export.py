"""Take a trained model out of Lightning: state_dict, TorchScript, torch.export (pt2) and ONNX, with parity checks.

    python -m lit_nets export --ckpt_path best.ckpt --format torchscript     # also: state_dict, pt2, onnx, all

The exported module is ``Standardize`` + the plain network, so a client sends raw inputs and gets logits:
images as uint8 pixels (N, C, H, W), CSV rows as float32 vectors encoded as the sidecar's ``schema`` says
(numeric columns raw, text columns one-hot). The batch size is dynamic. Beside each file a JSON sidecar holds the
class names, input shape and dtype, the schema and the parity figure. Each artefact is loaded back and run on a
real batch of the checkpoint's own data (its test split); the export fails when any logit differs from the
Lightning model's by more than 1e-3 of its size (at least 1e-3), PyTorch's own tolerance for ONNX parity: float32
sums in another order, and onnxruntime's sine and cosine, move the logits of the tabular recipe's periodic embeddings
(angles of hundreds of radians on an outlying number) by up to about 1e-4; a broken export moves them by far more.
TorchScript and pickled files are code: load them only from sources you trust.
"""

from __future__ import annotations

import json
import logging
import shutil
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)
Format = Literal["state_dict", "torchscript", "pt2", "onnx", "all"]  # all: every one
FORMATS = typing.get_args(Format)[:-1]
TOLERANCE = 1e-3  # relative above 1 (see the module docstring): torch's ONNX docs compare with rtol 1e-3
SUFFIX = {"state_dict": ".pt", "torchscript": ".torchscript.pt", "pt2": ".pt2", "onnx": ".onnx"}


def real_batch(ckpt_path: Any, model: Any, size: int = 256) -> torch.Tensor:
    """Up to ``size`` inputs of the checkpoint's own data (test split, else validation), as the model takes them."""
    from lit_nets.core.data.contract import first_inputs_of
    from lit_nets.deploy.inference import checkpoint_data

    return first_inputs_of(checkpoint_data(ckpt_path, "test", "the parity check"), size)


def export(ckpt_path: Any, formats: list[str], out: str | None = None) -> dict[str, dict[str, Any]]:
    """Export the checkpoint in each format, check parity, write sidecars; return a report per format."""
    from lit_nets.core.models.deployable import Deployable
    from lit_nets.deploy.inference import load_classifier, open_checkpoint

    ckpt_path = open_checkpoint(ckpt_path, say=False)  # the record: read once
    if out and Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"export --out {out} is a file; --out names a folder for the exported files (one per format)")
    model = load_classifier(ckpt_path)
    deployable = Deployable.of(model)
    if len(model.input_shape) == 3:  # images: exported graphs are simplest in the default memory layout
        deployable = deployable.to(memory_format=torch.contiguous_format)
    x = real_batch(ckpt_path, model)
    with torch.no_grad():
        reference = deployable(x).float()  # calibrated logits: divided by the temperature
    out_dir = Path(out) if out else Path(ckpt_path.file).parent.parent / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(ckpt_path.file).stem
    report = {}
    for fmt in formats:
        path = out_dir / f"{stem}{SUFFIX[fmt]}"
        runner = EXPORTERS[fmt](deployable, x, path)
        if runner is None:
            diff, same_top1 = float("nan"), None
        else:
            with torch.no_grad():
                got = torch.as_tensor(runner(x)).float()
            diff = float(((got - reference).abs() / reference.abs().clamp(min=1.0)).max())  # relative above 1
            same_top1 = None if model.task.kind != "classes" else bool((got.argmax(1) == reference.argmax(1)).all())
        meta = {
            "format": fmt,
            "file": path.name,
            "class_names": list(model.class_names),
            "input_shape": ["batch", *model.input_shape],
            "input_dtype": str(x.dtype).removeprefix("torch."),
            "output": output_of(model),
            "task": model.task.to_dict() if model.task.value else {"kind": model.task.kind},
            "temperature": model.temperature.tolist(),  # several labels: one each
            # two classes: the second where its probability reaches it; several labels: one each
            "threshold": model.decision_threshold.tolist(),
            "schema": model.schema,
            "parity": {"inputs": len(x), "max_abs_diff": diff, "same_top1": same_top1, "tolerance": TOLERANCE},
            "checkpoint": ckpt_path.file,
            "torch": torch.__version__,
        }
        path.with_suffix(path.suffix + ".json").write_text(json.dumps(meta, indent=2))
        if runner is None:
            print(f"{fmt:12s} {path}  parity NOT checked: onnxruntime is not installed (pip install onnxruntime)")
            report[fmt] = {"path": path, **meta["parity"]}
            continue
        top1 = "" if same_top1 is None else f", same top-1: {same_top1}"
        print(
            f"{fmt:12s} {path}  parity on {len(x)} real inputs: max |diff| {diff:.2e}{top1} "
            f"(|diff| relative where {'a value' if model.task.value else 'a logit'} is above 1)"
        )
        if diff > TOLERANCE:
            raise UserError(f"{fmt}: exported outputs differ from the checkpoint's by {diff:.2e} > {TOLERANCE}")
        report[fmt] = {"path": path, **meta["parity"]}
    return report


def output_of(model: Any) -> str:
    """What the exported module's output is, in words (the sidecar's ``output``)."""
    if model.task.value:
        return f"the value of {model.task.name!r}, one per input, in its own units"
    if model.task.labels:
        calibrated = ", divided by its temperature" if bool((model.temperature != 1).any()) else ""
        return f"a logit per label{calibrated}: sigmoid gives its probability; the label applies from its threshold"
    binary = " (one: sigmoid gives the probability of the second class)" if model.binary else ""
    return "logits" + binary + (", divided by the temperature" if float(model.temperature) != 1 else "")


# -- one exporter per format: write the file, return a function that runs the reloaded artefact -------------
def _state_dict(module: nn.Module, x: torch.Tensor, path: Path):
    torch.save(module.state_dict(), path)  # plain tensors: torch.load(path, weights_only=True)
    try:
        from safetensors.torch import save_file

        tensors = path.with_suffix(".safetensors")
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tensors))
        shutil.copymode(path, tensors)  # safetensors writes a private temporary file (mode 0600) and renames it
    except ImportError:
        pass
    fresh = _rebuild(module)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    return fresh.eval()


def _rebuild(module: nn.Module) -> nn.Module:
    import copy

    fresh = copy.deepcopy(module)
    for p in fresh.parameters():
        p.data.zero_()
    return fresh


def _torchscript(module: nn.Module, x: torch.Tensor, path: Path):
    with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript; the README says so, once, not three times
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(module, x[:2], check_trace=False)
        traced.save(str(path))
        return torch.jit.load(str(path))


def _pt2(module: nn.Module, x: torch.Tensor, path: Path):
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(module, (x[:2],), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))
    return torch.export.load(str(path)).module()


def _onnx(module: nn.Module, x: torch.Tensor, path: Path):
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError('ONNX export needs onnx and onnxscript: pip install -e ".[export]"') from None
    torch.onnx.export(
        module,
        (x[:2],),
        str(path),
        dynamo=True,
        input_names=["x"],
        output_names=["logits"],
        verbose=False,
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1 << 16)}},
    )
    try:
        import onnxruntime
    except ImportError:
        return None  # no runtime to run the file with: parity is reported as not checked
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda inputs: session.run(None, {"x": inputs.numpy()})[0]


EXPORTERS = {"state_dict": _state_dict, "torchscript": _torchscript, "pt2": _pt2, "onnx": _onnx}


def export_command(
    ckpt_path: str,
    format: list[Format] = ["all"],  # noqa: B006 (the option is --format; the list is never mutated)
    out: str | None = None,
) -> None:
    """Deployable files of a checkpoint: state_dict, TorchScript, torch.export (pt2) and ONNX.

    Each comes with a JSON sidecar (classes, input shape, schema) and a parity check against the checkpoint on
    real inputs of its own data.

    Args:
        ckpt_path: checkpoint of a trained classifier (or best, last, a run folder).
        format: the formats to write (all: every one).
        out: folder for the files (default: export/ in the run folder).
    """
    formats = list(FORMATS) if "all" in format else list(format)
    from lit_nets.deploy.inference import open_checkpoint

    export(open_checkpoint(ckpt_path), formats, out)
