"""Temperature scaling and the F1 threshold as functions, and what an older checkpoint loads as."""

from __future__ import annotations

import pytest
import torch

from lit_nets.core.errors import UserError
from lit_nets.core.models.calibration import expected_calibration_error, f1_threshold, fit_temperature, nll


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with() -> None:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(20_000, 5, generator=generator) * 4
    y = torch.multinomial((z / 2.5).softmax(1), 1, generator=generator).squeeze(1)  # labels as softmax(z / 2.5) says
    temperature = fit_temperature(z, y)
    assert temperature == pytest.approx(2.5, rel=0.05)
    assert nll(z / temperature, y) < nll(z, y)
    assert expected_calibration_error((z / temperature).softmax(1), y) < expected_calibration_error(z.softmax(1), y)
    one = torch.randn(20_000, 1, generator=generator) * 3  # a binary model's single logit
    assert fit_temperature(one, torch.bernoulli(torch.sigmoid(one[:, 0] / 0.5), generator=generator)) == pytest.approx(
        0.5, rel=0.05
    )


def test_the_f1_threshold_is_the_best_cut_of_the_curve() -> None:
    p = torch.tensor([0.05, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9])
    y = torch.tensor([0, 0, 1, 1, 1, 0, 1, 1])
    # at 0.3: 5 of 5 positives found, 1 false positive (F1 0.909); at 0.5 only 3 (F1 0.667)
    assert f1_threshold(p, y) == pytest.approx(0.3)
    assert f1_threshold(p, torch.zeros(8, dtype=torch.long)) == 0.5


def test_a_checkpoint_from_before_calibration_loads_uncalibrated() -> None:
    from lit_nets.core.checkpoint import check_weights
    from lit_nets.models import MLPClassifier

    model = MLPClassifier(num_classes=2, input_shape=(4,), hidden=[8], calibrate="temperature", threshold="f1")
    old = {k: v for k, v in model.state_dict().items() if k not in ("temperature", "decision_threshold")}
    fresh = MLPClassifier(num_classes=2, input_shape=(4,), hidden=[8])
    fresh.temperature.fill_(3.0)
    check_weights(fresh, old, "old.ckpt")
    fresh.load_state_dict(old)
    assert float(fresh.temperature) == 1.0 and float(fresh.decision_threshold) == 0.5


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (dict(num_classes=3, threshold="f1"), "model.threshold is for two classes, the data has 3"),
        (dict(num_classes=2, threshold=1.5), "model.threshold must be between 0 and 1, or f1"),
    ],
)
def test_a_threshold_that_cannot_apply_is_one_line(args, said) -> None:
    from lit_nets.models import MLPClassifier

    with pytest.raises(UserError, match=said):
        MLPClassifier(input_shape=(4,), hidden=[8], **args)
