"""The trained fixtures the tests share (one per session): the shipped digits, a one-epoch CNN run with every
export, a served wine MLP and served CNNs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from helpers.cli import CONFIGS, REPO, in_process, run_cli
from helpers.service import Service, free_port, serving


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
