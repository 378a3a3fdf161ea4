"""Real database and tracking servers for the tests, started in a temporary folder on a free port and stopped after:
PostgreSQL (Debian's ``postgresql`` package, which ``.ci/run`` installs) and MLflow (``mlflow server`` from pip, on
a SQLite backend). Where one is missing the test is skipped with the reason, except in CI
(``LIT_NETS_REQUIRE_SERVERS=1``), where a missing server fails it."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.service import free_port

PASSWORD = "s3cret-pw"  # the tests check that no output shows it


def missing(what: str) -> None:
    """Skip, or in CI fail: ``what`` is not installed."""
    if os.environ.get("LIT_NETS_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{what} is not installed (.ci/run installs it)")
    pytest.skip(f"{what} is not installed (.ci/run installs it; see docs/development.md)")


def postgres_program(name: str) -> str | None:
    """A PostgreSQL server program: on the PATH, or in Debian's versioned folder (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    return versions[-1] if versions else None


class Postgres:
    """A PostgreSQL server of its own (a new cluster, password authentication over TCP, fsync off) with a database
    ``tune`` at :attr:`url`; :meth:`stop` and :meth:`start` it as an administrator does (``pg_ctl``). As root, the
    server runs as the ``postgres`` user (initdb refuses root)."""

    def __init__(self, folder: Path) -> None:
        self.initdb, self.pg_ctl = postgres_program("initdb"), postgres_program("pg_ctl")
        if self.initdb is None or self.pg_ctl is None:
            missing("PostgreSQL (initdb, pg_ctl)")
        self.folder, self.port = folder, free_port()
        self.as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.data, self.log = folder / "data", folder / "server.log"
        self.url = f"postgresql://lit:{PASSWORD}@127.0.0.1:{self.port}/tune"

    def run(self, *cmd: object) -> None:
        subprocess.run([*self.as_server, *map(str, cmd)], check=True, capture_output=True, text=True)

    def create(self) -> None:
        if self.as_server:
            shutil.chown(self.folder, "postgres")
        (self.folder / "pw").write_text(PASSWORD + "\n")
        if self.as_server:
            shutil.chown(self.folder / "pw", "postgres")
        self.run(self.initdb, "-D", self.data, "-U", "lit", f"--pwfile={self.folder / 'pw'}", "--auth=scram-sha-256",
                 "-E", "UTF8")  # fmt: skip
        self.start()
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="lit", password=PASSWORD, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute("CREATE DATABASE tune")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self.run(self.pg_ctl, "-D", self.data, "-o", options, "-l", self.log, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        subprocess.run([*self.as_server, self.pg_ctl, "-D", self.data, "-m", mode, "-w", "stop"], capture_output=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A :class:`Postgres` started in a temporary folder, stopped and removed after."""
    server = Postgres(Path(tempfile.mkdtemp(prefix="lit_nets_pg_")))
    try:
        server.create()
        yield server
    except subprocess.CalledProcessError as e:
        pytest.fail(f"PostgreSQL did not start: {e.stderr or e.stdout}")
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """The URL of a :func:`postgres_server` of its own."""
    with postgres_server() as server:
        yield server.url


class MLflowServer:
    """``mlflow server`` on a SQLite backend and a local artifact folder (in ``folder``), on a free port: its
    :attr:`url`; :meth:`kill` it as a crash does and :meth:`start` it again on the same port and data."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("mlflow", path=str(Path(sys.executable).parent)) is None:
            missing("MLflow (the track extra)")
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: it stops on SIGTERM
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the server's own metrics in its own process
        with open(self.folder / "server.log", "a") as log:  # the server's output, read when it fails to start
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        import requests

        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{self.url}/health", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(self.folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        """SIGTERM to the one process started, as a supervisor stops it (its group killed after 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """The server and its workers gone at once (a crash, the OOM killer)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait()


@contextlib.contextmanager
def mlflow_tracking() -> Iterator[MLflowServer]:
    """A started :class:`MLflowServer`, stopped and removed after."""
    server = MLflowServer(Path(tempfile.mkdtemp(prefix="lit_nets_mlflow_")))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server() -> Iterator[str]:
    """The URL of an :func:`mlflow_tracking` server of its own."""
    with mlflow_tracking() as server:
        yield server.url
