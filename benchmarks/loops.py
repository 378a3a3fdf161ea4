"""What does ``lit_nets fit`` cost against plain PyTorch loops on the same model and data? Times the seed's plain
loop (A), a tuned plain loop (B) and ``python -m lit_nets fit`` (C).

    python benchmarks/loops.py                                     # the CNN on MNIST, the MLP on wine
    python benchmarks/loops.py --task cnn --epochs 5 --json loops.json
    python benchmarks/loops.py --task cnn --config configs/fashion_mnist.yaml         # any image data config on top
    python benchmarks/loops.py --task mlp --config configs/diamonds.yaml --epochs 4   # a table at size
    python benchmarks/loops.py --task cnn --runs A B --device cuda --precision bf16-mixed --batch_size 1024 \
        --synthetic 60000

The configs stack as the command line stacks them (the task's config, then each ``--config``), parsed by the CLI's
own parser; A and B build the model and data module through it (:func:`harness.build`) and C is the command itself,
so the three share the data split, the model (the same layers and initial weights), the optimiser, learning rate,
the optimiser's batch (the model's ``step_batch_size`` where a config sets one: C cuts its larger batches into such
steps), seed and number of epochs. The CNN trains on the full MNIST when ``--data_dir`` (or ``../shared/data``
beside the repository) holds ``MNIST/raw``, otherwise on what the config names, which offline is the 5,000-digit
sample; ``--sample`` asks for the sample even where the full set is.

- A, the seed's loop as its cheat sheet writes it: a torchvision data set that makes a PIL image of each sample and
  runs ``ToTensor`` and ``Normalize`` on it, a ``DataLoader(batch_size, shuffle=True)``, ``loss.item()`` summed
  every step. For 1x28x28 images the data set is torchvision's own ``datasets.MNIST`` over idx files of the split;
  table rows come as a ``TensorDataset`` of standardised rows, with a validation pass after each epoch.
- B, a tuned plain loop: uint8 tensors in memory, a random permutation cut into index batches, normalisation on
  the batch, ``channels_last``, the fused optimiser, no host sync in the step, the process settings of
  :mod:`lit_nets.core.runtime`; it keeps the epoch's training loss and accuracy on the device, as C logs them, so both
  do the same work.
- C, ``python -m lit_nets fit`` in a subprocess, exactly as a user runs it (TensorBoard, checkpoints, progress bar,
  figures, the test of the best checkpoint at the end), plus the Throughput callback that clocks it.

Each run is its own process, so its peak memory (max RSS) is its own. Reported per run: training samples/s (the median
over epochs after the first, which warms up), for tables the seconds per epoch with validation (the same median),
end-to-end wall time of the process, peak memory, and the test accuracy of the model after the last epoch; then the
ratios C/A and C/B, each the median over the repeats of one repeat's C against its A or B (:func:`ratios`).
``--table ROWS`` trains the MLP on a generated practitioner's table (:func:`harness.make_table`) instead.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import REPO, build, config_value, machine, make_table, median, mnist_dir, print_table, worker_result

HERE = Path(__file__).resolve().parent
TASKS = {"cnn": REPO / "configs" / "cnn.yaml", "mlp": REPO / "configs" / "mlp.yaml"}


def overrides(args: argparse.Namespace) -> list[str]:
    """The options as command-line arguments after the configs: what A, B and C all get."""
    given = [f"--seed_everything={args.seed}"] if args.seed is not None else []
    # the same torch threads for A, B and C: chosen by the load (the CLI's default), a run that starts while the load
    # average still counts the run before gets 1 thread; C's fit goes back to 2 after an epoch, A's and B's loops not
    given.append(f"--threads={args.threads}")
    if args.batch_size:
        given.append(f"--data.init_args.batch_size={args.batch_size}")
    if args.data_dir:
        given.append(f"--data.init_args.data_dir={args.data_dir}")
    if args.sample:
        given.append("--data.init_args.download=false")  # an empty data_dir and no download: the sample
    if args.table:
        path = make_table(args.table, args.table_columns)
        given += [f"--data.init_args.path={path}", "--data.init_args.target=label", "--data.init_args.sample=null"]
    return given


def built(args: argparse.Namespace) -> tuple[Any, Any]:
    """The data module and model of A and B, as C's command builds them (``--synthetic``: random digits instead of
    the data, the model unchanged)."""
    dm, model = build(args.configs, overrides(args))
    if args.synthetic:
        dm = synthetic_data(args.synthetic, dm.batch_size, seed=0)
        dm.setup("fit")
    return dm, model


def step_size(dm: Any, model: Any) -> int:
    """Inputs per optimiser step: the model's ``step_batch_size`` where the config sets one (C then cuts each batch
    into such steps), else the batch size."""
    return model.hparams.get("step_batch_size") or dm.batch_size


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

    dm, model = built(args)
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
    loader = DataLoader(train_set, batch_size=step_size(dm, model), shuffle=True)
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
        "threads": torch.get_num_threads(),
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
class PlainLoop:
    """B, the tuned plain loop, over a model and its data module's splits: one epoch a call (:meth:`epoch`). ``run``
    needs ``device`` and ``precision`` (the options, or :mod:`beside`'s)."""

    def __init__(self, model: Any, dm: Any, run: Any) -> None:
        import torch

        self.model, self.dm, self.run = model.to(run.device), dm, run  # normalize + net; CNNs are channels_last
        x, y = dm.splits.train
        self.x, self.y = x.to(run.device), y.to(run.device)
        self.optimizer = model.build_optimizer()  # as C's: fused kernels where torch has them
        self.generator = torch.Generator().manual_seed(0)
        self.step = step_size(dm, model)
        self.table = x.dtype != torch.uint8

    def epoch(self, validate: bool) -> tuple[float, float | None, float, float]:
        """Train an epoch: its seconds, the seconds with a validation pass after it (``validate``, else None), the
        training loss and accuracy."""
        import torch
        import torch.nn.functional as F

        model, x, y, device = self.model, self.x, self.y, self.run.device
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=self.generator).to(device)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
        for batch in order.split(self.step):
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.run):
                logits = model(x[batch])
                loss = F.cross_entropy(logits, y[batch])
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():  # the epoch's loss and accuracy, as C logs them: on the device, no host sync
                loss_sum += loss.detach() * len(batch)
                correct += (logits.argmax(1) == y[batch]).sum()
        sync(device)
        trained = time.perf_counter() - start
        train_loss, train_acc = float(loss_sum) / len(x), int(correct) / len(x)
        if not validate:
            return trained, None, train_loss, train_acc
        model.eval()
        validation_pass(model, self.dm.splits.val[0], self.dm.splits.val[1], self.dm.batch_size, device)
        return trained, time.perf_counter() - start, train_loss, train_acc


