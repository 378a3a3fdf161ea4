"""Runs of ``fit`` inside this process, one after another: what ``cv`` (a run per fold) and ``tune`` (a run per
trial) share. Each is the CLI as a user runs it, with a few arguments added (its folder, its fold)."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def refuse_folds_and_resuming(rest: list[str], command: str, why: str) -> None:
    """cv and tune start every run from scratch and set the folds themselves: ``--ckpt_path`` and ``--data.fold*``
    among fit's arguments end with one line that says ``why``."""
    from lit_nets.core.errors import UserError

    if any(a == "--ckpt_path" or a.startswith(("--ckpt_path=", "--data.fold", "--data.init_args.fold")) for a in rest):
        raise UserError(f"{command} {why}: leave --ckpt_path, --data.fold and --data.folds out")


def check_name(name: str, what: str) -> None:
    """A run name is one plain folder name: letters, digits, ``.``, ``_``, ``-`` (``w/`` or ``../../x`` would put
    the runs outside ``lightning_logs/``)."""
    import re

    from lit_nets.core.errors import UserError

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name) or ".." in name:
        raise UserError(f"{what} {name!r}: give a plain folder name (letters, digits, '.', '_', '-'; no '/' or '..')")


def config_name(rest: list[str]) -> str:
    """The name of the last ``--config`` file among fit's arguments that says what is trained (a ``model`` or
    ``data``; ``configs/mlp.yaml`` -> ``mlp``), so that an overlay (ddp, mlflow, early_stop) does not name the
    runs; else the last config's name, else run."""
    import yaml

    configs = [rest[i + 1] for i, a in enumerate(rest[:-1]) if a == "--config"]
    configs += [a.split("=", 1)[1] for a in rest if a.startswith("--config=")]

    def trains(path: str) -> bool:
        try:
            content = yaml.safe_load(Path(path).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):  # the CLI's parser says what is wrong with it
            return False
        return isinstance(content, dict) and bool({"model", "data"} & set(content))

    named = [c for c in configs if trains(c)] or configs
    return Path(named[-1]).stem if named else "run"


@contextlib.contextmanager
def bare_argv() -> Iterator[None]:
    """Lightning's CLI warns when it is given arguments while the process has some of its own (cv's, tune's)."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


class _Parsed(Exception):
    """Raised once fit's arguments are parsed, before anything is built (:func:`parse`)."""


def parse(args: list[str]) -> tuple[Any, Any]:
    """``fit ARGS`` parsed by the CLI's own parser, as fit parses it (a mistake is fit's one line), before any model,
    data or trainer is built: (the config as a jsonargparse Namespace, the parser, which dumps it)."""
    from lit_nets.train.cli import LitNetsCLI

    class ParseOnly(LitNetsCLI):
        def before_instantiate_classes(self) -> None:
            from lit_nets.train.cli import follow_the_task

            follow_the_task(self.config[self.subcommand] if self.subcommand else self.config)
            raise _Parsed(self)

    with bare_argv():
        try:
            ParseOnly(args=["fit", *args])
        except _Parsed as parsed:
            cli = parsed.args[0]
    return cli.config, cli.parser


def complete_config(args: list[str]) -> str:
    """The complete config that ``fit ARGS`` would run, as YAML (every default filled in): what ``best.yaml``
    holds."""
    import yaml

    values = config_of(args)
    values.pop("config", None)  # the files it came from: the YAML is the whole of it
    return yaml.safe_dump(values, sort_keys=False)


def config_of(args: list[str]) -> dict[str, Any]:
    """``fit ARGS``'s complete config as plain data (the parsed object, dumped by its parser)."""
    import yaml

    config, parser = parse(args)
    return yaml.safe_load(parser.dump(config, skip_none=False))["fit"]


def logs_folder(config: dict[str, Any], name: str) -> Path:
    """Where the TensorBoard logger of ``config`` puts runs named ``name``: the CLI's own rule
    (:func:`lit_nets.train.run_folders.logs_root`)."""
    from lit_nets.core.errors import UserError
    from lit_nets.train.run_folders import logger_args, logs_root

    init = logger_args(config)
    if init is None or "save_dir" not in init:
        raise UserError(
            "cv and tune put each run in a folder of the TensorBoard logger: leave trainer.logger as "
            "the default config has it"
        )
    return logs_root(config, name)


def fit(args: list[str], callbacks: list[Any] | None = None) -> Any:
    """``fit ARGS`` as the command line runs it, with ``callbacks`` added to the Trainer's; the finished CLI object
    (its trainer, model and data module). Garbage of the runs before it is collected first."""
    from lit_nets.train.cli import LitNetsCLI

    release_previous_run()
    with bare_argv():
        return LitNetsCLI(args=["fit", *args], callbacks=callbacks)


def release_previous_run() -> None:
    """Make the memory of earlier runs in this process collectable: every run freezes the heap when its start-up is
    over (``lit_nets.core.runtime.freeze_heap``: ``gc.freeze``), which would keep an earlier run's garbage for good."""
    gc.unfreeze()
    gc.collect()
