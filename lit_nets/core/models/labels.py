"""Several labels at once (multi-label): one sigmoid per label, a decision threshold per label chosen on validation
(the best F1 of each), and the measures of a multi-label model (torchmetrics' functional metrics, computed once per
epoch on every process's gathered outputs).

Metrics, logged as ``<stage>/<name>``: ``f1_micro``, ``f1_macro``, ``subset_acc`` (every label of an input right),
``map`` (mean average precision over the labels: no threshold), ``hamming`` (the share of wrong label decisions),
and per label ``f1/<label>`` and ``auc/<label>``; ``ece`` (each label's binary calibration error, averaged) and
``nll`` (the mean binary cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_nets.core.models.measures import N_BINS, f1_threshold, fit_temperature


def temperatures(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One temperature per label (a column of ``logits``), each fitted as a binary model's."""
    return torch.tensor([fit_temperature(logits[:, j : j + 1], targets[:, j]) for j in range(logits.shape[1])])


def thresholds(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The threshold with the best F1 of each label (0.5 for a label with a single value in ``targets``)."""
    return torch.tensor([f1_threshold(probs[:, j], targets[:, j]) for j in range(probs.shape[1])])


def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean binary cross-entropy of every label of every input (no positive weights: a likelihood)."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def measures(
    probs: torch.Tensor, targets: torch.Tensor, cut: torch.Tensor, names: list[str]
) -> dict[str, torch.Tensor]:
    """The metrics of the module docstring for probabilities ``probs`` (rows, labels), 0/1 ``targets`` and the
    thresholds ``cut``."""
    from torchmetrics.functional.classification import (
        binary_calibration_error,
        multilabel_auroc,
        multilabel_average_precision,
        multilabel_exact_match,
        multilabel_f1_score,
    )

    y = targets.long()
    decided = (
        probs >= cut.to(probs.device)
    ).long()  # integer predictions: torchmetrics applies no threshold of its own
    k = probs.shape[1]
    out = {
        "f1_micro": multilabel_f1_score(decided, y, k, average="micro"),
        "f1_macro": multilabel_f1_score(decided, y, k, average="macro"),
        "subset_acc": multilabel_exact_match(decided, y, k),
        "hamming": (decided != y).float().mean(),
        "map": multilabel_average_precision(probs, y, k, average="macro"),
    }
    per_f1 = multilabel_f1_score(decided, y, k, average="none")
    per_auc = multilabel_auroc(probs, y, k, average="none")
    for j, name in enumerate(names):
        out[f"f1/{name}"], out[f"auc/{name}"] = per_f1[j], per_auc[j]
    calibration = [
        binary_calibration_error(probs[:, j].contiguous(), y[:, j].contiguous(), n_bins=N_BINS) for j in range(k)
    ]
    out["ece"] = torch.stack(calibration).mean()
    return out


def confusion_counts(probs: torch.Tensor, targets: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
    """Per label, (true positives, false positives, false negatives, true negatives) at the thresholds ``cut``."""
    decided, y = probs >= cut.to(probs.device), targets.bool()
    return torch.stack([(decided & y).sum(0), (decided & ~y).sum(0), (~decided & y).sum(0), (~decided & ~y).sum(0)], 1)
