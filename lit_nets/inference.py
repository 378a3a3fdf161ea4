"""A trained classifier out of its checkpoint, and what every use of it shares: the one way ``test``, ``predict``,
``export``, ``explain``, ``serve`` and the benchmark rebuild a model, the deployable module (normalisation then
network, raw inputs in, logits out), probabilities from logits and the top-k classes.

A checkpoint records the model's class (``_class_path``) and its arguments (``hyper_parameters``), the data's values
among them (classes, input shape, normalisation, a CSV schema). :func:`model_hparams` reads and checks them: an
argument this version of lit_nets does not know (a checkpoint of a newer release) or a missing one that the model
cannot do without ends with one line naming it, not a ``TypeError`` deep in a constructor or a model that
silently calls its classes ``0, 1, 2``. :func:`load_classifier` builds the model from them and loads its weights;
weights of another shape end with one line naming the tensors that differ.

It builds the class directly rather than through Lightning's ``load_from_checkpoint``, which re-parses the
arguments with jsonargparse and took minutes for a CSV schema of 5,000 columns.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_nets import __version__, checkpoints
from lit_nets.errors import UserError

# what the data gives a model (the CLI links these); a model cannot be rebuilt without the first three
DATA_ARGS = ("num_classes", "input_shape", "mean", "std", "class_names", "class_weights", "schema")
REQUIRED = ("num_classes", "input_shape", "class_names")
PRIVATE = ("_class_path", "_instantiator")
# model arguments renamed in a release: checkpoints saved before it still load (the config files say the new name)
RENAMED = {"channels": "conv_channels"}  # 0.2: the CNN's conv widths; the data's image channels are image_channels


def init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The arguments ``cls(...)`` takes, following ``**kwargs`` up the class hierarchy (CNNClassifier's own, then
    Classifier's)."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        signature = inspect.signature(klass.__init__)
        for name, param in signature.parameters.items():
            if name != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                params.setdefault(name, param)
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            break
    return params


def classifier_class(hparams: dict[str, Any], path: str | Path) -> type:
    """The lit_nets model class a checkpoint's hyper-parameters name (``_class_path``, which the CLI records).

    A checkpoint saved from Python (``Trainer.fit`` on a model built by hand) records no class: it is the model
    class whose arguments take every saved one and leave the fewest unsaved (a model saves all its arguments),
    read from the classes' signatures."""
    if "_class_path" not in hparams:
        from lit_nets import models

        saved = {RENAMED.get(k, k) for k in hparams if k not in PRIVATE}
        fits = [
            (len(set(init_parameters(cls)) - saved), cls.__name__, cls)
            for cls in models.CLASSIFIERS
            if saved <= set(init_parameters(cls))
        ]
        if not fits:
            raise UserError(f"{path} records no model class, and its arguments fit no lit_nets model")
        return min(fits)[2]
    module_name, _, class_name = str(hparams["_class_path"]).rpartition(".")
    if not module_name.startswith("lit_nets."):
        raise UserError(f"{path} holds a {module_name}.{class_name}, not a lit_nets model")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise UserError(
            f"{path} holds a {module_name}.{class_name}, which this version of lit_nets "
            f"({__version__}) does not have; load it with the version that saved it"
        ) from None


def model_hparams(checkpoint: dict[str, Any], path: str | Path) -> tuple[type, dict[str, Any]]:
    """The model class of a loaded checkpoint and the arguments to build it with, checked against the class."""
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    if not hparams:
        raise UserError(f"{path} records no model arguments (hyper_parameters): it was not saved by lit_nets")
    cls = classifier_class(hparams, path)
    args = {k: v for k, v in hparams.items() if k not in PRIVATE}
    saved_by = checkpoint.get("lit_nets_version", "an unknown version")
    known = init_parameters(cls)
    for old, new in RENAMED.items():
        if old in args and old not in known and new in known and new not in args:
            args[new] = args.pop(old)
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise UserError(
            f"{path}: {cls.__name__} has no argument(s) {', '.join(map(repr, unknown))} in this version of lit_nets "
            f"({__version__}; the checkpoint was saved by lit_nets {saved_by}): load it with the version that saved "
            "it, or retrain"
        )
    needed = list(REQUIRED)
    if "normalize.mean" in checkpoint.get("state_dict", {}):
        needed += ["mean", "std"]  # the weights hold a normalisation, so the arguments must say what it is
    missing = [name for name in needed if name not in args]  # absent, not None: None is a value the user gave
    if missing:
        raise UserError(
            f"{path}: the checkpoint lacks the model argument(s) {', '.join(map(repr, missing))} (saved by lit_nets "
            f"{saved_by}, this is {__version__}); without them the model would be rebuilt wrongly. Retrain, or save "
            "it again with them"
        )
    return cls, args


