"""The same fit alone and beside one busy process: training rows/s with lit_nets' thread rule (the CPU share,
:mod:`lit_nets.core.threads`) and with torch's default (a thread per core, ``--threads`` set to the core count).

    python benchmarks/threads.py                       # configs/insteval.yaml: 73,421 real ratings
    python benchmarks/threads.py --config configs/mlp.yaml --epochs 20
    python benchmarks/threads.py --ddp                 # the same as DDP, a process per core (configs/ddp.yaml)

Each case is ``python -m lit_nets fit`` in a process of its own with lit_nets' Throughput callback; a busy process is
a pure-Python loop (``while True: pass``) started before the fit and stopped after it. Prints a table and the
ratios of each case to the fit alone.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fit(config: str, epochs: int, work: Path, name: str, extra: list[str], busy: bool) -> tuple[float, str]:
    """(training rows/s, the run's Threads line) of one fit, beside a busy process when ``busy``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("LIT_NETS_THREADS", "OMP_NUM_THREADS")}
        args = [
            *("--config", str(REPO / config), "--trainer.max_epochs", str(epochs), "--test_after_fit", "false"),
            *("--figures.enabled", "false", "--trainer.enable_progress_bar", "false", "--early_stopping", "null"),
            *("--trainer.callbacks+=lit_nets.train.callbacks.Throughput", "--trainer.logger.init_args.version", name),
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "lit_nets", "fit", *args, *extra], cwd=work, env=env, capture_output=True, text=True
        )
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    if proc.returncode != 0:
        sys.exit(f"fit {name} failed:\n{proc.stderr[-3000:]}")
    line = re.search(r"Threads: +(.*)", proc.stderr)
    events = EventAccumulator(str(work / "lightning_logs" / name))
    events.Reload()
    rates = [e.value for e in events.Scalars("perf/train_samples_per_sec")]
    return sum(rates[1:] or rates) / len(rates[1:] or rates), line.group(1) if line else "?"  # the first epoch warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/insteval.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ddp", action="store_true", help="every case as DDP on this machine (a process per core)")
    options = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    overlay = ["--config", str(REPO / "configs" / "ddp.yaml"), "--trainer.devices", str(cores)] if options.ddp else []
    cases = [
        ("alone", overlay, False),
        ("busy", overlay, True),
        ("torch_default_alone", [*overlay, "--threads", str(cores)], False),
        ("torch_default_busy", [*overlay, "--threads", str(cores)], True),
    ]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "data").symlink_to(REPO / "data") if (REPO / "data").is_dir() else None
        rows = {name: fit(options.config, options.epochs, work, name, extra, busy) for name, extra, busy in cases}
    base = rows["alone"][0]
    ddp = f", DDP over {cores} processes" if options.ddp else ""
    print(f"{options.config}{ddp}, {options.epochs} epochs, {cores} cores; training rows/s (epochs after the first)")
    print("| case | rows/s | alone / case | threads |")
    print("| --- | ---: | ---: | --- |")
    for name, (rate, line) in rows.items():
        print(f"| {name} | {rate:,.0f} | {base / rate:.2f} | {line} |")


if __name__ == "__main__":
    main()
