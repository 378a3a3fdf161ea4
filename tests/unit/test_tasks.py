"""The task as a value: what a value target changes in the loss, the monitored metric and the model's checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lit_nets.core.errors import UserError
from lit_nets.core.models.tasks import Task, follow_task

PRICE = {"name": "price", "mean": 4000.0, "std": 2000.0, "low": 300.0, "high": 19000.0}


@pytest.mark.parametrize("loss", ["mse", "huber", "mae"])
def test_a_value_loss_is_taken_on_the_standardised_target(loss) -> None:
    from lit_nets.models import MLPClassifier

    model = MLPClassifier(num_classes=1, input_shape=(4,), hidden=[8], value_target=PRICE, loss=loss)
    out, y = torch.tensor([[0.5], [-1.0], [3.0]]), torch.tensor([6000.0, 1000.0, 4000.0])
    z = torch.tensor([1.0, -1.5, 0.0])  # (y - 4000) / 2000
    expected = {"mse": F.mse_loss, "huber": F.huber_loss, "mae": F.l1_loss}[loss](out[:, 0], z)
    assert float(model.compute_loss(out, y)) == pytest.approx(float(expected))
    from lit_nets.core.models.heads import values

    assert values(model, out).tolist() == [5000.0, 2000.0, 10000.0]
    assert values(model, torch.tensor([[20.0], [-9.0]])).tolist() == [19000.0, 300.0]  # within the training range


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (dict(num_classes=1, value_target=PRICE, loss="ce"), "model.loss 'ce' is for classes; the data's target"),
        (dict(num_classes=3, loss="mse"), "model.loss 'mse' is for a value (regression)"),
        (dict(num_classes=1, value_target=PRICE, loss="mse", calibrate="temperature"), "a value (regression) has one"),
        (dict(num_classes=1, value_target={**PRICE, "std": 0.0}, loss="mse"), "the target's std must be a positive"),
    ],
)
def test_a_loss_or_option_of_the_other_task_is_one_line(args, said) -> None:
    from lit_nets.models import MLPClassifier

    with pytest.raises(UserError) as error:
        MLPClassifier(input_shape=(4,), hidden=[8], **args)
    assert said in str(error.value)


def test_a_value_run_follows_val_rmse_where_the_config_names_a_metric_of_classes() -> None:
    config = {
        "checkpoint": {"monitor": "val/acc", "mode": "max"},
        "early_stopping": {"class_path": "EarlyStopping", "init_args": {"monitor": "val/loss", "mode": "min"}},
    }
    said = follow_task(config, Task(kind="value"))
    assert config["checkpoint"] == {"monitor": "val/rmse", "mode": "min"}
    assert config["early_stopping"]["init_args"]["monitor"] == "val/loss"  # a value logs it: left as given
    assert said == "checkpoint on val/rmse (min): the metric of a value task"
    assert follow_task(config, Task(kind="value")) == ""
    assert Task.of(None) == Task() and Task.of(PRICE).value and math.isinf(Task().high)


def test_the_task_a_config_asks_for_is_read_once_for_fit_and_cv() -> None:
    from lit_nets.core.models.tasks import kind_in_config

    assert kind_in_config({"path": "x.csv", "task": "value", "target": "price"}) == "value"
    assert kind_in_config({"path": "x.csv", "target": ["a", "b"]}) == "labels"
    assert kind_in_config({"root": "images", "manifest": None}) == "labels"  # ImageLabelsDataModule's arguments
    assert kind_in_config({"path": "x.csv", "target": "label"}) == kind_in_config(None) == "classes"
