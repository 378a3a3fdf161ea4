"""Figures: learning curves, confusion matrix, reliability diagram, conv filters and activations, worst mistakes.

Each function returns a matplotlib figure (the Agg backend: no screen needed) or writes a file; the callback in
:mod:`lit_nets.train.callbacks` logs them to TensorBoard and saves them as PNG in the run folder, and ``python -m
lit_nets plot RUN_DIR`` draws the curves of finished runs.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch

from lit_nets.core.errors import UserError


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG file at ``path`` (folders made as needed), close it, and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


# -- learning curves, from the event files ------------------------------------------------------------------
def read_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch values of train/loss, val/loss and val/acc of a run, read with tensorboard's own reader.

    Epochs come from the ``epoch`` scalar that Lightning logs at the same steps; a resumed run that continued in
    the same folder is read as one.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not run_dir.is_dir() or not list(run_dir.glob("events.out.tfevents.*")):
        raise UserError(f"{run_dir} is not a run folder (no TensorBoard event files in it)")
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    epoch_at = {e.step: int(e.value) for e in acc.Scalars("epoch")} if "epoch" in tags else {}
    curves = {}
    for tag in ("train/loss", "val/loss", "val/acc"):
        if tag in tags:
            by_epoch = {epoch_at.get(e.step, i) + 1: e.value for i, e in enumerate(acc.Scalars(tag))}
            curves[tag] = sorted(by_epoch.items())
    if not curves:
        raise UserError(f"{run_dir} has no train/loss, val/loss or val/acc to plot (logged: {', '.join(tags)})")
    return curves


def plot_curves(run_dirs: list[Path], labels: list[str] | None = None):
    """Loss (train solid, validation dashed) and validation accuracy against epoch, one colour per run."""
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = labels or [run.name for run in run_dirs]
    for i, (run, label) in enumerate(zip(run_dirs, labels, strict=True)):
        curves, colour = read_curves(run), f"C{i}"
        for tag, style, what in (("train/loss", "-", "train"), ("val/loss", "--", "val")):
            if tag in curves:
                x, y = zip(*curves[tag], strict=True)
                ax_loss.plot(x, y, style, color=colour, marker="o", markersize=3, label=f"{label} {what}")
        if "val/acc" in curves:
            x, y = zip(*curves["val/acc"], strict=True)
            ax_acc.plot(x, y, "-", color=colour, marker="o", markersize=3, label=label)
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="loss")
    ax_acc.set(title="Validation accuracy", xlabel="epoch", ylabel="val/acc")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("Learning curves: " + ", ".join(labels), fontsize=11)
    fig.tight_layout()
    return fig


# -- confusion matrix ------------------------------------------------------------------------------------------
def plot_confusion(confmat: Any, class_names: list[str], title: str):
    """A torchmetrics confusion-matrix metric (after updates) drawn by its own ``.plot``, with class names."""
    n = len(class_names)
    size = min(4 + 0.45 * n, 18)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    confmat.plot(ax=ax, labels=class_names, add_text=n <= 20)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    short = max(len(name) for name in class_names) <= 3
    ax.tick_params(axis="x", labelrotation=0 if short else 90)  # torchmetrics tilts them 45°
    ax.tick_params(axis="y", labelrotation=0)
    fig.tight_layout()
    return fig


def write_per_class(counts: torch.Tensor, class_names: list[str], path: Path) -> Path:
    """Precision, recall, F1 and support per class from confusion-matrix counts (rows: true, columns: predicted)."""
    counts = counts.double()
    tp = counts.diag()
    precision = tp / counts.sum(0).clamp(min=1)
    recall = tp / counts.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for i, name in enumerate(class_names):
            writer.writerow([name, f"{precision[i]:.4f}", f"{recall[i]:.4f}", f"{f1[i]:.4f}", int(counts[i].sum())])
    return path


# -- images ------------------------------------------------------------------------------------------------------
def _show(ax: Any, image: torch.Tensor, title: str = "", fontsize: int = 8) -> None:
    """One (C, H, W) image, uint8 or float, in an axis without ticks."""
    scale = 255.0 if image.dtype == torch.uint8 else 1.0
    image = image.detach().float().cpu() / scale
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def _grid(n: int, cell: float = 1.2, max_cols: int = 8):
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(cols * cell, rows * cell + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def plot_filters(weight: torch.Tensor, name: str = "conv1"):
    """The filters of a conv layer (out, in, k, k): grey for one input channel, colour for three."""
    out_channels, in_channels, k, _ = weight.shape
    w = weight.detach().float().cpu()
    if in_channels not in (1, 3):
        w = w.mean(1, keepdim=True)
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp(min=1e-12)  # each filter on its own scale: the pattern is what matters
    fig, axes = _grid(out_channels, cell=0.9)
    for i in range(out_channels):
        _show(axes[i], w[i], f"{i}", fontsize=7)
    fig.suptitle(f"{name} filters: {out_channels} × {in_channels}×{k}×{k} (each scaled to its own range)", fontsize=10)
    return fig


def plot_activations(image: torch.Tensor, maps: torch.Tensor, name: str, caption: str):
    """An input image and the feature maps (C, H, W) a layer makes of it."""
    fig, axes = _grid(len(maps) + 1, cell=1.0)
    _show(axes[0], image, "input", fontsize=7)
    m = maps.detach().float().cpu()
    lo, hi = m.amin(dim=(1, 2), keepdim=True), m.amax(dim=(1, 2), keepdim=True)
    m = (m - lo) / (hi - lo).clamp(min=1e-12)
    for i, fmap in enumerate(m, start=1):
        _show(axes[i], fmap[None], f"{i - 1}", fontsize=7)
    fig.suptitle(f"{name} activations of {caption}", fontsize=10)
    return fig


def plot_mistakes(items: list[tuple[float, torch.Tensor, int, int]], class_names: list[str], title: str):
    """The most confident mistakes: (confidence, image, true, predicted), worst first."""
    fig, axes = _grid(len(items), cell=1.45, max_cols=6)
    for ax, (confidence, image, true, pred) in zip(axes, items, strict=False):
        _show(ax, image, f"true {class_names[true]}\npred {class_names[pred]} ({confidence:.0%})", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_reliability(curves: dict[str, tuple[torch.Tensor, torch.Tensor]], title: str, n_bins: int = 15):
    """A reliability diagram (Guo et al. 2017): per bin of the top class's probability, the share of inputs whose top
    class was right, one line per entry of ``curves`` (label: (confidences, correct 0/1)), the diagonal where
    probability and accuracy agree, and below it how many inputs fall in each bin."""
    plt = pyplot()
    fig, (ax, counts_ax) = plt.subplots(2, 1, figsize=(5.2, 6.2), height_ratios=(3, 1), sharex=True)
    edges = torch.linspace(0, 1, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated: accuracy = probability")
    for i, (label, (confidence, correct)) in enumerate(curves.items()):
        bins = torch.bucketize(confidence.float().clamp(1e-6, 1), edges[1:-1], right=True)
        seen = torch.bincount(bins, minlength=n_bins).float()
        right = torch.bincount(bins, weights=correct.float(), minlength=n_bins)
        mean_conf = torch.bincount(bins, weights=confidence.float(), minlength=n_bins)
        used = seen > 0
        x, y = (mean_conf / seen.clamp(min=1))[used].numpy(), (right / seen.clamp(min=1))[used].numpy()
        ax.plot(x, y, marker="o", label=label)
        width = 0.9 / n_bins / max(len(curves), 1)
        counts_ax.bar((centres + (i - 0.5) * width).numpy(), seen.numpy(), width=width, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="accuracy of the top class", title=title)
    ax.legend(loc="upper left", fontsize=8)
    counts_ax.set(xlabel="probability of the top class", ylabel="inputs", yscale="log")
    fig.tight_layout()
    return fig


def plot_values(predicted: torch.Tensor, true: torch.Tensor, name: str, title: str) -> tuple[Any, Any]:
    """A value model's figures: predicted against true (the diagonal where they agree), and the residuals (true minus
    predicted) against the predicted value. At most 20,000 points are drawn (a seeded sample)."""
    plt = pyplot()
    if len(true) > 20_000:
        keep = torch.randperm(len(true), generator=torch.Generator().manual_seed(0))[:20_000]
        predicted, true = predicted[keep], true[keep]
    p, t = predicted.double().numpy(), true.double().numpy()
    alpha = 0.6 if len(t) < 2_000 else 0.25
    scatter, ax = plt.subplots(figsize=(5.2, 5.2))
    ax.scatter(t, p, s=6, alpha=alpha, linewidths=0)
    low, high = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="predicted = true")
    ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title=title)
    ax.legend(loc="upper left", fontsize=8)
    residual, ax = plt.subplots(figsize=(6.2, 3.8))
    ax.scatter(p, t - p, s=6, alpha=alpha, linewidths=0)
    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel=f"predicted {name}", ylabel="residual (true - predicted)", title=title)
    for fig in (scatter, residual):
        fig.tight_layout()
    return scatter, residual


def plot_label_counts(counts: torch.Tensor, names: list[str], cuts: torch.Tensor, title: str, most: int = 24):
    """Several labels: each label's 2x2 confusion counts (rows: true no / yes; columns: decided no / yes) at its
    threshold, up to ``most`` labels, in a grid."""
    plt = pyplot()
    shown = min(len(names), most)
    cols = min(shown, 6)
    rows = math.ceil(shown / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= shown:
            continue
        tp, fp, fn, tn = (int(v) for v in counts[k])
        grid = [[tn, fp], [fn, tp]]
        ax.imshow(grid, cmap="Blues")
        for i in range(2):
            for j in range(2):
                dark = grid[i][j] > max(tp, fp, fn, tn) / 2  # white on the dark cells
                ax.text(
                    j, i, f"{grid[i][j]:,}", ha="center", va="center", fontsize=8, color="white" if dark else "black"
                )
        ax.set_title(f"{names[k]} (at {float(cuts[k]):.2f})", fontsize=8)
    fig.suptitle(title + "\nrows: true no / yes; columns: decided no / yes", fontsize=9)
    fig.tight_layout()
    return fig


def write_label_counts(counts: torch.Tensor, names: list[str], cuts: torch.Tensor, path: Path) -> Path:
    """Per label: its threshold, true and false positives and negatives, precision, recall, F1, as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "threshold", "tp", "fp", "fn", "tn", "precision", "recall", "f1"])
        for name, cut, (tp, fp, fn, tn) in zip(names, cuts.tolist(), counts.tolist(), strict=True):
            precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
            f1 = 2 * precision * recall / max(precision + recall, 1e-12)
            writer.writerow([name, f"{cut:.4f}", tp, fp, fn, tn, f"{precision:.4f}", f"{recall:.4f}", f"{f1:.4f}"])
    return path


def plot_command(runs: list[Path], out: Path | None = None) -> None:
    """Learning curves of one or several runs.

    Train/val loss and val accuracy against epoch, read from each run's TensorBoard event files; several runs are
    drawn overlaid.

    Args:
        runs: run folders, e.g. lightning_logs/version_3.
        out: PNG to write (default: RUN/curves.png for one run, curves.png here for several).
    """
    runs = [Path(run) for run in runs]
    out = Path(out) if out else (runs[0] / "curves.png" if len(runs) == 1 else Path("curves.png"))
    save(plot_curves(runs), out)
    print(f"Curves: {out}")
    for run in runs:
        figures = sorted(p.name for p in run.glob("*.png") if p.resolve() != out.resolve())
        if figures:
            print(f"Figures of {run}: {', '.join(figures)}")
