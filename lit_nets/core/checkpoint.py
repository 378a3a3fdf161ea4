"""The checkpoint contract: what a lit_nets checkpoint records about its model and how to rebuild it.

A checkpoint records the model's class (``_class_path``) and its arguments (``hyper_parameters``), the data's values
among them (classes, input shape, normalisation, a CSV schema). :func:`model_hparams` reads and checks them: an
argument this version of lit_nets does not know (a checkpoint of a newer release) or a missing one that the model
cannot do without ends with one line naming it, not a ``TypeError`` deep in a constructor or a model that
silently calls its classes ``0, 1, 2``. Weights of another shape end with one line naming the tensors that differ
(:func:`check_weights`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from lit_nets import __version__
from lit_nets.core import checkpoint_files, trust
from lit_nets.core.data.base import DATA_ARGS
from lit_nets.core.errors import UserError

# a model cannot be rebuilt without these (the first three of DATA_ARGS)
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


def classifier_class(hparams: dict[str, Any], path: str | Path, named: Iterable[str] = ()) -> type:
    """The model class a checkpoint's hyper-parameters name (``_class_path``, which the CLI records): a lit_nets
    class, or one of the user's that the checkpoint's run or the command named (:mod:`lit_nets.core.trust`).

    A checkpoint saved from Python (``Trainer.fit`` on a model built by hand) records no class: it is the model
    class whose arguments take every saved one and leave the fewest unsaved (a model saves all its arguments),
    read from the classes' signatures."""
    if "_class_path" not in hparams:
        saved = {RENAMED.get(k, k) for k in hparams if k not in PRIVATE}
        fits = [
            (len(set(init_parameters(cls)) - saved), cls.__name__, cls)
            for cls in classifiers()
            if saved <= set(init_parameters(cls))
        ]
        if not fits:
            raise UserError(f"{path} records no model class, and its arguments fit no lit_nets model")
        return min(fits)[2]
    class_path = str(hparams["_class_path"])
    found = lit_nets_class(class_path, path, "model class", named)
    from lit_nets.core.models.classifier import Classifier

    if not (isinstance(found, type) and issubclass(found, Classifier)):
        what = type(found).__name__ if not isinstance(found, type) else "class"
        raise UserError(
            f"{path}: its _class_path {class_path} names a {what} that is not a lit_nets model (a subclass of "
            "lit_nets.models.Classifier): the file was edited or not saved by lit_nets"
        )
    return found


def classifiers() -> tuple[type, ...]:
    """Every trainable model class (what a checkpoint can hold)."""
    from lit_nets.core.models.classifier import CNNClassifier, MLPClassifier
    from lit_nets.core.models.finetuning import BackboneClassifier

    return (BackboneClassifier, CNNClassifier, MLPClassifier)


# where the classes lived before 0.3 (lit_nets.models.classifier.CNNClassifier, ...): checkpoints saved then load
OLD_MODULES = {
    **{f"lit_nets.models.{m}": f"lit_nets.core.models.{m}" for m in ("classifier", "finetuning")},
    **{f"lit_nets.data.{m}": f"lit_nets.core.data.{m}" for m in ("base", "folder", "images", "mnist", "tabular")},
}


def lit_nets_class(class_path: str, path: str | Path, what: str = "class", named: Iterable[str] = ()) -> Any:
    """The class at ``class_path`` as a checkpoint records it: lit_nets' (also at the paths of earlier releases), or
    the user's when :mod:`lit_nets.core.trust` allows it (``what``: which class of the checkpoint, for messages)."""
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name.startswith("lit_nets."):
        return trust.import_class(class_path, what, path, named)
    try:
        found = getattr(importlib.import_module(OLD_MODULES.get(module_name, module_name)), class_name)
    except (ImportError, AttributeError):
        raise UserError(
            f"{path} holds a {module_name}.{class_name}, which this version of lit_nets "
            f"({__version__}) does not have; load it with the version that saved it"
        ) from None
    return found


def model_hparams(
    checkpoint: dict[str, Any], path: str | Path, named: Iterable[str] = ()
) -> tuple[type, dict[str, Any]]:
    """The model class of a loaded checkpoint and the arguments to build it with, checked against the class (and the
    network class it names, against :mod:`lit_nets.core.trust`, before anything imports it)."""
    saved = checkpoint.get("hyper_parameters")
    if saved is not None and not isinstance(saved, dict):
        raise UserError(
            f"{path}: its hyper_parameters are a {type(saved).__name__}, not the model's arguments by name: the file "
            "was edited or not saved by lit_nets"
        )
    hparams = dict(saved or {})
    if not hparams:
        raise UserError(f"{path} records no model arguments (hyper_parameters): it was not saved by lit_nets")
    cls = classifier_class(hparams, path, named)
    args = {k: v for k, v in hparams.items() if k not in PRIVATE}
    net = args.get("net")
    if net is not None:
        if not isinstance(net, dict) or not isinstance(net.get("class_path"), str):
            raise UserError(f"{path}: its model argument net is {net!r}, not a network's class_path and init_args")
        trust.check(net["class_path"], "network class", path, named)
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
    check_data_values(args, path)
    return cls, args


def check_data_values(args: dict[str, Any], path: str | Path) -> None:
    """The data's values a model is rebuilt with have the types they must have (an edited file's ``class_names: 5``
    would name the classes 0, 1, 2, ... or fail deep in a command)."""

    def bad(name: str, should: str) -> UserError:
        return UserError(
            f"{path}: the model argument {name} is {args[name]!r}, not {should}: the file was edited or not saved by "
            "lit_nets"
        )

    count = args.get("num_classes")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise bad("num_classes", "a whole number of classes")
    shape = args.get("input_shape")
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise bad("input_shape", "a list of sizes")
    names = args.get("class_names")
    if names is not None and (not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names)):
        raise bad("class_names", "a list of names")
    if names is not None and len(names) != count:
        raise bad("class_names", f"a list of num_classes ({count}) names")


