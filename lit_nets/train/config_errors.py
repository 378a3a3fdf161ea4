"""A config or command-line mistake as one line: the key, where it came from, and the closest valid keys.

jsonargparse reports a misspelt key inside ``model:`` as a nested "Does not validate against any of the Union
subtypes" report after ~80 lines of usage text. The CLI parses with ``exit_on_error=False`` and hands the message
here, which reads the key, the class and the value out of it (jsonargparse 4's wording, matched by the patterns
below; anything else keeps its first line) and says it the way a user can act on, e.g.::

    error: my.yaml: model.init_args.lrr: CNNClassifier has no argument 'lrr'; did you mean lr? (python -m lit_nets
    fit --model.help CNNClassifier lists them all)

Written by hand: jsonargparse has no such short form.
"""

from __future__ import annotations

import difflib
import importlib
import re
from pathlib import Path
from typing import Any

# the CLI's sections that are one class each (their arguments are that class's), besides model and data
SECTIONS = {
    "trainer": "lightning.pytorch.Trainer",
    "checkpoint": "lightning.pytorch.callbacks.ModelCheckpoint",
    "lr_monitor": "lit_nets.train.callbacks.LearningRateLogger",
    "prediction_writer": "lit_nets.train.callbacks.PredictionWriter",
    "figures": "lit_nets.train.callbacks.FigureLogger",
}
TOP_LEVEL = [
    *SECTIONS,
    "model",
    "data",
    "seed_everything",
    "ckpt_path",
    "weights_only",
    "test_after_fit",
    "config",
    "print_config",
]
PROBLEM = re.compile(r"Problem with given class_path '([\w.]+)':\s*\n\s*(.+?)\s*$", re.M)
UNKNOWN = re.compile(r"Option '(\w+)' is not accepted")
BAD_VALUE = re.compile(r'Parser key "(\w+)":\s*\n\s*(.+?)\s*$', re.M)


# arguments renamed in a release, by old name: the new names (the one the class takes is named in the message)
RENAMED = {"channels": ("conv_channels", "image_channels")}  # 0.2: one word had meant two things
# arguments removed in a release: what does their work now
REMOVED = {"schema_from": "removed in lit_nets 0.3: --ckpt_path hands the data module the checkpoint's schema"}


def one_line(message: str, args: list[str]) -> str:
    """The error message of jsonargparse ``message`` for the command line ``args``, as one line."""
    first = message.strip().splitlines()[0] if message.strip() else "the arguments are not valid"
    subcommand = next((a for a in args if a in ("fit", "validate", "test", "predict")), "fit")
    if m := re.match(r"unrecognized arguments: (\S+)", first):
        return unknown_key(m.group(1).lstrip("-"), None, args, subcommand)
    if m := re.match(r"Subcommand '\w+' does not accept option '([\w.]+)'", first):
        return unknown_key(m.group(1), None, args, subcommand)
    if m := re.match(r'Parser key "config": (.+)', first):
        return f"--config: {m.group(1)}"
    if not (m := re.match(r'Parser key "([\w.]+)":', first)):
        return first
    section = m.group(1)
    if problem := PROBLEM.search(message):
        class_path, what = problem.groups()
        if unknown := UNKNOWN.search(what):
            return unknown_key(f"{section}.{unknown.group(1)}", class_path, args, subcommand)
        if bad := BAD_VALUE.search(message, problem.start(2)):
            return bad_value(f"{section}.{bad.group(1)}", bad.group(2), args)
        if "has no attribute" in what or "not accessible" in message:
            return unknown_class(section, class_path, args)
        return f"{section}: {class_path}: {what}"
    given = re.search(r"^\s*Given value: (.*)$", message, re.M)
    if given and "Expected a " in message:
        return bad_value(section, message, args, value=given.group(1))
    return f"{section}: {first.split(':', 1)[-1].strip() or message.strip()}"


def unknown_key(dotted: str, class_path: str | None, args: list[str], subcommand: str) -> str:
    """A key no class or section takes: where it was written and the closest valid ones."""
    parts = [p for p in dotted.split(".") if p != "init_args"]
    name, section = parts[-1], parts[0]
    owner = class_path or (SECTIONS.get(section) if len(parts) > 1 else None)
    if owner is None:
        options, said = TOP_LEVEL, f"there is no option {name!r}"
        name = section if len(parts) > 1 else name
        said = f"there is no section {section!r}" if len(parts) > 1 else said
    else:
        options = list(arguments_of(owner))
        said = f"{owner.rpartition('.')[2]} has no argument {name!r}"
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.6)
    renamed = [new for new in RENAMED.get(name, ()) if new in options]
    if name in REMOVED:
        return f"{where(parts, None, args)}{dotted}: {REMOVED[name]}"
    if renamed:
        said, close = f"{said} (lit_nets 0.2 renamed it {renamed[0]})", renamed
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; its options: {', '.join(options[:12])}"
    if section in ("model", "data") and class_path:
        hint += f" (python -m lit_nets {subcommand} --{section}.help {class_path.rpartition('.')[2]} lists them all)"
    else:
        hint += f" (python -m lit_nets {subcommand} --help lists them all)"
    return f"{where(parts, None, args)}{dotted}: {said}{hint}"


