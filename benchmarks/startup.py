"""How soon lit_nets answers what needs no training: ``--help``, ``--version``, a mistyped subcommand and
``torchrun --help`` answer without importing torch or Lightning; beside them, in the same run, ``python -c "import
lightning"`` (the import they once paid) and two subcommands' ``--help`` (each costs its parser's imports). Each
command runs ``--repeat`` times; the table shows the median wall time and its ratio to Lightning's import.

    python benchmarks/startup.py            # the table for docs/benchmarks.md
    python benchmarks/startup.py --repeat 9
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time

LIT_NETS = [sys.executable, "-m", "lit_nets"]
COMMANDS = {
    'python -c "import lightning"': [sys.executable, "-c", "import lightning"],
    "python -m lit_nets --help": [*LIT_NETS, "--help"],
    "python -m lit_nets --version": [*LIT_NETS, "--version"],
    "python -m lit_nets fitt (mistyped)": [*LIT_NETS, "fitt"],
    "python -m lit_nets torchrun --help": [*LIT_NETS, "torchrun", "--help"],
    "python -m lit_nets plot --help": [*LIT_NETS, "plot", "--help"],
    "python -m lit_nets fit --help": [*LIT_NETS, "fit", "--help"],
}


def seconds(command: list[str]) -> float:
    """The wall time of one run of ``command`` (its output discarded)."""
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Time every command, print the table, return the medians by command."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (default 5); the median is shown")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):  # interleaved, so a busy moment of the machine touches every command alike
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians['python -c "import lightning"']
    print(f"Start-up, median of {args.repeat} runs each ({platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}):\n")  # fmt: skip
    print("| command | wall time | vs `import lightning` |")
    print("|---|---:|---:|")
    for name, value in medians.items():
        print(f"| `{name}` | {value:.2f} s | {value / base:.2f}x |")
    return medians


if __name__ == "__main__":
    main()
