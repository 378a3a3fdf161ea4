"""Shared test helpers: run the CLI in a subprocess, read TensorBoard events, write MNIST idx files, a trained and
exported CNN, and a model service on a free port."""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

# imported before any test captures output: Lightning's log handlers keep the stderr they find at import
import lit_nets.cli  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def run_cli(*args: str, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m lit_nets ARGS`` in ``cwd``; fails the test with the output when ``check`` and rc != 0."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))  # faults
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
    from lit_nets.cli import main

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


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory) -> tuple[Path, str]:
    """configs/cnn.yaml trained for one epoch on the shipped digits, every format exported: (folder, what export
    printed on stdout and stderr).
    The checkpoint is ``lightning_logs/version_0/checkpoints/last.ckpt``, the exports are in ``exported/``."""
    work = tmp_path_factory.mktemp("cnn_run")
    run_cli("fit", "--config", str(CONFIGS / "cnn.yaml"), "--trainer.max_epochs", "1", "--data.download", "false",
            "--trainer.enable_progress_bar", "false", "--test_after_fit", "false", cwd=work)  # fmt: skip
    ckpt = str(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    proc = run_cli("export", "--ckpt_path", ckpt, "--out", "exported", cwd=work)
    return work, proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(model: Path, cwd: Path, *args: str, startup_timeout: float = 120):
    """``python -m lit_nets serve`` on a free port until the block ends; yields the base URL once /health is ok."""
    import requests

    port = free_port()
    log = open(cwd / f"serve-{port}.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lit_nets", "serve", "--ckpt_path", str(model), "--port", str(port), *args],
        cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited {proc.returncode}:\n{(cwd / log.name).read_text()[-4000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"serve not healthy after {startup_timeout} s:\n{(cwd / log.name).read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # LitServe runs workers in child processes: end the whole group
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def cnn_service(cnn_run):
    """The one-epoch CNN checkpoint served on a free port: (base URL, checkpoint path). Per module: an idle
    LitServe service still polls its queues, which would slow every later test on a 2-core machine."""
    work, _ = cnn_run
    ckpt = work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    with serving(ckpt, work) as url:
        yield url, ckpt
