"""The subcommands that are not Trainer methods: ``plot``, ``explain``, ``export`` and ``serve``.

Each is a function whose signature and docstring are its command line, as a model's are for ``fit``: jsonargparse
builds the parser from them (types checked, the docstring's ``Args:`` as the help), so every subcommand's
``--help`` reads like ``fit --help``, and ``--config FILE`` (YAML, e.g. ``serve --config serve.yaml``) and
``--print_config`` work for each. A list argument (``--images a.png b.png``, ``plot RUN RUN``) also takes its values
one after another, as argparse tools do; in a config file it is a YAML list. A mistake in the arguments is one line
that names the option and the closest valid ones.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lit_nets.core.errors import UserError

# subcommand: (module, function); the function's first docstring paragraph is the subcommand's description
TOOLS = {
    "plot": ("lit_nets.core.plots", "plot_command"),
    "explain": ("lit_nets.deploy.explain", "explain_command"),
    "export": ("lit_nets.deploy.export", "export_command"),
    "serve": ("lit_nets.deploy.serve.server", "serve_command"),
    "track": ("lit_nets.train.track", "track_command"),
}
POSITIONAL = {"runs"}  # list arguments given without an option name (plot RUN [RUN ...])


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


def parser_for(name: str, prog: str) -> Any:
    """The jsonargparse parser of subcommand ``name``, built from its function."""
    from docstring_parser import parse
    from jsonargparse import ActionConfigFile, ArgumentParser

    function = tool_function(name)
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


def one_line(message: str, options: list[str], command: str) -> str:
    """jsonargparse's ``message`` as one line that names the option and the closest of ``options``."""
    first = message.strip().splitlines()[0] if message.strip() else "the arguments are not valid"
    listed = f"({command} --help lists them)"
    if m := re.match(r"unrecognized arguments: (\S+)", first):
        given = m.group(1).lstrip("-").split("=")[0]
        close = difflib.get_close_matches(given, options, n=3)
        hint = f"; did you mean {' or '.join('--' + c for c in close)}?" if close else ""
        return f"{command} has no option --{given}{hint} {listed}"
    if m := re.match(r'Parser key "(\w+)":', first):
        detail = " ".join(line.strip() for line in message.strip().splitlines()[1:] if line.strip())
        if typed := re.match(r"Expected a <class '(\w+)'>\. Got value: (.*)", detail):
            detail = f"expected {'an' if typed.group(1)[0] in 'aeiou' else 'a'} {typed.group(1)}, got {typed.group(2)}"
        return f"--{m.group(1)}: {detail or first}"
    if m := re.search(r"the following arguments are required: (.+)", message):
        needed = [name.strip() for name in m.group(1).split(",")]
        shown = ", ".join(
            name.upper().rstrip("S") if name in POSITIONAL else name if name.startswith("-") else f"--{name}"
            for name in needed
        )
        return f"{command} needs {shown} {listed}"
    return f"{first} {listed}"
