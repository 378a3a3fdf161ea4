"""Time the seed's plain PyTorch loop (A), a tuned plain loop (B) and ``lit_nets fit`` (C) on the same data.

    python scripts/benchmark.py                                   # the CNN on the offline MNIST sample, the MLP on wine
    python scripts/benchmark.py --task cnn --epochs 5 --json benchmark.json
    python scripts/benchmark.py --task cnn --config configs/fashion_mnist.yaml        # any image data config on top
    python scripts/benchmark.py --task cnn --runs A B --device cuda --precision bf16-mixed --batch_size 1024 \
        --synthetic 60000
    python scripts/benchmark.py --task cnn --data_dir ../shared/data     # the full MNIST (60,000 + 10,000)

The CNN trains on the full MNIST when ``--data_dir`` (or ``../shared/data`` beside the repository) holds
``MNIST/raw``, otherwise on what the config names, which offline is the 5,000-digit sample; ``--sample`` asks for
the sample even where the full set is.

The three runs share the data split, the model (built by the same lit_nets class, so the same layers and init),
the optimiser, learning rate, batch size, seed and number of epochs:

- A, the seed's loop as its cheat sheet writes it: a torchvision data set that makes a PIL image of each sample and
  runs ``ToTensor`` and ``Normalize`` on it, a ``DataLoader(batch_size, shuffle=True)``, ``loss.item()`` summed
  every step. For 1x28x28 images the data set is torchvision's own ``datasets.MNIST`` over idx files of the split;
  CSV rows come as a ``TensorDataset`` of standardised rows.
- B, a tuned plain loop: uint8 tensors in memory, a random permutation cut into index batches, normalisation on
  the batch, ``channels_last``, the fused optimiser, no host sync in the step, the process settings of
  :mod:`lit_nets.core.runtime`; it keeps the epoch's training loss and accuracy on the device, as C logs them, so both
  do the same work.
- C, ``python -m lit_nets fit`` in a subprocess, exactly as a user runs it (TensorBoard, checkpoints, progress bar,
  figures, the test of the best checkpoint at the end), plus the Throughput callback that clocks it.

Each run is its own process, so its peak memory (max RSS) is its own. Reported per run: training samples/s (the mean
over epochs after the first, which warms up), end-to-end wall time of the process (start-up, data, training,
evaluation), peak memory, and the test accuracy of the model after the last epoch; then the ratios C/A and C/B. The
table goes to the screen, everything to ``--json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # the full MNIST, where this repository sits beside it
CONFIGS = {"cnn": REPO / "configs" / "cnn.yaml", "mlp": REPO / "configs" / "mlp.yaml"}


# -- what the three runs share -----------------------------------------------------------------------------------
def load_config(paths: list[str]) -> dict[str, Any]:
    """The model and data sections of stacked YAML configs (later files override earlier ones, key by key)."""
    import yaml

    merged: dict[str, Any] = {}
    for path in paths:
        config = yaml.safe_load(Path(path).read_text()) or {}
        for section in ("model", "data", "seed_everything", "trainer"):
            if section not in config:
                continue
            if isinstance(config[section], dict) and isinstance(merged.get(section), dict):
                init = {**merged[section].get("init_args", {}), **config[section].get("init_args", {})}
                merged[section] = {**merged[section], **config[section], "init_args": init}
            else:
                merged[section] = config[section]
    return merged


def build(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The data module (set up for fitting) and the Lightning classifier, both as the config says."""
    import importlib

    import torch

    config = load_config(args.configs)
    seed = int(config.get("seed_everything", 42))
    torch.manual_seed(seed)
    data_args = dict(config["data"].get("init_args", {}))
    if args.batch_size:
        data_args["batch_size"] = args.batch_size
    if args.data_dir:
        data_args["data_dir"] = args.data_dir
    if args.sample:
        data_args["download"] = False  # an empty data_dir and no download: the sample
    if args.synthetic:
        dm = synthetic_data(args.synthetic, data_args["batch_size"], seed)
    else:
        module, _, name = config["data"]["class_path"].rpartition(".")
        dm = getattr(importlib.import_module(module), name)(**data_args)
    dm.setup("fit")
    module, _, name = config["model"]["class_path"].rpartition(".")
    torch.manual_seed(seed)
    model = getattr(importlib.import_module(module), name)(**config["model"].get("init_args", {}), **dm.model_args())
    return dm, model, config