def check_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """One line naming the tensors whose names or shapes differ between ``model`` and the checkpoint's weights."""
    ours = model.state_dict()
    problems = [
        f"{k}: {list(state_dict[k].shape)} in the checkpoint, {list(v.shape)} here"
        for k, v in ours.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    from lit_nets.core.models.calibration import DEFAULTS

    optional = set(DEFAULTS)  # a checkpoint from before calibration loads as uncalibrated
    problems += [f"{k}: not in the checkpoint" for k in ours if k not in state_dict and k not in optional]
    problems += [f"{k}: only in the checkpoint" for k in state_dict if k not in ours]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise UserError(
            f"{path} holds another architecture than this model ({shown}); use the model arguments it was trained with"
        )


@dataclass
class Checkpoint:
    """The checkpoint a command runs on: ``--ckpt_path`` in any spelling (a file, a run folder, ``best``,
    ``last``) resolved once and the file read once (as data, tensors memory-mapped). Everything a command needs of
    it comes from here: the model class and its arguments, the data's values (schema, classes, image size,
    statistics), the run, epoch and score. Lightning reads the file again for the weights of fit / test / predict:
    that is the only other read."""

    file: str
    state: dict[str, Any] = field(repr=False)
    given: str | None = None  # how the user named it
    trusted: bool = False  # --weights_only false: unpickled whole

    @classmethod
    def open(
        cls,
        given: str,
        root: Path = Path("lightning_logs"),
        subcommand: str = "tool",
        what: str = "--ckpt_path",
        trusted: bool = False,
    ) -> Checkpoint | None:
        """The record of the checkpoint ``given`` names (None: ``fit --ckpt_path last`` with nothing to resume)."""
        file = checkpoint_files.find(given, root, subcommand, what)
        if file is None:
            return None
        return cls(str(file), checkpoint_files.load(file, what, trusted=trusted), given, trusted)

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self.state.get("hyper_parameters") or {})

    @cached_property
    def named(self) -> set[str]:
        """The modules whose classes this checkpoint may make lit_nets import besides its own: those its run's
        config.yaml names; a command adds those it names itself (:mod:`lit_nets.core.trust`)."""
        return trust.named_by_run(self.file)

    @cached_property
    def model(self) -> tuple[type, dict[str, Any]]:
        """The model class and the arguments to rebuild it with, checked (:func:`model_hparams`)."""
        return model_hparams(self.state, self.file, self.named)

    def data_class(self) -> tuple[type, dict[str, Any]]:
        """The data module class the checkpoint was trained with and its saved arguments (less what is no argument:
        the class path, the data's description)."""
        args = self.data_args
        class_path = args.pop("_class_path", None)
        for key in [k for k in args if k.startswith("_")] + ["data_source", "schema_from"]:  # schema_from: < 0.3
            args.pop(key, None)
        if class_path is None:
            raise UserError(f"{self.file} records no data module")
        return lit_nets_class(str(class_path), self.file, "data module class", self.named), args

    @property
    def data_values(self) -> dict[str, Any]:
        """What the data gave the model when it was trained (:data:`DATA_ARGS`): the data modules of a command on
        this checkpoint get them (``TensorDataModule.use_trained``)."""
        return {k: v for k, v in self.hparams.items() if k in DATA_ARGS}

    @property
    def data_args(self) -> dict[str, Any]:
        """The data module's own arguments as saved (``_class_path`` included)."""
        return dict(self.state.get("datamodule_hyper_parameters") or {})

    @property
    def run(self) -> str | None:
        """The run folder's name, when the file sits in a run's ``checkpoints/``."""
        path = Path(self.file)
        return path.parent.parent.name if path.parent.name == "checkpoints" else None

    @property
    def epoch(self) -> int | None:
        return self.state.get("epoch")

    @property
    def best(self) -> dict[str, Any] | None:
        """The main ``ModelCheckpoint``'s state: its monitor, best score and best file."""
        return next(
            (
                v
                for k, v in (self.state.get("callbacks") or {}).items()
                if k.startswith("ModelCheckpoint") and isinstance(v, dict) and v.get("monitor")
            ),
            None,
        )

    def line(self) -> str:
        """The line a command prints for the checkpoint it runs on: the file, and which run, epoch and score it is
        (``best`` after a short debug run is a poor model: the line shows it before anything else happens)."""
        if self.trusted:
            return f"Checkpoint:   {self.file}"
        about = [f"run {self.run}"] if self.run else []
        if self.epoch is not None:
            about.append(f"epoch {self.epoch}")
        main = self.best
        if main is not None and main.get("best_model_score") is not None:
            score = f"{main['monitor']} {float(main['best_model_score']):.4f}"
            mine = Path(str(main.get("best_model_path"))).name == Path(self.file).name
            about.append(score if mine else f"the run's best {score}")
        meaning = {"best": "the best checkpoint of the newest run", "last": "the last checkpoint of the newest run"}
        given = str(self.given or "")
        what = meaning.get(given, "the run folder's last checkpoint" if given and Path(given).is_dir() else "")
        details = "; ".join(x for x in (what, ", ".join(about)) if x)
        return f"Checkpoint:   {self.file}" + (f"  ({details})" if details else "")
