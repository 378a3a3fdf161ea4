"""A search space for ``tune``: a YAML file keyed by the dotted paths of the CLI's options.

    model.init_args.lr:      {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    model.init_args.hidden:  {type: categorical, choices: [[64, 32], [128, 64]]}
    data.init_args.batch_size: {type: int, low: 16, high: 128, step: 16}

``model.lr`` is short for ``model.init_args.lr`` (as on the command line). Each key is checked against the config the
search runs on (``fit --print_config`` of the same arguments), so a typo is one line that names the key and the
closest valid ones. Types: ``float`` and ``int`` (``low``, ``high``, optional ``log`` or ``step``) and
``categorical`` (``choices``: numbers, strings, booleans, or lists such as layer widths, which Optuna stores as
their JSON text).
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_nets.core.errors import UserError

FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}
SCALARS = (bool, int, float, str, type(None))
LARGEST = {"int": 2**53, "float": 1e300}  # ints beyond 2**53 are not exact as the floats Optuna stores them in


@dataclass(frozen=True)
class Param:
    """One searched option: its dotted path and its range or choices."""

    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def encoded(self) -> bool:
        """Whether the choices go to Optuna as JSON text (Optuna's categorical values are scalars only)."""
        return any(not isinstance(c, SCALARS) for c in self.choices)

    def suggest(self, trial: Any) -> Any:
        """The trial's value of this option (Optuna's ``suggest_*``), decoded to the value the CLI takes."""
        if self.kind == "float":
            return trial.suggest_float(self.path, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        if self.encoded:
            return json.loads(trial.suggest_categorical(self.path, [json.dumps(c) for c in self.choices]))
        return trial.suggest_categorical(self.path, list(self.choices))

    def stored(self, value: Any) -> Any:
        """``value`` as Optuna stores it (for enqueueing a trial)."""
        return json.dumps(value) if self.encoded else value

    def decode(self, stored: Any) -> Any:
        """A value as Optuna stored it, as the CLI takes it."""
        return json.loads(stored) if self.encoded and isinstance(stored, str) else stored

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (a config's own) lies in the range or among the choices."""
        if self.kind == "categorical":  # compared as JSON: 1 is not 1.0 nor true, (64, 32) is [64, 32]
            text = lambda v: json.dumps(list(v) if isinstance(v, tuple) else v)  # noqa: E731
            return text(value) in {text(c) for c in self.choices}
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and value != int(value):
            return False
        return self.low <= value <= self.high and (
            self.step is None or math.isclose((value - self.low) / self.step, round((value - self.low) / self.step))
        )

    def describe(self) -> str:
        """The range in a few words: ``model.init_args.lr float [0.0001, 0.1] log``."""
        if self.kind == "categorical":
            return f"{self.path} one of {', '.join(json.dumps(c) for c in self.choices)}"
        extra = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"{self.path} {self.kind} [{self.low:g}, {self.high:g}]{extra}"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"init_args": {"lr": 0.1}}}`` -> ``{"model.init_args.lr": 0.1}`` (lists are values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def load(file: str | Path, options: dict[str, Any]) -> list[Param]:
    """The search space in ``file``, each key checked against ``options`` (the flattened config it will change)."""
    import yaml

    file = Path(file)
    if not file.is_file():
        raise UserError(f"tune --space {file}: no such file (configs/search/ has examples)")
    try:
        space = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(
            f"{file}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at position {e.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as e:
        raise UserError(f"{file}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(space, dict) or not space:
        raise UserError(
            f"{file}: a search space is a mapping of option paths to ranges, e.g. "
            "'model.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}'"
        )
    params = [parse_param(file, canonical(file, str(key), options), spec) for key, spec in space.items()]
    paths = [p.path for p in params]
    if len(set(paths)) < len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise UserError(f"{file}: {twice} is given twice (once in its short form?)")
    return params


def canonical(file: Path, key: str, options: dict[str, Any]) -> str:
    """The full dotted path of ``key`` among ``options`` (``model.lr`` -> ``model.init_args.lr``)."""
    if key in options:
        return key
    head, _, rest = key.partition(".")
    if f"{head}.init_args.{rest}" in options:
        return f"{head}.init_args.{rest}"
    searchable = [k for k in options if not k.endswith(".class_path")]
    close = difflib.get_close_matches(key, searchable, n=3, cutoff=0.6)
    close = close or difflib.get_close_matches(f"{head}.init_args.{rest}", searchable, n=3, cutoff=0.6)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise UserError(
        f"{file}: {key} is not an option of this config{hint} (fit --print_config with the same "
        "arguments lists every option)"
    )


def parse_param(file: Path, path: str, spec: Any) -> Param:
    """One entry of the space, checked: a known type, its fields, a range that is not empty."""
    where = f"{file}: {path}"
    if not isinstance(spec, dict) or "type" not in spec:
        raise UserError(
            f"{where} needs a mapping with a type, e.g. {{type: float, low: 0.0, high: 0.5}} or "
            "{type: categorical, choices: [a, b]}"
        )
    kind = spec["type"]
    if kind not in FIELDS:
        raise UserError(f"{where}: type {kind!r} is not one of {', '.join(FIELDS)}")
    unknown = sorted(set(spec) - FIELDS[kind] - {"type"})
    if unknown:
        raise UserError(
            f"{where}: a {kind} range has no field {unknown[0]!r} (its fields: {', '.join(sorted(FIELDS[kind]))})"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}: choices must be a non-empty list")
        if len({json.dumps(c) for c in choices}) < len(choices):
            raise UserError(f"{where}: a choice is listed twice")
        return Param(path, kind, choices=tuple(choices))
    number = int if kind == "int" else (int, float)
    for field in ("low", "high"):
        value = spec.get(field)
        if not isinstance(value, number) or isinstance(value, bool):
            raise UserError(f"{where}: {field} must be {'an int' if kind == 'int' else 'a number'}, got {value!r}")
        if not math.isfinite(value) or abs(value) > LARGEST[kind]:
            raise UserError(
                f"{where}: {field} {value!r} is not a finite {kind} of at most {LARGEST[kind]:.3g} in "
                "size; give the range's real bounds"
            )
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):  # "false" in quotes would be true
        raise UserError(f"{where}: log must be true or false (without quotes), got {log!r}")
    if not low < high:
        raise UserError(f"{where}: the range [{low}, {high}] is empty (low must be below high)")
    if log and low <= 0:
        raise UserError(f"{where}: a log range needs low > 0, got {low}")
    if step is not None and (log or not isinstance(step, number) or isinstance(step, bool) or not step > 0):
        raise UserError(f"{where}: step must be a positive number, and not given with log: true")
    if step is not None and step > high - low:
        raise UserError(f"{where}: step {step} is larger than the range [{low}, {high}]: it would allow low only")
    return Param(path, kind, float(low), float(high), log, None if step is None else float(step))


def as_args(values: dict[str, Any]) -> list[str]:
    """``{"model.init_args.lr": 0.01}`` as the command line's ``--model.init_args.lr 0.01`` (strings raw, for the
    CLI's choices; everything else as JSON, which the CLI reads as YAML)."""
    args: list[str] = []
    for path, value in values.items():
        args += [f"--{path}", value if isinstance(value, str) else json.dumps(value)]
    return args


def shown(value: Any) -> str:
    """A value for the progress line: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if not isinstance(value, str) else value