def synthetic_data(n: int, batch_size: int, seed: int) -> Any:
    """MNIST-shaped random digits (n train, n // 6 test): throughput does not depend on the pixel values."""
    import torch

    from lit_nets.core.data.base import TensorDataModule
    from lit_nets.core.data.splits import Splits
    from lit_nets.core.data.statistics import channel_stats

    class Synthetic(TensorDataModule):
        def load(self) -> Splits:
            g = torch.Generator().manual_seed(seed)
            x = torch.randint(0, 256, (n + n // 3, 1, 28, 28), dtype=torch.uint8, generator=g)
            y = torch.randint(0, 10, (n + n // 3,), generator=g)
            return Splits(
                train=(x[:n], y[:n]),
                val=(x[n : n + n // 6], y[n : n + n // 6]),
                test=(x[n + n // 6 :], y[n + n // 6 :]),
                class_names=[str(d) for d in range(10)],
                source="synthetic MNIST-shaped data",
            )

        def normalization(self, splits: Splits) -> tuple[list[float], list[float]]:
            return channel_stats(splits.train[0])

    return Synthetic(batch_size=batch_size, seed=seed)


def optimizer_of(model: Any, params: Any) -> Any:
    """The optimiser of the model's hyper-parameters as the seed makes it: torch's default implementation."""
    import torch

    options = {"lr": model.hparams.lr, "weight_decay": model.hparams.weight_decay}
    if model.hparams.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=model.hparams.momentum, **options)
    return (torch.optim.AdamW if model.hparams.optimizer == "adamw" else torch.optim.Adam)(params, **options)


def accuracy(forward: Any, x: Any, y: Any, device: str, batch: int = 1024) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((forward(x[i : i + batch].to(device)).argmax(1).cpu() == y[i : i + batch]).sum())
    return correct / len(y)


def autocast(args: argparse.Namespace) -> Any:
    import contextlib

    import torch

    if args.precision == "bf16-mixed":
        return torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -- A: the seed's loop ------------------------------------------------------------------------------------------
def run_a(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from lit_nets.core.runtime import cheap_cuda_check, freeze_heap

    dm, model, _ = build(args)
    # undo what importing Lightning (for build) did to the process, the seed has no Lightning: torch's GPU check, and
    # Lightning's ~500,000 objects that the garbage collector would walk
    cheap_cuda_check()
    freeze_heap()
    (x, y), (tx, ty) = dm.splits.train, dm.splits.test
    # the same layers and initial weights, in PyTorch's default memory layout as the seed's model is
    net = model.net.to(args.device, memory_format=torch.contiguous_format)
    if x.dtype == torch.uint8:
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(dm.mean, dm.std)])
        if tuple(x.shape[1:]) == (1, 28, 28):  # torchvision's MNIST over idx files of this very split
            root = Path(tempfile.mkdtemp())
            write_idx(root / "MNIST" / "raw", "train", x[:, 0], y)
            write_idx(root / "MNIST" / "raw", "t10k", tx[:, 0], ty)
            train_set = datasets.MNIST(str(root), train=True, download=False, transform=transform)
        else:
            train_set = PerSampleImages(x, y, transform)
        test_x = torch.stack([transform(to_pil(img)) for img in tx])
    else:  # CSV rows, standardised up front as the seed does with a scaler
        mean, std = torch.tensor(dm.mean), torch.tensor(dm.std)
        train_set = TensorDataset((x - mean) / std, y)
        test_x = (tx - mean) / std
        val_x, val_y = (dm.splits.val[0] - mean) / std, dm.splits.val[1]
    loader = DataLoader(train_set, batch_size=dm.batch_size, shuffle=True)
    optimizer = optimizer_of(model, net.parameters())
    criterion = nn.CrossEntropyLoss()
    epoch_rates, epoch_seconds = [], []
    for _ in range(args.epochs):
        net.train()
        start, seen, running_loss = time.perf_counter(), 0, 0.0
        for data, target in loader:
            data, target = data.to(args.device), target.to(args.device)
            optimizer.zero_grad()
            with autocast(args):
                output = net(data)
                loss = criterion(output, target)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            seen += len(data)
        sync(args.device)
        epoch_rates.append(seen / (time.perf_counter() - start))
        if x.dtype != torch.uint8:  # tables: the validation pass a practitioner writes, in the epoch's time
            net.eval()
            validation_pass(net, val_x, val_y, dm.batch_size, args.device)
            epoch_seconds.append(time.perf_counter() - start)
    net.eval()
    return {
        "epoch_rates": epoch_rates,
        "epoch_seconds": epoch_seconds,
        "test_acc": accuracy(net, test_x, ty, args.device),
        "data": dm.source,
    }


def validation_pass(net: Any, x: Any, y: Any, batch: int, device: str) -> tuple[float, float]:
    """The validation loss and accuracy as a plain loop computes them: batches of the training batch size, no
    gradients, a host sync per batch (``.item()``)."""
    import torch
    import torch.nn.functional as F

    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = net(x[i : i + batch].to(device))
            target = y[i : i + batch].to(device)
            loss += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(1) == target).sum().item())
    return loss / len(x), correct / len(x)


class PerSampleImages:
    """What torchvision's image data sets do per item: a PIL image of the sample, then the transform."""

    def __init__(self, x: Any, y: Any, transform: Any) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.transform(to_pil(self.x[i])), int(self.y[i])


def to_pil(image: Any) -> Any:
    from torchvision.transforms.v2.functional import to_pil_image

    return to_pil_image(image)


def write_idx(raw: Path, prefix: str, images: Any, labels: Any) -> None:
    import struct

    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.numpy().tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.byte().numpy().tobytes())


# -- B: the tuned plain loop -------------------------------------------------------------------------------------
def run_b(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from lit_nets.core.runtime import freeze_heap, tune

    dm, model, _ = build(args)
    tune()  # the process settings lit_nets uses: malloc keeps freed memory, a cached GPU check,
    freeze_heap()  # and no garbage collections of the start-up objects
    (x, y), (tx, ty) = dm.splits.train, dm.splits.test
    model = model.to(args.device)  # normalize + net; CNNs are already channels_last
    x, y = x.to(args.device), y.to(args.device)
    optimizer = model.build_optimizer()  # as C's: fused kernels where torch has them
    generator = torch.Generator().manual_seed(0)
    epoch_rates, epoch_seconds = [], []
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=generator).to(args.device)
        loss_sum, correct = torch.zeros((), device=args.device), torch.zeros((), device=args.device, dtype=torch.long)
        for batch in order.split(dm.batch_size):
            optimizer.zero_grad(set_to_none=True)
            with autocast(args):
                logits = model(x[batch])
                loss = F.cross_entropy(logits, y[batch])
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # the epoch's loss and accuracy, as C logs them: on the device, no host sync
                loss_sum += loss.detach() * len(batch)
                correct += (logits.argmax(1) == y[batch]).sum()
        sync(args.device)
        epoch_rates.append(len(x) / (time.perf_counter() - start))
        train_loss, train_acc = float(loss_sum) / len(x), int(correct) / len(x)
        if x.dtype != torch.uint8:  # tables: the validation pass, in the epoch's time
            model.eval()
            validation_pass(model, dm.splits.val[0], dm.splits.val[1], dm.batch_size, args.device)
            epoch_seconds.append(time.perf_counter() - start)
    model.eval()
    return {
        "epoch_rates": epoch_rates,
        "epoch_seconds": epoch_seconds,
        "test_acc": accuracy(model, tx, ty, args.device),
        "data": dm.source,
        "train_loss": train_loss,
        "train_acc": train_acc,
    }


# -- C: lit_nets fit ---------------------------------------------------------------------------------------------
def run_c(args: argparse.Namespace) -> dict[str, Any]:
    """``python -m lit_nets fit`` in its own process; its throughput and metrics read back from TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_nets.deploy.inference import load_classifier

    work = Path(tempfile.mkdtemp(prefix="bench_c_"))
    command = [
        sys.executable,
        "-m",
        "lit_nets",
        "fit",
        *[f"--config={c}" for c in map(os.path.abspath, args.configs)],
        f"--trainer.max_epochs={args.epochs}",
        "--trainer.callbacks+=lit_nets.train.callbacks.Throughput",
        f"--trainer.accelerator={'cpu' if args.device == 'cpu' else 'gpu'}",
    ]
    if args.precision:
        command.append(f"--trainer.precision={args.precision}")
    if args.batch_size:
        command.append(f"--data.init_args.batch_size={args.batch_size}")
    if args.data_dir:
        command.append(f"--data.init_args.data_dir={args.data_dir}")
    if args.sample:
        command.append("--data.init_args.download=false")
    if args.synthetic:
        raise SystemExit("--synthetic is for A and B only: C trains on what the config names")
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"C failed ({' '.join(command)}):\n{proc.stderr[-3000:]}")
    run_dir = work / "lightning_logs" / "version_0"
    events = EventAccumulator(str(run_dir))
    events.Reload()
    rates = [e.value for e in events.Scalars("perf/train_samples_per_sec")]
    stamps = [e.wall_time for e in events.Scalars("val/loss")]  # one per epoch; an epoch: the time between two
    seconds = [b - a for a, b in itertools.pairwise(stamps)]
    dm, _, _ = build(args)
    model = load_classifier(run_dir / "checkpoints" / "last.ckpt")
    tx, ty = dm.splits.test
    return {
        "epoch_rates": rates,
        "epoch_seconds": seconds,
        "test_acc": accuracy(model, tx, ty, "cpu"),
        "wall_s_inner": wall,
        "data": dm.source,
    }


# -- G: gradient boosting, for perspective (tables) --------------------------------------------------------------
def run_g(args: argparse.Namespace) -> dict[str, Any]:
    """scikit-learn's HistGradientBoostingClassifier fitted on the very training rows (the inputs as the MLP gets
    them: numbers standardised, categories one-hot), at its defaults: the fit's seconds and test accuracy."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    dm, _, _ = build(args)
    (x, y), (tx, ty) = dm.splits.train, dm.splits.test
    start = time.perf_counter()
    booster = HistGradientBoostingClassifier(random_state=0).fit(x.numpy(), y.numpy())
    seconds = time.perf_counter() - start
    accuracy = float((booster.predict(tx.numpy()) == ty.numpy()).mean())
    return {"epoch_rates": [len(x) / seconds], "epoch_seconds": [seconds], "test_acc": accuracy, "data": dm.source}


# -- the CSV path at size ---------------------------------------------------------------------------------------
CATEGORIES = {"region": 8, "channel": 4, "plan": 12, "device": 3}  # text columns of the generated table


def make_table(rows: int, columns: int, seed: int = 0) -> Path:
    """A CSV file like a practitioner's export: ``columns - 5`` numeric features on scales from 0.01 to 10,000 with 5%
    of values missing, 4 text columns (3 to 12 categories, 2% missing) and a 3-class ``label`` that depends on 10 of
    the numbers and 2 of the texts plus noise (so there is something to learn). Written once per size and seed,
    under the temporary folder; 1,000,000 x 50 is about 0.5 GB."""
    import numpy as np
    import pandas as pd

    path = Path(tempfile.gettempdir()) / "lit_nets_bench" / f"table_{rows}x{columns}_seed{seed}.csv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    numeric = columns - len(CATEGORIES) - 1
    scales = 10.0 ** rng.uniform(-2, 4, numeric)
    x = rng.standard_normal((rows, numeric)).astype(np.float32)
    logits = x[:, :10] @ rng.standard_normal((10, 3)).astype(np.float32)
    frame = pd.DataFrame((x * scales).astype(np.float32), columns=[f"x{i:02d}" for i in range(numeric)])
    for name, n in CATEGORIES.items():
        codes = rng.integers(0, n, rows)
        if name in ("region", "plan"):
            logits += rng.standard_normal((n, 3)).astype(np.float32)[codes]
        values = np.array([f"{name}_{k}" for k in range(n)], dtype=object)[codes]
        values[rng.random(rows) < 0.02] = None
        frame[name] = values
    for i in range(numeric):
        frame.iloc[rng.random(rows) < 0.05, i] = np.nan
    frame["label"] = np.array(["low", "mid", "high"])[(logits + rng.gumbel(size=logits.shape)).argmax(1)]
    partial = path.with_suffix(".partial")
    frame.to_csv(partial, index=False, float_format="%.6g")
    partial.rename(path)
    return path


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    """What ``fit`` does with the CSV file before training, phase by phase: read it, split it and fit the schema
    (which columns are numbers, medians, categories), encode every split as tensors."""
    from lit_nets.data import CSVDataModule

    start = time.perf_counter()
    dm = CSVDataModule(path=args.csv, target="label", batch_size=1024)
    frames = dm.frames()
    read = time.perf_counter()
    schema = dm.fitted_schema
    fitted = time.perf_counter()
    dm.setup("fit")
    encoded = time.perf_counter()
    x = dm.splits.train[0]
    return {
        "rows": len(frames["whole"]),
        "inputs": schema.input_size,
        "read_s": read - start,
        "schema_s": fitted - read,
        "encode_s": encoded - fitted,
        "total_s": encoded - start,
        "train_mb": x.numel() * x.element_size() / 2**20,
        "file_mb": Path(args.csv).stat().st_size / 2**20,
    }


def csv_loading(args: argparse.Namespace) -> list[dict[str, Any]]:
    """run_load in a fresh process at a quarter, half and all of --csv_rows: the phases' times, the time per
    million rows (flat when nothing grows faster than the rows) and the process's peak memory."""
    rows = []
    for n in (args.csv_rows // 4, args.csv_rows // 2, args.csv_rows):
        path = make_table(n, args.csv_columns)
        out = Path(tempfile.mkstemp(suffix=".json")[1])
        proc = subprocess.Popen([sys.executable, __file__, "--worker", "load", "--csv", str(path), "--out", str(out)])
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise SystemExit(f"loading {path} failed (status {status})")
        result = json.loads(out.read_text())
        out.unlink()
        result["peak_mb"] = usage.ru_maxrss / 1024
        result["s_per_million_rows"] = result["total_s"] / (n / 1e6)
        rows.append(result)
    numeric = args.csv_columns - len(CATEGORIES) - 1
    print(
        f"\nCSV loading ({args.csv_columns} columns: {numeric} numeric with 5% missing, {len(CATEGORIES)} text, "
        "the label), each size in a fresh process"
    )
    print("| rows | file MB | read + split s | schema s | encode s | total s | s per 1M rows | peak MB | train MB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['rows']:,} | {r['file_mb']:,.0f} | {r['read_s']:.1f} | {r['schema_s']:.1f} "
            f"| {r['encode_s']:.1f} | {r['total_s']:.1f} | {r['s_per_million_rows']:.1f} | {r['peak_mb']:,.0f} "
            f"| {r['train_mb']:,.0f} |"
        )
    return rows


def table_config(path: Path) -> str:
    """A config stacked on configs/mlp.yaml: the generated table instead of wine, batches of 512 rows."""
    config = Path(tempfile.mkstemp(suffix=".yaml")[1])
    config.write_text(
        "data:\n  class_path: lit_nets.data.CSVDataModule\n  init_args:\n"
        f"    path: {path}\n    target: label\n    sample: null\n    batch_size: 512\n"
    )
    return str(config)


RUNS = {"A": run_a, "B": run_b, "C": run_c, "G": run_g}
LABELS = {
    "A": "A: seed's plain loop",
    "B": "B: tuned plain loop",
    "C": "C: lit_nets fit",
    "G": "G: gradient boosting (one fit)",
}


def worker(args: argparse.Namespace) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)  # the offline-sample warning is printed once, by the table
    logging.getLogger("lit_nets").setLevel(logging.ERROR)
    result = run_load(args) if args.worker == "load" else RUNS[args.worker](args)
    Path(args.out).write_text(json.dumps(result))


def run_one(name: str, args: argparse.Namespace, configs: list[str]) -> dict[str, Any]:
    """One run in a fresh process: its wall time and peak memory measured from outside."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    command = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--out",
        str(out),
        "--epochs",
        str(args.epochs),
        "--device",
        args.device,
        "--configs",
        *configs,
    ]
    for option in ("precision", "batch_size", "synthetic", "data_dir"):
        if getattr(args, option):
            command += [f"--{option}", str(getattr(args, option))]
    if args.sample:
        command.append("--sample")
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"run {name} failed (status {status})")
    result = json.loads(out.read_text())
    out.unlink()
    if name == "C":  # the fit process is a child of the worker: its own wall time, and the larger peak
        wall = result.pop("wall_s_inner")
    rates = result["epoch_rates"][1:] or result["epoch_rates"]
    seconds = result.get("epoch_seconds") or []
    seconds = seconds[1:] or seconds  # the first epoch warms up
    peak = usage.ru_maxrss / 1024  # the largest of the process and the processes it waited for (C's fit)
    return {
        "run": LABELS[name],
        "samples_per_s": sum(rates) / len(rates),
        "epoch_s": sum(seconds) / len(seconds) if seconds else None,
        "wall_s": wall,
        "peak_mb": peak,
        "test_acc": result["test_acc"],
        "epoch_samples_per_s": result["epoch_rates"],
        "data": result["data"],
    }


def median_of(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs of the same thing: the median throughput and wall time, the largest peak."""
    import statistics

    row = dict(repeats[0])
    row["samples_per_s"] = statistics.median(r["samples_per_s"] for r in repeats)
    row["wall_s"] = statistics.median(r["wall_s"] for r in repeats)
    if all(r["epoch_s"] is not None for r in repeats):
        row["epoch_s"] = statistics.median(r["epoch_s"] for r in repeats)
    row["peak_mb"] = max(r["peak_mb"] for r in repeats)
    row["repeats"] = [
        {k: r[k] for k in ("samples_per_s", "wall_s", "test_acc", "epoch_samples_per_s")} for r in repeats
    ]
    return row


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = f"{names[0]} ({len(names)} logical cores)" if names else cpu
    info = {
        "cpu": cpu,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["cnn", "mlp", "all"], default="all", help="default: both")
    parser.add_argument("--config", action="append", default=[], help="a config stacked on the task's (repeatable)")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--epochs", type=int, help="default: the task config's max_epochs")
    parser.add_argument("--batch_size", type=int, help="default: the config's")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], help="default: fp32 (bf16-mixed on GPUs)")
    parser.add_argument("--synthetic", type=int, help="A and B on this many random MNIST-shaped images instead")
    parser.add_argument("--data_dir", help=f"the CNN's MNIST folder (default: {SHARED_DATA} if it holds MNIST/raw)")
    parser.add_argument("--sample", action="store_true", help="the CNN on the 5,000-digit sample even so")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3); the table shows the medians")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument(
        "--csv_rows",
        type=int,
        help="the MLP on a generated table of this many rows (e.g. 1000000) "
        "instead of wine, and the CSV loading phases timed at a quarter, half and all of it",
    )
    parser.add_argument("--csv_columns", type=int, default=50, help="columns of that table (default 50)")
    parser.add_argument("--worker", choices=[*RUNS, "load"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    results = []
    for task in ["cnn", "mlp"] if args.task == "all" else [args.task]:
        configs = [str(CONFIGS[task]), *args.config]
        loading = None
        if task == "mlp" and args.csv_rows:
            loading = csv_loading(args)
            configs.append(table_config(make_table(args.csv_rows, args.csv_columns)))
        epochs = args.epochs or int(load_config(configs).get("trainer", {}).get("max_epochs", 5))
        if loading and not args.epochs:
            epochs = 3  # not the 40 of wine's config
        task_args = argparse.Namespace(**{**vars(args), "epochs": epochs, "data_dir": mnist_dir(task, args)})
        task_args.sample = args.sample and task == "cnn"
        print(f"--- {task}: {', '.join(configs)}, {epochs} epochs, device {args.device}", file=sys.stderr, flush=True)
        runs = [name for name in args.runs if task == "mlp" or name != "G"]  # boosting is for tables
        repeats = {name: [] for name in runs}
        for _ in range(args.repeat):  # A, B, C in turn, so that a slow spell of the machine hits them all
            for name in runs:
                repeats[name].append(run_one(name, task_args, configs))
        rows = {name: median_of(runs) for name, runs in repeats.items()}
        summary = {
            "task": task,
            "configs": configs,
            "epochs": epochs,
            "repeat": args.repeat,
            "data": next(iter(rows.values()))["data"],
            "runs": list(rows.values()),
        }
        if loading:
            summary["csv_loading"] = loading
        for other in ("A", "B"):
            if "C" in rows and other in rows:
                summary[f"C/{other}"] = rows["C"]["samples_per_s"] / rows[other]["samples_per_s"]
                if rows["C"].get("epoch_s") and rows[other].get("epoch_s"):  # tables: the epoch with validation
                    summary[f"epoch C/{other}"] = rows["C"]["epoch_s"] / rows[other]["epoch_s"]
        results.append(summary)
        print_table(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    return results


def mnist_dir(task: str, args: argparse.Namespace) -> str | None:
    """The data_dir the CNN's runs get: --data_dir, else the full MNIST beside the repository, else None (the
    config's own, offline the sample). An empty folder makes the data module fall back to the sample."""
    if task != "cnn" or args.synthetic:
        return None
    if args.sample:
        return tempfile.mkdtemp(prefix="bench_sample_")
    if args.data_dir:
        return os.path.abspath(args.data_dir)
    return str(SHARED_DATA) if (SHARED_DATA / "MNIST" / "raw").is_dir() else None


def print_table(summary: dict[str, Any]) -> None:
    print(
        f"\n{summary['task']} on {summary['data']}: {summary['epochs']} epochs, samples/s averaged over epochs "
        f"2..{summary['epochs']}, median of {summary['repeat']} run(s) each"
    )
    print(
        "| run | train samples/s | epoch s (with validation) | wall s | peak MB | test acc |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: |"
    )
    for row in summary["runs"]:
        epoch = f"{row['epoch_s']:.2f}" if row.get("epoch_s") else ""
        print(
            f"| {row['run']} | {row['samples_per_s']:,.0f} | {epoch} | {row['wall_s']:.1f} | {row['peak_mb']:,.0f} "
            f"| {row['test_acc']:.4f} |"
        )
    ratios = [f"{key} = {summary[key]:.2f}" for key in ("C/A", "C/B") if key in summary]
    if ratios:
        print("throughput " + ", ".join(ratios))
    epochs = [f"{key} = {summary[key]:.2f}" for key in ("epoch C/A", "epoch C/B") if key in summary]
    if epochs:
        print("seconds per epoch with validation: " + ", ".join(epochs))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
