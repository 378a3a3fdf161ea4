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


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own (a new cluster, password authentication over TCP) with a database ``tune``;
    yields its URL. As root, the server runs as the ``postgres`` user (initdb refuses root)."""
    initdb, pg_ctl = postgres_program("initdb"), postgres_program("pg_ctl")
    if initdb is None or pg_ctl is None:
        missing("PostgreSQL (initdb, pg_ctl)")
    folder = Path(tempfile.mkdtemp(prefix="lit_nets_pg_"))
    as_server = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_server = ["runuser", "-u", "postgres", "--"]
    (folder / "pw").write_text(PASSWORD + "\n")
    if as_server:
        shutil.chown(folder / "pw", "postgres")
    port = free_port()
    data, log = folder / "data", folder / "server.log"
    run = lambda *cmd: subprocess.run([*as_server, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(initdb, "-D", data, "-U", "lit", f"--pwfile={folder / 'pw'}", "--auth=scram-sha-256", "-E", "UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        run(pg_ctl, "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start")
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="lit", password=PASSWORD, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute("CREATE DATABASE tune")
        yield f"postgresql://lit:{PASSWORD}@127.0.0.1:{port}/tune"
    except subprocess.CalledProcessError as e:
        pytest.fail(f"PostgreSQL did not start: {e.stderr or e.stdout}")
    finally:
        subprocess.run([*as_server, pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server() -> Iterator[str]:
    """``mlflow server`` on a SQLite backend and a local artifact folder, on a free port; yields its URL."""
    if shutil.which("mlflow", path=str(Path(sys.executable).parent)) is None:
        missing("MLflow (the track extra)")
    folder = Path(tempfile.mkdtemp(prefix="lit_nets_mlflow_"))
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = open(folder / "server.log", "w")  # noqa: SIM115 (the server's output, read when it fails to start)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()  # SIGTERM to the one process started, as a supervisor stops it
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
