"""A model service started as a user starts it (``python -m lit_nets serve`` on a free port, its own session) and
stopped as a supervisor stops it (SIGTERM to the one process started)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest


def short_png() -> bytes:
    """68 bytes: a PNG signature, an IHDR of 28x28 grey, an IDAT with 10 bytes of the 812 it needs, an IEND."""
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
