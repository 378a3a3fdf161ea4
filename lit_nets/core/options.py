"""One record of options per command, read by jsonargparse from a dataclass: its fields are the options (types and
defaults), its docstring's ``Args:`` their help. The tools (``serve``) take such a record whole; ``cv`` and ``tune``
take theirs and pass every other argument on to ``fit``. A mistake is one line that names the option and the
closest valid ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from typing import Any

from lit_nets.core.errors import UserError

POSITIONAL = {"runs"}  # list arguments given without an option name (plot RUN [RUN ...])


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


def parser_of(record: type, prog: str, description: str, epilog: str | None = None) -> Any:
    """A jsonargparse parser whose options are the dataclass ``record``'s fields (at the top level: ``--port``)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog=prog, description=description, epilog=epilog, exit_on_error=False)
    parser.add_class_arguments(record, fail_untyped=True, as_group=False)
    return parser


def read(record: type, argv: list[str], command: str, parser: Any) -> Any:
    """``record`` built from ``argv`` by ``parser`` (:func:`parser_of`); a mistake is one line."""
    from jsonargparse import ArgumentError

    try:
        config = parser.parse_args(argv)
    except ArgumentError as e:
        raise UserError(one_line(str(e), [f.name for f in dataclasses.fields(record)], command)) from None
    return record(**{f.name: config[f.name] for f in dataclasses.fields(record)})


def own_and_rest(record: type, argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` split into the options of ``record`` (``--name VALUE``, ``--name=VALUE``) and the rest, in order."""
    names = {f"--{f.name}" for f in dataclasses.fields(record)}
    own, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in names:
            own += argv[i : i + 2]
            i += 2
            continue
        (own if arg.split("=", 1)[0] in names else rest).append(arg)
        i += 1
    return own, rest


def command_options(record: type, argv: list[str], command: str, description: str, epilog: str) -> tuple[Any, list]:
    """The options of a command that passes every other argument on to ``fit`` (cv, tune): ``record`` built from
    its own, and the rest; ``--help`` prints the options and exits."""
    parser = parser_of(record, command, description, epilog)
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        sys.exit(0)
    own, rest = own_and_rest(record, argv)
    names = [f.name for f in dataclasses.fields(record)]
    for arg in rest:  # a misspelt option of the command's own (fit's have dots, or are not this close)
        given = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        close = difflib.get_close_matches(given, names, n=1, cutoff=0.8) if given and "." not in given else []
        if close:
            raise UserError(f"{command} has no option --{given}; did you mean --{close[0]}? ({command} --help)")
    return read(record, own, command, parser), rest