def run_b(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from lit_nets.core.runtime import freeze_heap, tune

    dm, model = built(args)
    tune()  # the process settings lit_nets uses: malloc keeps freed memory, a cached GPU check,
    freeze_heap()  # and no garbage collections of the start-up objects
    loop = PlainLoop(model, dm, args)
    epochs = [loop.epoch(validate=loop.table) for _ in range(args.epochs)]  # tables: the validation pass, timed
    model.eval()
    tx, ty = dm.splits.test
    return {
        "epoch_rates": [len(loop.x) / trained for trained, *_ in epochs],
        "epoch_seconds": [with_validation for _, with_validation, *_ in epochs if with_validation is not None],
        "test_acc": accuracy(model, tx, ty, args.device),
        "data": dm.source,
        "train_loss": epochs[-1][2],
        "train_acc": epochs[-1][3],
        "threads": torch.get_num_threads(),
    }


# -- C: lit_nets fit ---------------------------------------------------------------------------------------------
def run_c(args: argparse.Namespace) -> dict[str, Any]:
    """``python -m lit_nets fit`` in its own process; its throughput and metrics read back from TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_nets.deploy.inference import load_classifier

    work = Path(tempfile.mkdtemp(prefix="bench_c_"))
    beside = work / "beside.json"
    # --interleave: B's epochs in this process too, each just before C's (beside.py; first, so that Throughput's
    # clock starts after B's epoch)
    interleave = ["--trainer.callbacks+=beside.PlainEpochsBeside", f"--trainer.callbacks.output={beside}"]
    if args.precision:
        interleave.append(f"--trainer.callbacks.precision={args.precision}")
    command = [
        sys.executable,
        "-m",
        "lit_nets",
        "fit",
        *[f"--config={c}" for c in map(os.path.abspath, args.configs)],
        f"--trainer.max_epochs={args.epochs}",
        *(interleave if args.interleave else []),
        "--trainer.callbacks+=lit_nets.train.callbacks.Throughput",
        f"--trainer.accelerator={'cpu' if args.device == 'cpu' else 'gpu'}",
        *overrides(args),
    ]
    if args.precision:
        command.append(f"--trainer.precision={args.precision}")
    if args.synthetic:
        raise SystemExit("--synthetic is for A and B only: C trains on what the config names")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"C failed ({' '.join(command)}):\n{proc.stderr[-3000:]}")
    run_dir = work / "lightning_logs" / "version_0"
    events = EventAccumulator(str(run_dir))
    events.Reload()
    rates = [e.value for e in events.Scalars("perf/train_samples_per_sec")]
    stamps = [e.wall_time for e in events.Scalars("val/loss")]  # one per epoch; an epoch: the time between two
    seconds = [b - a for a, b in itertools.pairwise(stamps)]
    found = json.loads(beside.read_text()) if args.interleave else {}
    dm, _ = build(args.configs, overrides(args))
    model = load_classifier(run_dir / "checkpoints" / "last.ckpt")
    tx, ty = dm.splits.test
    return {
        "epoch_rates": rates,
        "epoch_seconds": found.get("fit", seconds),  # interleaved: the stamps would count B's epochs in
        "beside": found.get("plain"),
        "test_acc": accuracy(model, tx, ty, "cpu"),
        "wall_s_inner": wall,
        "data": dm.source,
        "threads": int(proc.stderr.split("Threads:")[1].split()[0]),  # the fit's own line
    }


RUNS = {"A": run_a, "B": run_b, "C": run_c}
LABELS = {"A": "A: seed's plain loop", "B": "B: tuned plain loop", "C": "C: lit_nets fit"}
PASSED = (
    *("configs", "epochs", "device", "precision", "batch_size", "synthetic", "data_dir", "sample", "seed", "table"),
    "threads",
    "interleave",
)


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run in a fresh process (this script as its worker): its wall time and peak memory measured from outside."""
    passed = [f"--pass={json.dumps({k: getattr(args, k) for k in PASSED})}"]
    result, wall, peak = worker_result(__file__, ["--worker", name, *passed])
    if name == "C":  # the fit process is a child of the worker: its own wall time (the peak is the larger one)
        wall = result.pop("wall_s_inner")
    rates = result["epoch_rates"][1:] or result["epoch_rates"]  # the first epoch warms up
    seconds = result.get("epoch_seconds") or []
    seconds = seconds[1:] or seconds
    beside = {}
    if result.get("beside"):  # --interleave: C's epochs against the B epoch just before each, after the first
        pairs = list(zip(result["beside"], result["epoch_seconds"], strict=True))[1:]
        beside = {"beside_epoch_s": median([b for b, _ in pairs]), "one_process": median([c / b for b, c in pairs])}
    return {  # medians over the epochs: on a shared VM a few epochs take a third longer, whichever run they hit
        **beside,
        "run": LABELS[name],
        "samples_per_s": median(rates),
        "epoch_s": median(seconds) if seconds else None,
        "epoch_seconds": result.get("epoch_seconds") or [],
        "wall_s": wall,
        "peak_mb": peak,
        "test_acc": result["test_acc"],
        "epoch_samples_per_s": result["epoch_rates"],
        "data": result["data"],
        "threads": result["threads"],
    }


def median_of(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs of the same thing: the median throughput and wall time, the largest peak."""
    row = dict(repeats[0])
    row["samples_per_s"] = median([r["samples_per_s"] for r in repeats])
    row["wall_s"] = median([r["wall_s"] for r in repeats])
    if all(r["epoch_s"] is not None for r in repeats):
        row["epoch_s"] = median([r["epoch_s"] for r in repeats])
    row["peak_mb"] = max(r["peak_mb"] for r in repeats)
    row["repeats"] = [
        {k: r[k] for k in ("samples_per_s", "epoch_s", "wall_s", "test_acc", "epoch_samples_per_s", "epoch_seconds")}
        | {"threads": r["threads"]}
        for r in repeats
    ]
    row["threads"] = "/".join(sorted({str(r["threads"]) for r in repeats}))
    return row


def ratios(c: list[dict[str, Any]], other: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """C against A or B, repeat by repeat: the runs of one repeat follow each other within seconds, so a slow spell
    of the machine (minutes long on our VM) hits both sides of a ratio. ``C/<name>`` is the median ratio of training
    samples/s, ``epoch C/<name>`` of the seconds per epoch with validation (tables); ``... each`` lists every
    repeat's."""
    found: dict[str, Any] = {}
    speed = [mine["samples_per_s"] / theirs["samples_per_s"] for mine, theirs in zip(c, other, strict=True)]
    found[f"C/{name}"], found[f"C/{name} each"] = median(speed), speed
    if all(r.get("epoch_s") for r in [*c, *other]):
        epoch = [mine["epoch_s"] / theirs["epoch_s"] for mine, theirs in zip(c, other, strict=True)]
        found[f"epoch C/{name}"], found[f"epoch C/{name} each"] = median(epoch), epoch
    return found


def report(summary: dict[str, Any]) -> None:
    """The task's table and its ratios, as docs/benchmarks.md shows them."""
    rows = [
        [
            row["run"],
            f"{row['samples_per_s']:,.0f}",
            f"{row['epoch_s']:.2f}" if row.get("epoch_s") else None,
            f"{row['wall_s']:.1f}",
            f"{row['peak_mb']:,.0f}",
            f"{row['test_acc']:.4f}",
            row["threads"],
        ]
        for row in summary["runs"]
    ]
    title = (
        f"{summary['task']} on {summary['data']}: {summary['epochs']} epochs, medians over epochs "
        f"2..{summary['epochs']}, median of {summary['repeat']} run(s) each"
    )
    headers = ["run", "train samples/s", "epoch s (with validation)", "wall s", "peak MB", "test acc", "threads"]
    print_table(headers, rows, title)

    def said(keys: tuple[str, ...]) -> list[str]:
        each = {k: ", ".join(f"{r:.2f}" for r in summary[f"{k} each"]) for k in keys if k in summary}
        return [f"{k} = {summary[k]:.2f} (repeats: {repeats})" for k, repeats in each.items()]

    if throughput := said(("C/A", "C/B")):
        print("throughput " + "; ".join(throughput))
    if epochs := said(("epoch C/A", "epoch C/B", "epoch C/B, one process")):
        print("seconds per epoch with validation: " + "; ".join(epochs))
    if "B beside C: s an epoch" in summary:
        print(f"B's epochs in C's process (--interleave): {summary['B beside C: s an epoch']:.3f} s, median")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run A, B and C of each task ``--repeat`` times in turn, print the tables, return their summaries."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["cnn", "mlp", "all"], default="all", help="default: both")
    parser.add_argument("--config", action="append", default=[], help="a config stacked on the task's (repeatable)")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--epochs", type=int, help="default: the stacked configs' trainer.max_epochs")
    parser.add_argument("--batch_size", type=int, help="default: the config's")
    parser.add_argument("--seed", type=int, help="default: the config's seed_everything")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], help="default: fp32 (bf16-mixed on GPUs)")
    parser.add_argument("--synthetic", type=int, help="A and B on this many random MNIST-shaped images instead")
    parser.add_argument("--data_dir", help="the CNN's MNIST folder (default: ../shared/data if it holds MNIST/raw)")
    parser.add_argument("--sample", action="store_true", help="the CNN on the 5,000-digit sample even so")
    parser.add_argument("--table", type=int, help="the MLP on a generated table of this many rows (3 epochs)")
    parser.add_argument("--table_columns", type=int, default=50, help="columns of that table (default 50)")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch's threads in A, B and C alike (default: the cores this process may use)",
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="C's process also runs one epoch of B before each of its own: an epoch-by-epoch C/B from one process",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3); the table shows the medians")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--pass", dest="passed", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # one run, in this fresh process
        import logging

        logging.getLogger("lit_nets").setLevel(logging.ERROR)  # the offline-sample warning: the table says the data
        run_args = argparse.Namespace(**json.loads(args.passed))
        Path(args.out).write_text(json.dumps(RUNS[args.worker](run_args)))
        return []

    results = []
    for task in ["cnn", "mlp"] if args.task == "all" else [args.task]:
        configs = [str(TASKS[task]), *args.config]
        table = args.table if task == "mlp" else None
        epochs = args.epochs or (3 if table else int(config_value(configs, "trainer.max_epochs", 5)))
        data_dir = mnist_dir(args.data_dir, args.sample) if task == "cnn" and not args.synthetic else None
        task_args = argparse.Namespace(
            **{**vars(args), "configs": configs, "epochs": epochs, "data_dir": data_dir, "table": table}
        )
        task_args.sample = args.sample and task == "cnn"
        print(f"--- {task}: {', '.join(configs)}, {epochs} epochs, device {args.device}", file=sys.stderr, flush=True)
        repeats: dict[str, list[dict[str, Any]]] = {name: [] for name in args.runs}
        for _ in range(args.repeat):  # A, B, C in turn, so that a slow spell of the machine hits them all
            for name in args.runs:
                repeats[name].append(run_one(name, task_args))
        rows = {name: median_of(runs) for name, runs in repeats.items()}
        summary: dict[str, Any] = {
            "task": task,
            "configs": configs,
            "epochs": epochs,
            "repeat": args.repeat,
            "data": next(iter(rows.values()))["data"],
            "runs": list(rows.values()),
        }
        for other in ("A", "B"):
            if "C" in rows and other in rows:
                summary.update(ratios(repeats["C"], repeats[other], other))
        if args.interleave and "C" in repeats:
            summary["B beside C: s an epoch"] = median([r["beside_epoch_s"] for r in repeats["C"]])
            each = [r["one_process"] for r in repeats["C"]]
            summary["epoch C/B, one process"], summary["epoch C/B, one process each"] = median(each), each
        results.append(summary)
        report(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
