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
import lit_nets.train.cli  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
FULL_MNIST = REPO.parent / "shared" / "data"  # the full MNIST where the repository sits beside ../shared
needs_full_mnist = pytest.mark.skipif(
    not (FULL_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").exists(),
    reason="the full MNIST is not in ../shared/data (a fresh clone has no ../shared)",
)


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


@pytest.fixture(scope="session", autouse=True)
def decoded_image_cache(tmp_path_factory) -> Path:
    """The folder data module's cache of decoded images (on by default) in a folder of this session, not in the
    home folder; subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("xdg_cache")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    return folder / "lit_nets" / "decoded"


@pytest.fixture(scope="session")
def sample() -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped 5,000-digit MNIST sample (real data)."""
    from lit_nets.core.data.samples import mnist_sample

    return mnist_sample()


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory) -> tuple[Path, str]:
    """configs/cnn.yaml trained for one epoch on the shipped digits, every format exported: (folder, what export
    printed on stdout and stderr).
    The checkpoint is ``lightning_logs/version_0/checkpoints/last.ckpt``, the exports are in ``exported/``."""
    work = tmp_path_factory.mktemp("cnn_run")
    in_process(
        "fit",
        "--config",
        str(CONFIGS / "cnn.yaml"),
        "--trainer.max_epochs",
        "1",
        "--data.download",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--test_after_fit",
        "false",
        cwd=work,
        check=True,
    )
    ckpt = str(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    proc = run_cli("export", "--ckpt_path", ckpt, "--out", "exported", cwd=work)
    return work, proc.stdout + proc.stderr


def short_png() -> bytes:
    """68 bytes: a PNG signature, an IHDR of 28x28 grey, an IDAT with 10 bytes of the 812 it needs, an IEND."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A ``python -m lit_nets serve`` process started as a user starts it (its own session, so that the test can
    tell its processes from the test's own)."""

    def __init__(
        self,
        model: Path,
        cwd: Path,
        *args: str,
        env: dict | None = None,
        argv: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"serve-{self.port}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        command = [sys.executable, "-m", "lit_nets", "serve", "--ckpt_path", str(model), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            argv or [*command, *args],
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 120) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited {self.proc.returncode}:\n{self.output()[-4000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{self.url}/ready", timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"serve not ready after {timeout} s:\n{self.output()[-4000:]}")
            time.sleep(0.5)

    def processes(self) -> list[int]:
        """The PIDs still in the service's session (its children included, re-parented or not)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z" and int(fields[3]) == self.proc.pid:  # state, ppid, pgrp, session
                    pids.append(int(stat.parent.name))
        return pids

    def usage(self) -> tuple[float, int]:
        """(CPU seconds used so far, resident memory in bytes) of all the service's processes together."""
        ticks, pages, page = 0, 0, os.sysconf("SC_PAGE_SIZE")
        for pid in self.processes():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
                pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        return ticks / os.sysconf("SC_CLK_TCK"), pages * page

    def stop(self, sig: int = signal.SIGTERM, to: str = "pid", timeout: float = 15) -> tuple[int, float]:
        """Send ``sig`` the way a user or supervisor does (``to``: "pid", the one process started; "group", as a
        terminal sends Ctrl-C; "all", each process, as systemd does); return (exit status, seconds to exit)."""
        started = time.monotonic()
        if to == "pid":
            self.proc.send_signal(sig)
        elif to == "group":
            os.killpg(self.proc.pid, sig)
        else:
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        deadline = time.monotonic() + 5  # the children end just after the main process
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self.processes()
        if left or code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        assert code is not None, f"serve did not exit {timeout} s after {sig!r}:\n{self.output()[-3000:]}"
        assert not left, f"processes of the service left after it exited: {left}"
        return code, took


def port_is_free(port: int) -> bool:
    """Whether a restarted service could listen on ``port`` (as uvicorn does, with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def serving(model: Path, cwd: Path, *args: str, startup_timeout: float = 120, service: bool = False):
    """``python -m lit_nets serve`` on a free port until the block ends; yields the base URL (``service``: the
    Service) once /ready is ok. Stopped with SIGTERM to the one process started, as a supervisor does: it must exit
    0 with every process of the service gone and the port free."""
    served = Service(model, cwd, *args)
    try:
        served.wait_ready(startup_timeout)
        yield served if service else served.url
    finally:
        stop_cleanly(served)


def stop_cleanly(*services: Service) -> None:
    """SIGTERM to the one process started of each service, as a supervisor does: each must exit 0 with every process
    of it gone and its port free. Every one is stopped, whichever fails its check; the first failure is raised."""
    failures = []
    for served in services:
        try:
            code, _ = served.stop()
            output = served.output()
            assert code == 0 and "stopped (SIGTERM)" in output and "Traceback" not in output, output[-3000:]
            assert port_is_free(served.port)
        except AssertionError as e:
            failures.append(e)
    if failures:
        raise failures[0]


@pytest.fixture(scope="session")
def wine_service(tmp_path_factory):
    """configs/mlp.yaml trained on wine for 10 epochs, served: (url, its folder)."""
    work = tmp_path_factory.mktemp("wine")
    in_process(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--trainer.max_epochs",
        "10",
        "--test_after_fit",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--figures.enabled",
        "false",
        cwd=work,
        check=True,
    )
    with serving(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", work) as url:
        yield url, work


@pytest.fixture(scope="session")
def cnn_server(cnn_run):
    """The one-epoch CNN checkpoint served on a free port for the whole session (an idle service costs nothing),
    with short timeouts for the slow-client test (1 s for headers, 2 s for a body). Stopped with SIGTERM at the
    end, and checked to stop cleanly."""
    work, _ = cnn_run
    ckpt = work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    with serving(ckpt, work, "--header_timeout", "1", "--body_timeout", "2", service=True) as service:
        yield service


@pytest.fixture(scope="session")
def cnn_service(cnn_server, cnn_run):
    """(base URL, checkpoint path) of :func:`cnn_server`."""
    return cnn_server.url, cnn_run[0] / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def locked_server(cnn_run):
    """The container recipe's entry command (``Dockerfile``: ENTRYPOINT + CMD, on this machine: no engine runs
    here) with ``LIT_NETS_API_KEY=s3cret-key``, serving the CNN checkpoint; (Service, the recipe's text)."""
    import json
    import re

    work, _ = cnn_run
    recipe = (REPO / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", recipe, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", recipe, re.M).group(1))
    ckpt = str(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    port = free_port()
    argv = [
        sys.executable if a == "python" else str(port) if a == "8000" else ckpt if a == "/models/last.ckpt" else a
        for a in entry + cmd
    ]
    service = Service(Path(ckpt), work, argv=argv, port=port, env={**os.environ, "LIT_NETS_API_KEY": "s3cret-key"})
    service.wait_ready()
    yield service, recipe
    code, _ = service.stop()
    output = service.output()
    assert code == 0 and "stopped (SIGTERM)" in output and "(API key required)" in output, output[-3000:]
