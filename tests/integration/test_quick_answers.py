"""What needs neither torch nor Lightning answers without importing them (issue 43: ``--help`` took 6-13 s, Lightning's
import being 9.6 s of it): the top-level help, the version, a mistyped subcommand and torchrun's help. Proved by the
modules a fresh interpreter holds after the answer, not by a timing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
sys.argv = ["python -m lit_nets", *json.loads(sys.argv[1])]
from lit_nets.__main__ import run
code = 0
try:
    run()
except SystemExit as e:
    code = e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "lightning", "jsonargparse", "numpy", "pandas"})
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("argv", "code", "said"),
    [
        (["--help"], 0, "usage: python -m lit_nets SUBCOMMAND"),
        ([], 2, "usage: python -m lit_nets SUBCOMMAND"),
        (["--version"], 0, "lit_nets 0."),
        (["fitt"], 2, "error: unknown subcommand 'fitt'; did you mean fit?"),
        (["torchrun", "--help"], 0, "usage: python -m lit_nets torchrun [torchrun's options]"),
    ],
)
def test_answered_without_torch_or_lightning(argv: list[str], code: int, said: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, timeout=120, check=False
    )
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    assert result == {"code": code, "heavy": []}, proc.stderr[-2000:]
    assert said in proc.stdout + proc.stderr
