"""The measures of probabilities and the fits on them: temperature scaling (Guo et al. 2017), the negative
log-likelihood, the expected calibration error, and a binary threshold with the best F1. Shared by one-label
calibration (:mod:`lit_nets.core.models.calibration`) and several labels (:mod:`lit_nets.core.models.labels`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

N_BINS = 15  # Guo et al.'s bins for the expected calibration error and the reliability diagram


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature ``T`` that minimises the negative log-likelihood of ``softmax(logits / T)`` (a single logit:
    ``sigmoid``) on these targets (class indices)."""
    z, y = logits.detach().double().cpu(), targets.detach().cpu()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nll(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.01, 100.0))


def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean negative log-likelihood of the targets under these logits (one logit: a binary model's)."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], targets.to(logits.dtype))
    return F.cross_entropy(logits, targets)


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Guo et al.'s ECE: over 15 equal-width bins of the top class's probability, the share-weighted gap between
    confidence and accuracy (torchmetrics' ``multiclass_calibration_error``)."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    return multiclass_calibration_error(probs.float(), targets, probs.shape[1], n_bins=N_BINS)


def f1_threshold(positive: torch.Tensor, targets: torch.Tensor) -> float:
    """The threshold on the second class's probability with the best F1 on these targets (torchmetrics'
    precision-recall curve: the second class where its probability reaches the threshold)."""
    from torchmetrics.functional.classification import binary_precision_recall_curve

    if int(targets.sum()) in (0, len(targets)):
        return 0.5  # one class only: no curve to choose on
    precision, recall, thresholds = binary_precision_recall_curve(positive.float(), targets.long())
    f1 = 2 * precision[:-1] * recall[:-1] / (precision[:-1] + recall[:-1]).clamp(min=1e-12)
    return float(thresholds[int(f1.argmax())])
