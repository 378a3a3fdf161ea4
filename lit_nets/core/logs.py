"""What a command prints besides its results: our log lines on stderr, and Lightning's and torch's lines that say
nothing a user can act on left out (never at import: importing lit_nets leaves a user's logging and warnings alone).
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Lightning's and torch's warnings that say nothing a user of this CLI can act on; filtered while the CLI runs
# (:func:`quiet_warnings`), never at import, so importing lit_nets leaves a user's warning state alone.
QUIET_WARNINGS = (
    r".*does not have many workers.*",  # in-memory loaders need none (lit_nets.core.data.base)
    r".*is smaller than the logging interval.*",  # small tabular sets; epoch metrics are what we log
    r".*module\(s\) in eval mode at the start of training.*",  # frozen conv blocks keep BatchNorm in eval on purpose
    r".*Couldn't infer the batch indices.*",  # predict batches carry their own row index
    r".*isinstance\(treespec, LeafSpec\).*",  # Lightning 2.6 calls a pytree API that torch 2.14 deprecates
    # a command on a checkpoint alone gets the checkpoint's classes as args beside sys.argv (with_checkpoint_classes);
    # sys.argv must stay whole: DDP's launcher starts the other processes with it
    r".*LightningCLI's args parameter is intended to run from within Python.*",
    # Lightning's EMAWeightAveraging (configs/mnist_best.yaml): our configure_model compiles, it shards nothing; and a
    # test or predict of a run that averaged reads the averaged weights, which is what it should read
    r".*WeightAveraging callback with a model that overrides the configure_model.*",
    r".*WeightAveraging callback, but loading a checkpoint outside the 'fit' stage.*",
)


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """The CLI's warning filters (:data:`QUIET_WARNINGS`), undone when the block ends."""
    with warnings.catch_warnings():
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield


QUIETED_LOGGERS = (
    "lightning.pytorch",
    "lightning.fabric",
    "lightning.pytorch.utilities.rank_zero",  # rank_zero_info: the tips
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.trainer.connectors.checkpoint_connector",  # the weights_only line
)


class _NoAdverts(logging.Filter):
    """Drop two of Lightning's lines that are not information about the run: "💡 Tip: try installing ..."
    (advertising), and "`weights_only` was not set, defaulting to `False`" (said when a checkpoint is *saved* whole,
    e.g. by the learning-rate finder, and read as if checkpoints were loaded unsafely; ours are loaded as data)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("💡 Tip") or message.startswith("`weights_only` was not set"))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message comes (pytest and notebooks swap it; a handler that kept
    the first one would write to a closed stream later)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging() -> None:
    """Our own messages (``lit_nets.*`` loggers) go to stderr like Lightning's."""
    logger = logging.getLogger("lit_nets")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    # A logger's filter sees only the records made on that logger, so it goes on the loggers that make these lines
    # (and on Lightning's own handlers, which see its children's records when Lightning installed them).
    for name in QUIETED_LOGGERS:
        for holder in [logging.getLogger(name), *logging.getLogger(name).handlers]:
            if not any(isinstance(f, _NoAdverts) for f in holder.filters):
                holder.addFilter(_NoAdverts())
