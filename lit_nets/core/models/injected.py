"""A network of the user's given to the base classifier (``model.init_args.net``), as the Lightning CLI injects
dependencies: a ``torch.nn.Module`` named by ``class_path`` and ``init_args`` in a config, built by the CLI with the
data's ``num_classes`` and ``input_shape`` filled into the arguments of those names when it has them.

The checkpoint records the network as that pair, plain data (:func:`spec_of`), so that a command on the checkpoint
rebuilds it (:func:`build`), once :mod:`lit_nets.core.trust` allows its module.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from lit_nets.core.errors import UserError, first_line


@runtime_checkable
class Network(Protocol):
    """What the classifier's ``net`` is: a ``torch.nn.Module`` that maps a batch of inputs to logits. Typed as a
    protocol of its ``__call__`` so that jsonargparse accepts any module of the user's without listing every module
    class it knows in the help (it lists a base class's subclasses: torchvision's, timm's); the classifier checks
    that what it gets is a module."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


FILLED = ("num_classes", "input_shape")  # the data's values a network gets under these argument names
SPEC = "lit_nets_spec"  # the attribute the CLI's instantiator leaves on a network it builds


def record(class_type: type, *args: Any, **kwargs: Any) -> Any:
    """A jsonargparse instantiator for networks: build ``class_type(*args, **kwargs)`` and keep its class path and
    arguments on it (:data:`SPEC`), which the classifier saves in its hyper-parameters."""
    net = class_type(*args, **kwargs)
    if args:
        names = list(inspect.signature(class_type).parameters)
        kwargs = {**dict(zip(names, args, strict=False)), **kwargs}
    try:
        init_args = json.loads(json.dumps(kwargs, default=spec_of))
    except (TypeError, ValueError):  # an argument that is an object lit_nets cannot record
        init_args = None
    setattr(net, SPEC, {"class_path": f"{class_type.__module__}.{class_type.__qualname__}", "init_args": init_args})
    return net


def spec_of(net: Any) -> dict[str, Any]:
    """A network's class path and arguments as plain data: as the CLI recorded them, or as given (a dict)."""
    if isinstance(net, dict):
        if not isinstance(net.get("class_path"), str):
            raise UserError(f"model.net {net!r}: give class_path (module.Class) and init_args")
        return {"class_path": net["class_path"], "init_args": dict(net.get("init_args") or {})}
    recorded = getattr(net, SPEC, None)
    if recorded is not None:
        return recorded
    if isinstance(net, nn.Module):  # built in Python: its class, without arguments (rebuilt with the data's only)
        return {"class_path": f"{type(net).__module__}.{type(net).__qualname__}", "init_args": None}
    raise TypeError(f"{net!r} is not a network")


def build(spec: dict[str, Any], values: dict[str, Any]) -> nn.Module:
    """The network of a recorded spec, with the data's ``values`` (:data:`FILLED`) where its arguments take them.
    The module has been checked by :mod:`lit_nets.core.trust` (the checkpoint's record) before this imports it."""
    module, _, name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UserError(f"model.net: {spec['class_path']} is not a torch.nn.Module")
    given = spec.get("init_args")
    if given is None and not takes_only_data(cls):
        raise UserError(
            f"model.net: the checkpoint records the network {spec['class_path']} without its arguments (it was built "
            "in Python): give the classifier the network's class_path and init_args instead of a built network"
        )
    args = dict(given or {})
    params = inspect.signature(cls).parameters
    for key in FILLED:
        if key in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            args[key] = list(values[key]) if key == "input_shape" else values[key]
    try:
        return cls(**args)
    except TypeError as e:
        raise UserError(f"model.net: {spec['class_path']}({', '.join(args)}) failed: {first_line(e)}") from None


def takes_only_data(cls: type) -> bool:
    """Whether ``cls`` needs no argument but the data's."""
    required = [
        n
        for n, p in inspect.signature(cls).parameters.items()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return set(required) <= set(FILLED)


def check_outputs(net: nn.Module, input_shape: tuple[int, ...], outputs: int, name: str) -> None:
    """Run two zero inputs through a network from outside lit_nets once: a shape it cannot take, or another number
    of outputs than the task's, is one line now rather than a traceback at the first step (it also sizes lazy
    layers before the optimiser sees them)."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *input_shape))
    except Exception as e:
        raise UserError(
            f"model: {name} cannot take this data's inputs (a batch of shape {[2, *input_shape]}): {first_line(e)}"
        ) from None
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != outputs:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(
            f"model: {name} gives {shape} for a batch of 2; this task needs (batch, {outputs}) logits"
            + (" (loss bce: one logit)" if outputs == 1 else "")
        )
