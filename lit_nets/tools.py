"""The subcommands that are not Trainer methods: ``plot``, ``explain``, ``export`` and ``serve``.

Each is a function whose signature and docstring are its command line, as a model's are for ``fit``: jsonargparse
builds the parser from them (types checked, the docstring's ``Args:`` as the help), so every subcommand's
``--help`` reads like ``fit --help``, and ``--config FILE`` (YAML, e.g. ``serve --config serve.yaml``) and
``--print_config`` work for each. A list argument (``--images a.png b.png``, ``plot RUN RUN``) also takes its values
one after another, as argparse tools do; in a config file it is a YAML list. A mistake in the arguments is one line
that names the option and the closest valid ones.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lit_nets.core.errors import UserError
from lit_nets.core.options import POSITIONAL, one_line, parser_of, read

# subcommand: (module, function); the function's first docstring paragraph is the subcommand's description
TOOLS = {
    "plot": ("lit_nets.core.plots", "plot_command"),
    "explain": ("lit_nets.deploy.explain", "explain_command"),
    "export": ("lit_nets.deploy.export", "export_command"),
    "serve": ("lit_nets.deploy.serve.server", "serve_command"),
    "track": ("lit_nets.train.track", "track_command"),
}


def tool_function(name: str) -> Callable[..., Any]:
    """The function behind subcommand ``name`` (its module is imported only when the subcommand runs)."""
    module, function = TOOLS[name]
    return getattr(importlib.import_module(module), function)


def list_arguments(function: Callable[..., Any]) -> dict[str, tuple[Any, list[str] | None]]:
    """The function's list-typed arguments: name -> (item type, choices when the items are a Literal)."""
    hints = typing.get_type_hints(function)
    found = {}
    for name in inspect.signature(function).parameters:
        hint = hints.get(name)
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            choices = list(typing.get_args(item)) if typing.get_origin(item) is typing.Literal else None
            found[name] = (str if choices else item, choices)
    return found


def record_of(function: Callable[..., Any]) -> type | None:
    """The options record a tool takes whole (its one parameter, a dataclass: ``serve_command(options)``), if any."""
    import dataclasses

    hints = typing.get_type_hints(function)
    params = list(inspect.signature(function).parameters)
    record = hints.get(params[0]) if len(params) == 1 else None
    return record if dataclasses.is_dataclass(record) else None


def parser_for(name: str, prog: str) -> Any:
    """The jsonargparse parser of subcommand ``name``, built from its function (or its options record)."""
    from docstring_parser import parse
    from jsonargparse import ActionConfigFile, ArgumentParser

    function = tool_function(name)
    record = record_of(function)
    if record is not None:
        about = inspect.getdoc(function).split("\n\n")[0].replace("\n", " ")
        parser = parser_of(record, f"{prog} {name}", about)
        parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
        return parser
    doc = parse(function.__doc__ or "")
    helps = {p.arg_name: p.description for p in doc.params}
    about = inspect.getdoc(function).split("\n\n")[0].replace("\n", " ")
    parser = ArgumentParser(prog=f"{prog} {name}", description=about, exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    many = list_arguments(function)
    signature = inspect.signature(function)
    for arg, (item, choices) in many.items():  # jsonargparse alone would want --images '[a.png, b.png]'
        default = signature.parameters[arg].default
        required = default is inspect.Parameter.empty
        flag = arg if arg in POSITIONAL else f"--{arg}"
        extra: dict[str, Any] = {} if arg in POSITIONAL else {"required": required}
        if not required:
            extra["default"] = default
        if choices:
            extra["choices"] = choices
        else:
            extra["metavar"] = arg.upper().rstrip("S")  # RUN [RUN ...], IMAGE [IMAGE ...]
            if item is not Path:  # jsonargparse's help would say "type: <class 'Path'>": paths are text until run_tool
                extra["type"] = item
        parser.add_argument(flag, nargs="+", help=helps.get(arg), **extra)
    parser.add_function_arguments(function, skip=set(many), fail_untyped=True, as_group=False)
    return parser


def run_tool(name: str, argv: list[str], prog: str = "python -m lit_nets") -> None:
    """Parse ``argv`` for subcommand ``name`` and call its function."""
    from jsonargparse import ArgumentError

    parser = parser_for(name, prog)
    record = record_of(tool_function(name))
    if record is not None:
        tool_function(name)(read(record, argv, f"{prog} {name}", parser))
        return
    try:
        config = parser.parse_args(argv)
    except ArgumentError as e:
        options = list(inspect.signature(tool_function(name)).parameters)
        raise UserError(one_line(str(e), options, f"{prog} {name}")) from None
    arguments = {k: v for k, v in vars(config).items() if k != "config"}
    for arg, (item, _) in list_arguments(tool_function(name)).items():
        if item is Path and arguments.get(arg) is not None:
            arguments[arg] = [Path(value) for value in arguments[arg]]
    tool_function(name)(**arguments)
