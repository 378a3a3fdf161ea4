"""lit_nets' own import graph, read from the source (every import statement, also those inside functions): the
unit test of the layering rule uses it, and ``python tests/helpers/imports.py [PACKAGE_DIR]`` prints it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lit_nets"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name, for its ``__init__``)."""
    found = {}
    for file in sorted(package.rglob("*.py")):
        parts = list(file.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = file
    return found


def imports(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    known = modules(package)
    graph: dict[str, set[str]] = {}
    for name, file in known.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in known else node.module)
        graph[name] = {t for t in targets if t in known and t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import loops: strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> str:
    """Where a module sits: a wing (``train``, ``deploy``), a floor of ``core`` (``core.base`` for errors, logs,
    runtime and plots, then ``core.data``, ``core.models``, ``core.checkpoint``), or ``door`` for the rest
    (``__main__``, the public names in ``lit_nets.models`` / ``lit_nets.data``, the tools dispatcher)."""
    parts = module.split(".")
    if module == "lit_nets":
        return "base"
    if len(parts) > 1 and parts[1] in ("train", "deploy"):
        return parts[1]
    if len(parts) > 1 and parts[1] == "core":
        if len(parts) > 2 and parts[2] in ("data", "models"):
            return f"core.{parts[2]}"
        if len(parts) > 2 and parts[2].startswith("checkpoint"):
            return "core.checkpoint"
        return "core.base"
    return "door"


# what each layer may import: core imports neither wing (and each floor of it only those below), the wings never
# each other, nothing imports the door
CORE = ["base", "core.base", "core.data", "core.models", "core.checkpoint"]
ALLOWED = {floor: set(CORE[: i + 1]) for i, floor in enumerate(CORE)}
ALLOWED["train"] = {*CORE, "train"}
ALLOWED["deploy"] = {*CORE, "deploy"}
ALLOWED["door"] = {*CORE, "train", "deploy", "door"}


def breaches(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a layer that may not import the other: ``a -> b``."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) not in ALLOWED[layer(a)])


def lines(package: Path = PACKAGE) -> dict[str, int]:
    return {name: len(file.read_text().splitlines()) for name, file in modules(package).items()}


if __name__ == "__main__":
    package = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE
    graph = imports(package)
    sizes = lines(package)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports between them")
    for group in cycles(graph):
        print("loop:", " <-> ".join(group))
    for breach in breaches(graph):
        print("breach:", breach)
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    print("largest:", ", ".join(f"{n} {k}" for n, k in largest))
