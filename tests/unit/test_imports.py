"""The house rule, read from the source: ``core`` imports neither wing (and each floor of it only the floors below:
base, data, models, the checkpoint contract), ``deploy`` never imports ``train`` nor ``train`` ``deploy``, nothing
imports the door (``__main__``, the tools dispatcher, the public names), and there is no import loop."""

from __future__ import annotations

from helpers.imports import breaches, cycles, imports, layer, lines


def test_no_module_imports_a_layer_above_or_beside_it() -> None:
    assert breaches(imports()) == []


def test_there_is_no_import_loop() -> None:
    assert cycles(imports()) == []


def test_the_checker_sees_a_loop_and_a_breach_where_there_is_one() -> None:
    """The rule's own check: a made-up graph with a loop and an upward import is caught."""
    graph = {
        "lit_nets.core.data.folder": {"lit_nets.core.checkpoint_files"},
        "lit_nets.core.checkpoint_files": {"lit_nets.train.cli"},
        "lit_nets.train.cli": {"lit_nets.core.data.folder", "lit_nets.deploy.inference"},
        "lit_nets.deploy.inference": set(),
    }
    assert cycles(graph) == [["lit_nets.core.checkpoint_files", "lit_nets.core.data.folder", "lit_nets.train.cli"]]
    assert breaches(graph) == [
        "lit_nets.core.checkpoint_files -> lit_nets.train.cli",
        "lit_nets.core.data.folder -> lit_nets.core.checkpoint_files",
        "lit_nets.train.cli -> lit_nets.deploy.inference",
    ]


def test_every_module_is_in_a_wing_or_the_door_and_none_is_over_450_lines() -> None:
    sizes = lines()
    assert {layer(m) for m in sizes} <= {
        "base",
        "core.base",
        "core.data",
        "core.models",
        "core.checkpoint",
        "train",
        "deploy",
        "door",
    }
    assert {m: n for m, n in sizes.items() if n > 450} == {}
