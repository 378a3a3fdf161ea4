"""The suite's shared fixtures (defined in ``tests/helpers/fixtures.py``) and the session's image cache.

Layers: ``unit/`` (no training, no subprocess: the inner loop, ``pytest tests/unit``), ``integration/`` (in-process
fits on tiny real data), ``service/`` (real processes: serve, signals, DDP), ``e2e/`` (the README's and docs' commands
as written)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.fixtures import cnn_run, cnn_server, cnn_service, locked_server, sample, wine_service  # noqa: F401

# imported before any test captures output: Lightning's log handlers keep the stderr they find at import
import lit_nets.train.cli  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def decoded_image_cache(tmp_path_factory) -> Path:
    """The folder data module's cache of decoded images (on by default) in a folder of this session, not in the
    home folder; subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("xdg_cache")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    return folder / "lit_nets" / "decoded"


def pytest_configure(config) -> None:
    """Under pytest-xdist each worker takes its share of the CPU (affinity / workers) for torch's threads, and the
    processes it starts inherit that (OMP_NUM_THREADS), so that the workers together run a thread per core, not a
    thread per core each."""
    workers = getattr(config, "workerinput", None)
    if workers is not None:
        import torch

        share = max(1, len(os.sched_getaffinity(0)) // int(workers["workercount"]))
        os.environ["OMP_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)
