"""Images/s of the photo loader: a folder too large for memory, decoded, cropped and augmented per image in DataLoader
workers, as a GPU would be fed (no model: the loader alone is timed, so the figure is the ceiling it sets).

    python benchmarks/photo_loader.py                              # 512 photos, 224 px, 0, 1 and 2 workers
    python benchmarks/photo_loader.py --images 2048 --workers 0 2 4 8 --augment randaugment --json stream.json

The folder: seeded crops, 200-420 px a side, of scikit-learn's two sample photographs (real JPEGs, quality 90),
written to a temporary folder. The data module is ``ImageFolderDataModule`` with ``max_memory_mb: 0`` (every split
streamed from disk), ``image_size`` 224 and ``crop_pct`` 0.875 (as a resnet's weights ask), the given ``augment``;
one epoch of the training loader is timed after a first one that starts the workers (``persistent_workers``) and
warms the file cache, ``--repeat`` times. The in-memory path (the same images decoded once at setup) is timed too,
for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch


def write_photos(root: Path, count: int) -> None:
    """``count`` JPEG crops of the two sample photographs, half of each, as class folders."""
    from PIL import Image

    from lit_nets.core.data.samples import photo_crops

    for label, crops in photo_crops(per_photo=count // 2, seed=1).items():
        (root / label).mkdir(parents=True)
        for i, crop in enumerate(crops):
            Image.fromarray(crop).save(root / label / f"{i:05d}.jpg", quality=90)


def images_per_second(root: Path, args: argparse.Namespace, workers: int, streamed: bool) -> float:
    """The best of ``--repeat`` timed epochs of the training loader (uint8 batches of ``--size`` px)."""
    from lit_nets.data import ImageFolderDataModule

    dm = ImageFolderDataModule(
        root=str(root),
        image_size=args.size,
        crop_pct=0.875,
        augment=args.augment,
        batch_size=args.batch_size,
        num_workers=workers,
        cache=False,
        max_memory_mb=0 if streamed else 2048,
        val_fraction=0.05,
        test_fraction=0.05,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    best = 0.0
    for epoch in range(args.repeat + 1):
        start, seen = time.perf_counter(), 0
        for x, _ in loader:
            assert x.shape[2:] == (args.size, args.size)
            seen += len(x)
        if epoch:  # the first epoch starts the workers and reads the files into the page cache
            best = max(best, seen / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; print a table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512, help="photos in the folder")
    parser.add_argument("--size", type=int, default=224, help="image size the model takes")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers to time")
    parser.add_argument("--augment", default="light", choices=["none", "light", "randaugment", "trivialaugment"])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="timed epochs (the best is reported)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        write_photos(root, args.images)
        for workers in args.workers:
            rows.append(
                {"path": "streamed", "workers": workers, "images_per_s": images_per_second(root, args, workers, True)}
            )
        rows.append({"path": "in memory", "workers": 0, "images_per_s": images_per_second(root, args, 0, False)})
    cpu = platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0))
    print(
        f"\nPhoto loader, {args.images} JPEGs (200-420 px), {args.size} px, augment {args.augment}, batch "
        f"{args.batch_size}; {cores} CPU cores ({cpu}), torch {torch.__version__}"
    )
    print("| path | workers | images/s |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {row['path']} | {row['workers']} | {row['images_per_s']:,.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
