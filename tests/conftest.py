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
from lit_nets.core.logs import setup_logging

setup_logging()  # as every command does first: the lit_nets logger's level is set before the first test
# the loggers a command's lines go through ("Threads: ...", "Seed set to ...", "data: ..."); a test that leaves one of
# them quieter silences the lines another test on the same xdist worker asserts, whichever tests share it
WATCHED_LOGGERS = (
    "lit_nets",
    "lightning.pytorch",
    "lightning.fabric",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


@pytest.fixture(autouse=True)
def logger_levels_kept():
    """Fail the test that changes those loggers' levels and leaves them so (found: benchmarks/harness.py's build set
    Lightning's to ERROR for good, and a later test on its worker missed its "Threads:" line)."""
    import logging

    loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
    before = [(logger.level, logger.disabled) for logger in loggers]
    yield
    after = [(logger.level, logger.disabled) for logger in loggers]
    changed = [f"{lg.name}: {b} -> {a}" for lg, b, a in zip(loggers, before, after, strict=True) if a != b]
    for logger, (level, disabled) in zip(loggers, before, strict=True):
        logger.setLevel(level)
        logger.disabled = disabled
    if changed:
        pytest.fail(f"the test left loggers changed (level, disabled): {'; '.join(changed)}")


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