def check_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """One line naming the tensors whose names or shapes differ between ``model`` and the checkpoint's weights."""
    ours = model.state_dict()
    problems = [
        f"{k}: {list(state_dict[k].shape)} in the checkpoint, {list(v.shape)} here"
        for k, v in ours.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems += [f"{k}: not in the checkpoint" for k in ours if k not in state_dict]
    problems += [f"{k}: only in the checkpoint" for k in state_dict if k not in ours]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise UserError(
            f"{path} holds another architecture than this model ({shown}); use the model arguments it was trained with"
        )


def load_classifier(ckpt_path: str | Path, device: str = "cpu") -> Any:
    """The trained classifier of a checkpoint file, in eval mode on ``device``."""
    checkpoint = checkpoints.load(ckpt_path)
    cls, args = model_hparams(checkpoint, ckpt_path)
    model = cls(**{**args, "init_from": None})  # the weights come from the checkpoint
    state_dict = checkpoint["state_dict"]
    check_weights(model, state_dict, ckpt_path)
    model.load_state_dict(state_dict)
    return model.to(device).eval()


def checkpoint_data(ckpt_path: str | Path, stage: str, purpose: str) -> Any:
    """The data module a checkpoint was trained with, rebuilt from its saved arguments and set up for ``stage``
    (a CSV schema from the checkpoint itself; MNIST never downloaded: its sample is real data too). ``purpose``
    names what the data is for in the error when it cannot be loaded (its files moved, ...)."""
    import logging

    args = dict(checkpoints.load(ckpt_path).get("datamodule_hyper_parameters") or {})
    class_path = args.pop("_class_path", None)
    for key in [k for k in args if k.startswith("_")] + ["data_source"]:
        args.pop(key, None)
    if class_path is None:
        raise UserError(f"{ckpt_path} records no data module, so there is no data for {purpose}")
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    if "schema_from" in args:
        args["schema_from"] = str(ckpt_path)
    if class_name == "MNISTDataModule":
        args["download"] = False  # never fetch for a check: the sample fallback is real data too
    data_log = logging.getLogger("lit_nets.data")
    level, data_log.level = data_log.level, logging.ERROR  # nothing is trained here: no banner about the data
    try:
        dm = cls(**args)
        dm.setup(stage)
    except UserError as e:
        raise UserError(f"cannot load the checkpoint's data for {purpose}: {e}") from None
    finally:
        data_log.setLevel(level)
    return dm


class Deployable(nn.Module):
    """A trained classifier as it is deployed: its normalisation, then its network; raw inputs in, logits out. It is
    what ``export`` writes and ``serve`` runs, and ``Classifier.forward`` is this ``forward`` (a classifier holds the
    same two modules)."""

    def __init__(self, normalize: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.normalize, self.net = normalize, net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    @classmethod
    def of(cls, model: Any) -> Deployable:
        """The deployable part of a trained classifier (shares its weights), in eval mode."""
        return cls(model.normalize, model.net).eval()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """A probability per class, shape (batch, classes), from logits of either loss: one logit is a binary (BCE)
    model's, the probability of the second class."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return logits.softmax(dim=1)


def top_k(probs: torch.Tensor, names: list[str], k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` likeliest classes of each row of ``probs`` (at most all of them), best first, as (name,
    probability) pairs."""
    top = probs.topk(min(k, len(names)), dim=1)
    return [
        [(names[c], p) for c, p in zip(cs, ps, strict=True)]
        for cs, ps in zip(top.indices.tolist(), top.values.tolist(), strict=True)
    ]
