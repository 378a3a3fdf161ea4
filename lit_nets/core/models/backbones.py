"""Pretrained classification backbones from torchvision (and timm, with the ``timm`` extra), with a new head.

No Lightning here, like :mod:`lit_nets.core.models.nets`: a :class:`BackboneNet` is a plain ``nn.Module`` that builds,
trains, saves and exports with PyTorch alone.

- **Names.** Any torchvision classification model (``resnet18``, ``efficientnet_b0``, ``mobilenet_v3_large``,
  ``convnext_tiny``, ``regnet_y_400mf``, ...: ``torchvision.models.list_models``), or ``timm:NAME`` for a timm model.
- **Weights.** ``DEFAULT`` (or a torchvision weights name such as ``IMAGENET1K_V2``): the library's pretrained
  weights, downloaded once to its cache (torch hub's ``checkpoints/`` folder; timm: the Hugging Face cache); a
  local file (the library's own weight file, a ``state_dict`` saved with ``torch.save``, a ``.safetensors`` file or
  a lit_nets checkpoint) for machines without internet; or none (random initialisation).
- **Metadata.** :func:`weights_info` reads what the weights were trained with (mean, std, input size, the share of
  the resized image that the centre crop keeps) from the library's records, without downloading anything.
- **Head.** The library model's output layer (its last ``nn.Linear``; timm's ``reset_classifier``) is replaced
  by one for the data's classes; it is never loaded from a weights file.
- **Freezing.** ``freeze`` names what stays fixed (``backbone``: all but the head; or stage names such as
  ``[conv1, layer1]``); frozen BatchNorm layers stay in eval mode, so their running statistics do not move.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TIMM = "timm:"
LIBRARY_WEIGHTS = "DEFAULT"


@dataclass
class WeightsInfo:
    """What a backbone's weights expect: normalisation (on the [0, 1] scale), input size and crop share.

    ``mean`` / ``std`` are None for random weights (the data's own statistics are measured then); ``image_size`` and
    ``crop_pct`` are the architecture's usual ones either way (e.g. 224 and 0.875: resize to 256, centre-crop 224).
    """

    mean: list[float] | None
    std: list[float] | None
    image_size: int
    crop_pct: float
    described: str


def is_file(weights: str | None) -> bool:
    """Whether ``weights`` names a file (a path) rather than the library's weights."""
    return weights is not None and ("/" in weights or "\\" in weights or Path(weights).suffix != "")


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise UserError('timm backbones need the timm extra: pip install -e ".[timm]"') from None
    return timm


def _torchvision_weights(name: str, weights: str | None) -> Any:
    """torchvision's weights enum member for ``weights`` (DEFAULT, a member name; a file or none: DEFAULT, for its
    metadata), or None when the architecture has no pretrained weights."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    if weights is None or is_file(weights) or weights == LIBRARY_WEIGHTS:
        return enum.DEFAULT if hasattr(enum, "DEFAULT") else next(iter(enum), None)
    try:
        return enum[weights]
    except KeyError:
        known = ", ".join([LIBRARY_WEIGHTS, *enum.__members__])
        raise UserError(f"model.weights {weights!r}: {name} has the weights {known}, or give a file or null") from None


def check_name(name: str) -> None:
    """A backbone name the libraries know, or one line with the closest names."""
    if name.startswith(TIMM):
        timm = _timm()
        if not timm.is_model(name.removeprefix(TIMM)):
            close = difflib.get_close_matches(name.removeprefix(TIMM), timm.list_models(), n=3)
            raise UserError(
                f"model.backbone {name!r}: timm has no such model"
                + (f"; did you mean {', '.join(TIMM + c for c in close)}?" if close else "")
            )
        return
    import torchvision
    from torchvision.models import list_models

    known = list_models(module=torchvision.models)  # the classification models only
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        raise UserError(
            f"model.backbone {name!r} is not a torchvision classification model"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + " (torchvision.models.list_models() lists them; timm:NAME for a timm model)"
        )


def weights_info(name: str, weights: str | None) -> WeightsInfo:
    """The normalisation and input size of ``name``'s weights, from the library's records (nothing downloaded). A
    weights file is taken to hold the library's pretrained weights of that architecture, with their metadata."""
    check_name(name)
    if name.startswith(TIMM):
        cfg = _timm().get_pretrained_cfg(name.removeprefix(TIMM))
        if cfg is None:
            raise UserError(f"model.backbone {name!r}: timm has no pretrained configuration for it")
        cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        mean, std = [float(v) for v in cfg.get("mean", IMAGENET_MEAN)], [float(v) for v in cfg.get("std", IMAGENET_STD)]
        size, crop_pct = int(cfg.get("input_size", (3, 224, 224))[-1]), float(cfg.get("crop_pct", 0.875))
        described = f"timm's {cfg.get('architecture', name)} ({cfg.get('tag') or 'default'})"
    else:
        member = _torchvision_weights(name, weights)
        if member is None:
            mean, std, size, crop_pct, described = IMAGENET_MEAN, IMAGENET_STD, 224, 0.875, "ImageNet's"
        else:
            t = member.transforms()
            mean, std = [float(v) for v in t.mean], [float(v) for v in t.std]
            size, crop_pct = int(t.crop_size[0]), float(t.crop_size[0]) / float(t.resize_size[0])
            described = f"torchvision's {member}"
    if weights is None:
        return WeightsInfo(None, None, size, crop_pct, f"random weights ({described} input size)")
    return WeightsInfo(mean, std, size, crop_pct, described if not is_file(weights) else f"{weights} ({described})")


def _replace_linear(model: nn.Module, num_outputs: int) -> str:
    """Swap the model's output layer (its last ``nn.Linear``) for one with ``num_outputs``; return its name."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError(f"{type(model).__name__} has no linear output layer to replace (its classifier is a conv)")
    name, old = linears[-1]
    model.set_submodule(name, nn.Linear(old.in_features, num_outputs))
    return name


def _drop_aux_heads(model: nn.Module) -> None:
    """googlenet / inception_v3 train with extra heads; one output is what a classifier here returns."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for attr in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, attr):
                setattr(model, attr, None)


def _last_conv_stage(model: nn.Module, head: str) -> str:
    """The top-level child that holds the model's last convolution (resnet: layer4; efficientnet: features):
    where Grad-CAM looks by default."""
    stage = None
    for name, child in model.named_children():
        if name == head.split(".")[0]:
            continue
        if any(isinstance(m, nn.Conv2d) for m in child.modules()):
            stage = name
    return stage or head.split(".")[0]


class BackboneNet(nn.Module):
    """A library classification model whose output layer is made for ``num_outputs`` classes.

    The library model is ``body``; ``head`` names its output layer and ``cam_layer`` its last conv stage (both as
    paths from this module). The weights are random until :meth:`load_pretrained` (a Lightning module calls it
    before training, so a checkpoint is rebuilt without downloading anything).

    Args:
        name: a torchvision classification model (``resnet18``) or ``timm:NAME``.
        num_outputs: size of the output layer (classes, or 1 for a binary BCE head).
        in_channels: channels of the input images; grey images (1) are repeated to the 3 that the models take.
        freeze: ``backbone`` (everything before the model's classifier part, which holds the head: resnet's ``fc``,
            mobilenet's ``classifier`` MLP), ``none``, or names of the stages (the model's top-level parts, or dotted
            paths into them) to keep fixed.
    """

    def __init__(self, name: str, num_outputs: int, in_channels: int = 3, freeze: str | Sequence[str] = "none") -> None:
        super().__init__()
        check_name(name)
        if in_channels not in (1, 3):
            raise UserError(f"a backbone takes 1 (grey, repeated) or 3 (RGB) channels, the data has {in_channels}")
        self.name, self.in_channels = name, in_channels
        if name.startswith(TIMM):
            body = _timm().create_model(name.removeprefix(TIMM), pretrained=False, num_classes=num_outputs)
            head = body.pretrained_cfg.get("classifier") or "fc"
            info = getattr(body, "feature_info", None)
            cam = info[-1]["module"] if info else _last_conv_stage(body, head)
        else:
            from torchvision.models import get_model

            body = get_model(name, weights=None)
            _drop_aux_heads(body)
            head = _replace_linear(body, num_outputs)
            cam = _last_conv_stage(body, head)
        self.body = body
        self.head, self.cam_layer = f"body.{head}", f"body.{cam}"
        self.frozen: list[nn.Module] = []
        self.set_frozen(freeze)

    def check_input(self, shape: tuple[int, ...]) -> None:
        """One image of ``shape`` through the network (eval mode, no gradients), before any training: an input size
        the architecture cannot take (vit_b_16 below 224, inception_v3 at 32, alexnet at 16) is one line here."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                self(torch.zeros(1, *shape))
        except (RuntimeError, AssertionError, ValueError) as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise UserError(
                f"model.backbone {self.name} cannot take {shape[1]}x{shape[2]} images ({first}); set data.image_size "
                f"to its weights' size ({weights_info(self.name, LIBRARY_WEIGHTS).image_size}) or null, or choose "
                "another backbone"
            ) from None
        finally:
            self.train(was_training)

    @property
    def stages(self) -> list[str]:
        """The library model's top-level parts (what ``freeze`` can name), head included."""
        return [name for name, _ in self.body.named_children()]

    def set_frozen(self, freeze: str | Sequence[str]) -> None:
        """Fix ``freeze`` (see the class) and free everything else: weights without gradients, BatchNorm in eval."""
        if freeze == "none" or not freeze:
            names: list[str] = []
        elif freeze == "backbone":
            top = self.head.removeprefix("body.").split(".")[0]
            names = [s for s in self.stages if s != top]
        elif isinstance(freeze, str):
            raise UserError(f"model.freeze {freeze!r}: give backbone, none, or a list of stages of {self.stages}")
        else:
            names = list(freeze)
        modules = dict(self.body.named_modules())
        unknown = [n for n in names if n not in modules]
        if unknown:
            raise UserError(
                f"model.freeze: {self.name} has no stage(s) {', '.join(unknown)}; its stages are "
                f"{', '.join(self.stages)} (or dotted paths into them, e.g. layer4.1)"
            )
        self.requires_grad_(True)
        self.frozen = [modules[n] for n in names]
        for module in self.frozen:
            module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> BackboneNet:
        super().train(mode)
        for module in self.frozen:  # frozen BatchNorm keeps its running statistics (Lightning does not call .train)
            module.eval()
        return self

    def head_parameters(self) -> list[nn.Parameter]:
        """The output layer's parameters (the rest is the backbone's)."""
        return list(self.get_submodule(self.head).parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:  # fixed at construction: no branch on the data for tracing
            x = x.expand(-1, 3, -1, -1)
        return self.body(x)

    # -- pretrained weights ---------------------------------------------------------------------------------------
    def load_pretrained(self, weights: str | None) -> list[str]:
        """Load ``weights`` (see the module docstring) into everything but the head; return the loaded names."""
        if weights is None:
            return []
        source = read_weights_file(Path(weights)) if is_file(weights) else self._library_weights(weights)
        source = {_strip(k): v for k, v in source.items()}
        ours = self.body.state_dict()
        head = self.head.removeprefix("body.") + "."
        loaded = {k: v for k, v in source.items() if k in ours and not k.startswith(head) and v.shape == ours[k].shape}
        # torchvision's older released files have no BatchNorm counters; its loader accepts them (the counter only
        # matters for momentum=None), so a counter absent from the file keeps its fresh value here too
        missing = [
            k
            for k in ours
            if k not in loaded
            and not k.startswith(head)
            and not (k.endswith(".num_batches_tracked") and k not in source)
        ]
        extra = [k for k in source if k not in ours and not k.startswith(("normalize.", head))]
        if extra and not missing:
            raise UserError(
                f"model.weights {weights}: it holds {len(extra)} tensors that {self.name} has no place for, e.g. "
                f"{', '.join(extra[:3])}: is it the weights of another architecture? (model.backbone)"
            )
        if missing:
            wrong = [
                f"{k} ({list(source[k].shape)} in the file, {list(ours[k].shape)} here)" for k in missing if k in source
            ] or missing
            raise UserError(
                f"model.weights {weights}: {len(missing)} of {self.name}'s tensors are not in it or differ, e.g. "
                f"{', '.join(wrong[:3])}: is it the weights of another architecture? (model.backbone)"
            )
        self.body.load_state_dict(loaded, strict=False)
        log.info(
            "model.weights %s: loaded %d tensors into %s; the head (%s) is new",
            weights,
            len(loaded),
            self.name,
            self.head.removeprefix("body."),
        )
        return list(loaded)

    def _library_weights(self, weights: str) -> dict[str, torch.Tensor]:
        """The library's pretrained weights: from its cache, else downloaded into it (one line when that fails)."""
        if self.name.startswith(TIMM):
            try:
                return _timm().create_model(self.name.removeprefix(TIMM), pretrained=True).state_dict()
            except Exception as e:  # no internet: huggingface_hub's and urllib's errors differ by version
                raise UserError(
                    f"model.weights {weights}: cannot get timm's pretrained {self.name} ({str(e).strip()[:150]}); on "
                    "a machine with internet, download its weights file (model.safetensors or pytorch_model.bin from "
                    "the model's page) and give it: --model.weights /path/to/file"
                ) from None
        member = _torchvision_weights(self.name, weights)
        if member is None:
            raise UserError(f"model.weights {weights}: torchvision has no pretrained weights for {self.name}")
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
        if cached.is_file():  # what torch.hub would load (it checks the hash on download only)
            return read_weights_file(cached)
        try:
            return member.get_state_dict(progress=True, check_hash=True)
        except Exception as e:  # URLError, HTTPError, socket errors, a hash mismatch
            raise UserError(
                f"model.weights {weights}: cannot download {member.url} ({str(e).strip()[:120]}); download it on a "
                f"machine with internet and put it at {cached}, or give the file: --model.weights path/to/"
                f"{cached.name}"
            ) from None


def _strip(key: str) -> str:
    """A tensor name as the library model calls it: without a lit_nets checkpoint's or export's prefixes."""
    for prefix in ("state_dict.", "model.", "net.", "body."):
        key = key.removeprefix(prefix)
    return key


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a ``state_dict`` (``.pth``/``.pt``/``.bin``), ``.safetensors``, or a lit_nets
    checkpoint (its network's tensors). Read as data only (``weights_only``): a file cannot run code."""
    if not path.is_file():
        raise UserError(f"model.weights: no such file {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"model.weights {path}: not a weights file ({str(e).strip()[:120]})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = {k: v for k, v in data["state_dict"].items() if k.startswith("net.")}
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"model.weights {path}: not a state_dict (a dict of tensors)")
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise UserError(
            f"model.weights {path}: {len(odd)} of its keys are not tensor names (e.g. {odd[0]!r}); give a state_dict "
            "keyed by the model's tensor names, as model.state_dict() saves it"
        )
    return data
