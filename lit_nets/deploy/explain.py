"""Grad-CAM: where a CNN (or a backbone) looks when it classifies an image, from a checkpoint alone.

    python -m lit_nets explain --ckpt_path best.ckpt --images a.png b.png [--out explain/] [--layer features.act2]

(``--rows FILE`` explains a tabular model's rows instead: :mod:`lit_nets.deploy.attributions`.)

Uses torchcam's GradCAM (hooks on the chosen layer; by default the CNN's last conv block's activation, a backbone's
last conv stage, e.g. resnet's layer4). For each
image it writes ``NAME.cam.png`` (the image with its heat map overlaid, at the image's own size) and
``NAME.explain.png`` (input and overlay side by side, the predicted label and its probability in the title).
The class names, channels, image size and normalisation all come from the checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)


def default_layer(model: Any) -> str:
    """The network's ``cam_layer`` (the CNN's last conv block's activation, a backbone's last conv stage), or, in a
    network of the user's without one, its last ``Conv2d``."""
    layer = getattr(model.net, "cam_layer", None)
    if layer is None:
        convs = [name for name, module in model.net.named_modules() if isinstance(module, torch.nn.Conv2d)]
        if not convs:
            raise UserError("explain needs an image model (Grad-CAM looks at conv layers); this model has none")
        layer = convs[-1]
    return f"net.{layer}"


def has_conv_layers(model: Any) -> bool:
    """Whether Grad-CAM can explain ``model`` (a CNN, a backbone, a network of the user's with a ``Conv2d``)."""
    if getattr(model.net, "cam_layer", None) is not None:
        return True
    return len(model.input_shape) == 3 and any(isinstance(m, torch.nn.Conv2d) for m in model.net.modules())


def explain_one(
    model: Any, cam: Any, x: torch.Tensor, background: torch.Tensor | None = None
) -> tuple[torch.Tensor, Any]:
    """Class probabilities of one uint8 image (C, H, W) at the model's input size and its Grad-CAM overlay for the
    predicted class (a PIL image), from an open torchcam ``cam`` on ``model``. The heat map is drawn over
    ``background`` (the same image at another size, e.g. its own) when given, else over ``x``."""
    from torchcam.utils import overlay_mask
    from torchvision.transforms.v2.functional import to_pil_image

    model.requires_grad_(True)  # Grad-CAM follows gradients through every layer, frozen in training or not
    scores = model(x[None].to(model.device))
    probs = model.probabilities(scores)[0].detach().cpu()
    # a binary (BCE) model has one logit: its map shows the evidence for the positive class
    index = 0 if scores.shape[1] == 1 else int(probs.argmax())
    heat = cam(class_idx=index, scores=scores)[0][0].detach().cpu()
    under = to_pil_image(x if background is None else background).convert("RGB")
    return probs, overlay_mask(under, to_pil_image(heat, mode="F"), alpha=0.5)  # the map resized to the image


def explain(ckpt_path: Any, images: list[str], out: str, layer: str | None = None, device: str = "cpu") -> list[Path]:
    """Write a Grad-CAM overlay and a titled figure per image; return the written files."""
    from torchcam.methods import GradCAM

    from lit_nets.core import plots
    from lit_nets.core.data.image_io import BadImage, decode
    from lit_nets.deploy.inference import load_classifier

    model = load_classifier(ckpt_path, device)
    channels, *size = model.input_shape  # an image model's input: channels, height, width
    target = f"net.{layer}" if layer and not layer.startswith("net.") else (layer or default_layer(model))
    names = {name for name, _ in model.named_modules()}
    if target not in names:
        stages = [
            n.removeprefix("net.")
            for n, m in model.named_modules()
            if n.count(".") <= 2 and any(isinstance(c, torch.nn.Conv2d) for c in m.modules())
        ]
        raise UserError(f"--layer {layer}: no such layer; layers with convolutions: " + ", ".join(stages[-12:]))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    plt = plots.pyplot()
    with GradCAM(model, target_layer=target, input_shape=tuple(model.input_shape)) as cam:
        for image_path in images:
            path = Path(image_path)
            if not path.is_file():
                raise UserError(f"--images: no such file {path}")
            try:
                x = decode(path, channels, tuple(size), crop_pct=(model.schema or {}).get("crop_pct"))
                own = decode(path, channels, None)  # the overlay is drawn at the image's own size
            except BadImage as e:
                raise UserError(str(e)) from None
            probs, overlay = explain_one(model, cam, x, background=own)
            pred = int(probs.argmax())
            stem = out_dir / path.stem
            overlay.save(stem.with_suffix(".cam.png"))
            fig, (ax_in, ax_cam) = plt.subplots(1, 2, figsize=(6.4, 3.6))
            plots._show(ax_in, x, "input")
            ax_cam.imshow(overlay, interpolation="nearest")
            ax_cam.set_xticks([]), ax_cam.set_yticks([])
            ax_cam.set_title(f"Grad-CAM at {target.removeprefix('net.')}", fontsize=8)
            label = model.class_names[pred]
            fig.suptitle(f"{path.name}: predicted {label!r} with probability {float(probs[pred]):.1%}", fontsize=10)
            written += [stem.with_suffix(".cam.png"), plots.save(fig, stem.with_suffix(".explain.png"))]
            print(f"{path}: {label} ({float(probs[pred]):.4f}) -> {stem}.explain.png")
    return written


def explain_command(
    ckpt_path: str,
    images: list[str] = [],  # noqa: B006 (never mutated)
    rows: str | None = None,
    out: str = "explain",
    layer: str | None = None,
    device: str = "cpu",
    importance_rows: int = 1000,
) -> None:
    """Why a model decided: Grad-CAM on image files, or each column's contribution to the rows of a table.

    For an image model, an overlay shows where the model looked for the class it chose, at the image's own size. For
    a tabular model, Integrated Gradients gives each column's contribution to each row's prediction, and the columns'
    importance over the validation split.

    Args:
        ckpt_path: checkpoint of a classifier (or best, last, a run folder).
        images: image files (PNG, JPEG), for an image model.
        rows: a CSV, Parquet or Feather file of records, for a tabular model: writes OUT/NAME.attributions.csv
            (a contribution per column and row) and OUT/importance.png (the columns' importance).
        out: folder for what is written.
        layer: layer to explain, e.g. features.act1 (default: the last conv block's).
        device: cpu or cuda.
        importance_rows: rows of the validation split the columns' importance is measured on (a seeded sample
            when it has more; 0: no importance, the given rows' contributions only).
    """
    from lit_nets.deploy.inference import open_checkpoint

    if bool(images) == bool(rows):
        raise UserError("explain needs --images (an image model) or --rows (a tabular model), one of the two")
    if rows:
        from lit_nets.deploy.attributions import explain_rows

        if importance_rows < 0:
            raise UserError(f"--importance_rows {importance_rows}: give 0 (no importance) or a number of rows")
        explain_rows(open_checkpoint(ckpt_path), rows, out, device, importance_rows)
        return
    explain(open_checkpoint(ckpt_path), images, out, layer, device)
