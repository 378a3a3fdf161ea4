"""Shared test helpers: run the CLI in a subprocess, read TensorBoard events, write MNIST idx files."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def run_cli(*args: str, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m lit_nets ARGS`` in ``cwd``; fails the test with the output when ``check`` and rc != 0."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LIT_NETS_TRACEBACK", None)
    proc = subprocess.run(
        [sys.executable, "-m", "lit_nets", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"lit_nets {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a run folder's event files, read with tensorboard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def write_idx(raw: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor, gzipped: bool = True) -> None:
    """Write images (N, 28, 28) uint8 and labels in the MNIST idx format torchvision reads."""
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    opener, suffix = (gzip.open, ".gz") if gzipped else (open, "")
    with opener(raw / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as f:
        f.write(struct.pack(">IIII", 0x0803, n, h, w) + images.numpy().tobytes())
    with opener(raw / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(struct.pack(">II", 0x0801, n) + labels.to(torch.uint8).numpy().tobytes())


def quiet_trainer(**kwargs):
    """A CPU Trainer that writes and prints nothing, for in-process tests."""
    from lightning.pytorch import Trainer

    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return Trainer(**{**defaults, **kwargs})


@pytest.fixture(scope="session")
def sample() -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped 5,000-digit MNIST sample (real data)."""
    from lit_nets.data.samples import mnist_sample

    return mnist_sample()
