"""Which modules a checkpoint may make lit_nets import: the threat model of a checkpoint that names code.

A checkpoint is read as data (``torch.load(weights_only=True)``: tensors and plain values, never code), but it
names classes: the model's (``_class_path``), its network's (``net.class_path``) and its data module's. Importing a
module runs its code, so a name in a file is not enough to import it. lit_nets imports, for a checkpoint:

- its own classes (``lit_nets.*``);
- the classes its run folder's ``config.yaml`` names (``RUN/config.yaml`` beside ``RUN/checkpoints/``): the run
  the user trained, whose config named them; a run folder is trusted as a whole, as it came;
- the classes the command itself names (``--config``, ``--model``, ``--data``): the user named them;
- the modules (and their submodules) listed in ``LIT_NETS_TRUST`` (comma-separated), for a checkpoint file that
  came alone from elsewhere.

Anything else ends with one line that names the module and these three ways, before the module is imported.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lit_nets.core.errors import UserError

VARIABLE = "LIT_NETS_TRUST"


def module_of(class_path: str) -> str:
    """``mypkg.nets`` of ``mypkg.nets.TinyCNN``."""
    return class_path.rpartition(".")[0]


def class_paths(value: Any) -> set[str]:
    """Every ``class_path`` a config (its YAML as plain data) names, at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("class_path", "_class_path") and isinstance(item, str):
                found.add(item)
            else:
                found |= class_paths(item)
    elif isinstance(value, list):
        for item in value:
            found |= class_paths(item)
    return found


def named_by_run(checkpoint_file: str | Path) -> set[str]:
    """The modules of the classes the checkpoint's run folder's config.yaml names (none for a file alone)."""
    import yaml

    file = Path(checkpoint_file)
    config = file.parent.parent / "config.yaml"
    if file.parent.name != "checkpoints" or not config.is_file():
        return set()
    try:
        return {module_of(p) for p in class_paths(yaml.safe_load(config.read_text()))}
    except (OSError, yaml.YAMLError):
        return set()


def listed() -> list[str]:
    """The modules ``LIT_NETS_TRUST`` lists."""
    return [m.strip() for m in os.environ.get(VARIABLE, "").split(",") if m.strip()]


def trusted(module: str, named: Iterable[str] = ()) -> bool:
    """Whether lit_nets may import ``module`` for a checkpoint whose run or command named ``named``."""
    if module == "lit_nets" or module.startswith("lit_nets."):
        return True
    if module in set(named):
        return True
    return any(module == m or module.startswith(m + ".") for m in listed())


def check(class_path: str, what: str, file: str | Path, named: Iterable[str] = ()) -> None:
    """One line, before any import, when ``class_path`` (``what`` of checkpoint ``file``) is not to be imported."""
    module = module_of(class_path)
    if not module:
        raise UserError(f"{file}: its {what} {class_path!r} is not a class path (module.Class)")
    if not trusted(module, named):
        top = module.split(".")[0]
        raise UserError(
            f"{file}: its {what} is {class_path}, from the module {module}, which nothing told this command to "
            f"trust (importing a module runs its code). Use it from the run folder it was trained in (its "
            f"config.yaml names the class), name the class in this command's --config, or trust the module: "
            f"{VARIABLE}={top}"
        )


def import_class(class_path: str, what: str, file: str | Path, named: Iterable[str] = (), renamed: Any = None) -> Any:
    """The object at ``class_path``, imported once :func:`check` allows it (``renamed``: module paths of earlier
    lit_nets releases and where they live now)."""
    check(class_path, what, file, named)
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module((renamed or {}).get(module, module)), name)
    except ImportError as e:
        if module.startswith("lit_nets."):
            raise
        raise UserError(
            f"{file}: its {what} {class_path} cannot be imported ({e}): is its package on the path?"
        ) from None
    except AttributeError:
        if module.startswith("lit_nets."):
            raise
        raise UserError(f"{file}: its {what} {class_path}: the module {module} has no {name}") from None
