"""What the benchmarks share: the model and data a config stack builds (by the CLI's own parser), a measured child
process (wall time and peak memory), the machine, medians and Markdown tables. Not a benchmark itself."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # the full MNIST, where this repository sits beside it


def build(configs: list[str], overrides: list[str] | tuple[str, ...] = ()) -> tuple[Any, Any]:
    """The data module (set up for fitting) and the model that ``fit --config C1 --config C2 ... OVERRIDES`` trains:
    the configs stacked, the links from the data to the model and the seed applied by the CLI's own parser
    (``LitNetsCLI``, nothing run), so a plain loop gets the same layers, initial weights and batches as the command."""
    from lit_nets.train.cli import LitNetsCLI
    from lit_nets.train.in_memory import quiet
    from lit_nets.train.runs import bare_argv

    args = [*(f"--config={Path(c).resolve()}" for c in configs), *overrides, "--trainer.logger=false"]
    # the info lines (GPU/TPU, the batch size) off, as the Python doors' fits do: the command says them; the levels come
    # back afterwards, so a caller in the same process (a test, a notebook) keeps Lightning's lines
    with quiet(), bare_argv():
        cli = LitNetsCLI(args=args, run=False)
    cli.datamodule.setup("fit")
    return cli.datamodule, cli.model


def config_value(configs: list[str], key: str, default: Any = None) -> Any:
    """A dotted key (``trainer.max_epochs``) of the stacked configs as the CLI merges them."""
    from lit_nets.train.runs import config_of

    value: Any = config_of([f"--config={Path(c).resolve()}" for c in configs])
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return default if value is None else value


def measured(command: list[str], cwd: str | Path | None = None, quiet: bool = False) -> tuple[float, float]:
    """Run ``command`` to its end: (its wall seconds, the peak resident memory in MB of it and the processes it
    waited for). A failure ends the benchmark with the command's exit status."""
    start = time.perf_counter()
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=out)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed (status {status}): {' '.join(map(str, command))}")
    return wall, usage.ru_maxrss / 1024


def worker_result(script: str, arguments: list[str]) -> tuple[dict[str, Any], float, float]:
    """``python SCRIPT --worker ... --out FILE`` in a fresh process: (the JSON it wrote, its wall seconds, its peak
    memory in MB), so that each measured run's memory is its own."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    try:
        wall, peak = measured([sys.executable, script, *arguments, "--out", str(out)])
        return json.loads(out.read_text()), wall, peak
    finally:
        out.unlink(missing_ok=True)


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def machine() -> dict[str, Any]:
    """The CPU (its model name and logical cores), torch, Python and the GPU if any: what a figure was measured on."""
    import torch

    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = f"{names[0]} ({len(names)} logical cores)" if names else cpu
    info = {"cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads()}
    info["python"] = platform.python_version()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def print_table(headers: list[str], rows: list[list[Any]], title: str = "") -> None:
    """A Markdown table (the first column left-aligned, the others right), as docs/benchmarks.md shows it."""
    if title:
        print(f"\n{title}")
    print("| " + " | ".join(headers) + " |")
    print("| --- |" + " ---: |" * (len(headers) - 1))
    for row in rows:
        print("| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |")


def mnist_dir(data_dir: str | None, sample: bool) -> str | None:
    """The MNIST folder a CNN benchmark trains on: ``data_dir``, else the full MNIST beside the repository, else None
    (the config's own: offline, the 5,000-digit sample). ``sample``: an empty folder, so the sample even so."""
    if sample:
        return tempfile.mkdtemp(prefix="bench_sample_")
    if data_dir:
        return os.path.abspath(data_dir)
    return str(SHARED_DATA) if (SHARED_DATA / "MNIST" / "raw").is_dir() else None


CATEGORIES = {"region": 8, "channel": 4, "plan": 12, "device": 3}  # text columns of the generated table


def make_table(rows: int, columns: int, seed: int = 0) -> Path:
    """A CSV file like a practitioner's export: ``columns - 5`` numeric features on scales from 0.01 to 10,000 with 5%
    of values missing, 4 text columns (3 to 12 categories, 2% missing) and a 3-class ``label`` that depends on 10 of
    the numbers and 2 of the texts plus noise (so there is something to learn). Written once per size and seed,
    under the temporary folder; 1,000,000 x 50 is about 0.5 GB."""
    import numpy as np
    import pandas as pd

    if columns < len(CATEGORIES) + 11:
        raise SystemExit(f"a generated table needs at least {len(CATEGORIES) + 11} columns (10 that decide the label)")
    path = Path(tempfile.gettempdir()) / "lit_nets_bench" / f"table_{rows}x{columns}_seed{seed}.csv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    numeric = columns - len(CATEGORIES) - 1
    scales = 10.0 ** rng.uniform(-2, 4, numeric)
    x = rng.standard_normal((rows, numeric)).astype(np.float32)
    logits = x[:, :10] @ rng.standard_normal((10, 3)).astype(np.float32)
    frame = pd.DataFrame((x * scales).astype(np.float32), columns=[f"x{i:02d}" for i in range(numeric)])
    for name, n in CATEGORIES.items():
        codes = rng.integers(0, n, rows)
        if name in ("region", "plan"):
            logits += rng.standard_normal((n, 3)).astype(np.float32)[codes]
        values = np.array([f"{name}_{k}" for k in range(n)], dtype=object)[codes]
        values[rng.random(rows) < 0.02] = None
        frame[name] = values
    for i in range(numeric):
        frame.iloc[rng.random(rows) < 0.05, i] = np.nan
    frame["label"] = np.array(["low", "mid", "high"])[(logits + rng.gumbel(size=logits.shape)).argmax(1)]
    partial = path.with_suffix(".partial")
    frame.to_csv(partial, index=False, float_format="%.6g")
    partial.rename(path)
    return path