def bad_value(dotted: str, why: str, args: list[str], value: str | None = None) -> str:
    """A value of the wrong type or outside a list of choices (``why``: jsonargparse's "Expected a ...", and the
    value unless given), with the choices and the closest one."""
    if value is None:
        got = re.search(r"Got value: (.*)$", why, re.M)
        value = got.group(1).strip() if got else ""
    choices = re.search(r"Literal\[(.*?)\]", why)
    parts = [p for p in dotted.split(".") if p != "init_args"]
    if choices:
        options = [c.strip().strip("'\"") for c in choices.group(1).split(",")]
        close = difflib.get_close_matches(value, options, n=1)
        text = f"{value!r} is not one of {', '.join(options)}" + (f"; did you mean {close[0]}?" if close else "")
    else:
        kinds = [_type_words(t) for t in re.findall(r"Expected a (<class '[\w.]+'>)", why)]
        kinds = " or ".join(k for k in dict.fromkeys(kinds) if k != "NoneType") or "valid value"
        text = f"{value!r} is not {_article(kinds)} {kinds}"
    return f"{where(parts, value, args)}{dotted}: {text}"


def unknown_class(section: str, class_path: str, args: list[str]) -> str:
    """A class path that names no class: where lit_nets 0.3 moved it, else the closest of lit_nets' own."""
    moved = moved_class(class_path)
    if moved:
        return f"{where([section], class_path, args)}{section}: {class_path} was renamed in lit_nets 0.3: use {moved}"
    module = {"model": "lit_nets.models", "data": "lit_nets.data"}.get(section)
    names = list(getattr(importlib.import_module(module), "__all__", [])) if module else []
    close = difflib.get_close_matches(class_path.rpartition(".")[2], names, n=1)
    hint = f"; did you mean {module}.{close[0]}?" if close else ""
    return f"{where([section], class_path, args)}{section}: there is no class {class_path}{hint}"


# where the public classes were before lit_nets 0.3 put the code in wings (core, train, deploy)
OLD_PACKAGES = {"lit_nets.models": "lit_nets.models", "lit_nets.data": "lit_nets.data"}
OLD_MODULES = {"lit_nets.callbacks": "lit_nets.train.callbacks"}


def moved_class(class_path: str) -> str | None:
    """The 0.3 path of a class path of an earlier release (``lit_nets.models.classifier.CNNClassifier``,
    ``lit_nets.callbacks.PeriodicCheckpoint``), None when it is not one."""
    module, _, name = class_path.rpartition(".")
    package = module.rpartition(".")[0]
    new = OLD_MODULES.get(module) or (OLD_PACKAGES.get(package) if package else None)
    if new is None or not hasattr(importlib.import_module(new), name):
        return None
    return f"{new}.{name}"


def arguments_of(class_path: str) -> list[str]:
    """The argument names of the class at ``class_path`` (following ``**kwargs`` to its bases)."""
    from lit_nets.core.checkpoint import init_parameters

    module, _, name = class_path.rpartition(".")
    try:
        return list(init_parameters(getattr(importlib.import_module(module), name)))
    except (ImportError, AttributeError, ValueError):
        return []


def where(parts: list[str], value: Any, args: list[str]) -> str:
    """``"FILE: "`` for the last ``--config`` file that sets the key (to ``value``, when given), ``""`` when it came
    from the command line or cannot be told."""
    for path in reversed(config_files(args)):
        try:
            import yaml

            document = yaml.safe_load(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if _holds(document, parts, value):
            return f"{path}: "
    return ""


def config_files(args: list[str]) -> list[str]:
    """The files of ``--config`` / ``-c`` in ``args``, in order."""
    files = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            files.append(args[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def _holds(document: Any, parts: list[str], value: Any) -> bool:
    """Whether the YAML ``document`` sets the key ``parts`` (its section, then the name anywhere under it)."""
    if not isinstance(document, dict) or parts[0] not in document:
        return False
    if len(parts) == 1:
        return value is None or str(document[parts[0]]) == str(value)
    return _somewhere(document[parts[0]], parts[-1], value)


def _somewhere(node: Any, name: str, value: Any) -> bool:
    if isinstance(node, dict):
        if name in node and (value is None or str(node[name]) == str(value)):
            return True
        return any(_somewhere(v, name, value) for v in node.values())
    if isinstance(node, list):
        return any(_somewhere(v, name, value) for v in node)
    return False


def _type_words(text: str) -> str:
    """``<class 'float'>`` as ``float``."""
    m = re.match(r"<class '([\w.]+)'>", text.strip())
    return m.group(1).rpartition(".")[2] if m else text.strip()


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
