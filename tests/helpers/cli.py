"""Running ``python -m lit_nets`` as a test needs it: in a subprocess (:func:`run_cli`) or in this process
(:func:`in_process`), and reading what a run wrote (TensorBoard scalars, MNIST idx files, a quiet Trainer)."""

from __future__ import annotations

import gzip
import logging
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TESTS = REPO / "tests"
FULL_MNIST = REPO.parent / "shared" / "data"  # the full MNIST where the repository sits beside ../shared
needs_full_mnist = pytest.mark.skipif(
    not (FULL_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").exists(),
    reason="the full MNIST is not in ../shared/data (a fresh clone has no ../shared)",
)
ADULT = FULL_MNIST / "adult"  # UCI Adult as published: adult.data to train, adult.test to test
needs_adult = pytest.mark.skipif(
    not (ADULT / "adult.test").exists(), reason=f"UCI Adult's published files are not in {ADULT} (a fresh clone)"
)


def run_cli(*args: str, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m lit_nets ARGS`` in ``cwd``; fails the test with the output when ``check`` and rc != 0."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))  # helpers.faults
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


def in_process(*args: str, cwd: Path, monkeypatch=None, capfd=None, check: bool = False) -> subprocess.CompletedProcess:
    """``python -m lit_nets ARGS`` in this process (the same ``main`` as the command line, without the 5 s start of an
    interpreter), in ``cwd``; its exit status and, given ``capfd``, what it printed, as :func:`run_cli` gives them.
    Without ``monkeypatch`` (in a fixture) the working folder and ``sys.argv`` are restored by hand. ``check``: fail
    the test unless it exits 0."""
    from lit_nets.__main__ import main

    saved = (Path.cwd(), sys.argv)
    if monkeypatch is not None:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["lit_nets"])  # the arguments go in through main(args)
    else:
        os.chdir(cwd)
        sys.argv = ["lit_nets"]
    if capfd is not None:
        capfd.readouterr()
    # Lightning's messages go to its own stderr handler, made when it was imported (before any capture): show them on
    # the captured stderr too, as a real process prints them
    lightning = logging.StreamHandler(sys.stderr)
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    for logger in loggers:
        logger.addHandler(lightning)
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        for logger in loggers:
            logger.removeHandler(lightning)
        if monkeypatch is None:
            os.chdir(saved[0])
            sys.argv = saved[1]
    out, err = capfd.readouterr() if capfd is not None else ("", "")
    if check and code != 0:
        pytest.fail(f"lit_nets {' '.join(args)} exited {code}\n{out[-3000:]}\n{err[-6000:]}")
    return subprocess.CompletedProcess(list(args), code, out, err)


def fit_for_fixture(work: Path, *args: str) -> tuple[Path, str]:
    """``python -m lit_nets fit ARGS`` in this process for a module fixture (no monkeypatch there), in ``work``: its
    best checkpoint and what it printed; it must exit 0."""
    import contextlib
    import io
    import re

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        done = in_process("fit", *args, cwd=work)
    assert done.returncode == 0, printed.getvalue()[-3000:]
    return work / re.search(r"Best:\s+(\S+)", printed.getvalue()).group(1), printed.getvalue()


def printed_scores(printed: str) -> dict[str, float]:
    """The ``Test (best):`` line of a fit's summary as ``{"test/acc": 0.97, ...}``."""
    line = next(line for line in printed.splitlines() if line.startswith("Test (best):"))
    return {k: float(v) for k, v in (pair.split() for pair in line.removeprefix("Test (best):").strip().split("  "))}


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
