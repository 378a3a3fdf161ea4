"""Several optimiser steps on one batch (``model.step_batch_size``): the very steps of the small batch, the
learning-rate schedules stepped as Lightning steps them, one line for what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.cli import CONFIGS, in_process, quiet_trainer
from lightning.pytorch import seed_everything

from lit_nets.core.data.samples import write_csv_sample
from lit_nets.core.errors import UserError
from lit_nets.data import CSVDataModule
from lit_nets.models import MLPClassifier

LINKS = ("num_classes", "input_shape", "mean", "std", "class_names", "class_weights", "schema")


def trained(tmp_path: Path, batch_size: int, epochs: int = 3, **kwargs) -> tuple[MLPClassifier, object]:
    """The MLP fitted on wine (178 real rows; 114 to train: 8 steps of 16 an epoch, the last of 2)."""
    path = write_csv_sample("wine", tmp_path / "wine.csv")
    dm = CSVDataModule(path=str(path), target="cultivar", batch_size=batch_size)
    seed_everything(0)
    model = MLPClassifier(**{name: getattr(dm, name) for name in LINKS}, dropout=0.2, lr=3e-3, **kwargs)
    trainer = quiet_trainer(max_epochs=epochs, deterministic=True)
    trainer.fit(model, dm)
    return model, trainer


def lr(trainer) -> float:
    return trainer.optimizers[0].param_groups[0]["lr"]


@pytest.mark.parametrize("scheduler", ["none", "step", "plateau"])
def test_steps_cut_from_a_large_batch_are_the_small_batchs_steps(tmp_path: Path, scheduler: str) -> None:
    small, small_trainer = trained(tmp_path, batch_size=16, scheduler=scheduler)
    fused, fused_trainer = trained(tmp_path, batch_size=64, scheduler=scheduler, step_batch_size=16)
    assert not fused.automatic_optimization and small.automatic_optimization
    assert fused_trainer.global_step == small_trainer.global_step == 3 * 8, "an optimiser step per 16 rows"
    for (name, a), b in zip(small.state_dict().items(), fused.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), f"{name} differs: the steps were not the small batch's"
    assert lr(fused_trainer) == pytest.approx(lr(small_trainer)), "the schedule was not stepped as Lightning steps it"
    if scheduler == "step":
        assert lr(fused_trainer) == pytest.approx(3e-3 * 0.1**3), "x0.1 after each of the 3 epochs"
    if scheduler == "plateau":  # stepped once an epoch with val/acc, as Lightning does it
        (config,) = fused_trainer.lr_scheduler_configs
        assert config.scheduler.last_epoch == small_trainer.lr_scheduler_configs[0].scheduler.last_epoch == 3
    accuracies = [float(t.callback_metrics["train/acc"]) for t in (fused_trainer, small_trainer)]
    assert accuracies[0] == pytest.approx(accuracies[1]), "the epoch's accuracy counts every step"


def test_a_one_cycle_schedule_runs_its_cycle_over_the_batches(tmp_path: Path) -> None:
    _, fused = trained(tmp_path, batch_size=64, scheduler="onecycle", step_batch_size=16)
    _, whole = trained(tmp_path, batch_size=64, scheduler="onecycle")  # a step per batch of 64, as Lightning steps
    schedules = [t.lr_scheduler_configs[0].scheduler for t in (fused, whole)]
    assert schedules[0].last_epoch == schedules[1].last_epoch == fused.estimated_stepping_batches == 3 * 2
    assert lr(fused) == pytest.approx(lr(whole)) and lr(fused) < 3e-3 / 5, "once per batch, to the cycle's end"
    assert float(fused.callback_metrics["train/acc"]) > 0.5


def test_a_step_batch_size_below_one_is_refused_in_one_line() -> None:
    with pytest.raises(UserError, match=r"model.step_batch_size must be at least 1 .*got 0"):
        MLPClassifier(num_classes=3, input_shape=(4,), step_batch_size=0)


def test_gradient_clipping_with_step_batch_size_ends_in_lightnings_one_line(tmp_path: Path, monkeypatch, capfd) -> None:
    args = ("--model.init_args.step_batch_size", "16", "--trainer.gradient_clip_val", "1.0")
    config = ("--config", str(CONFIGS / "mlp.yaml"))
    proc = in_process("fit", *config, *args, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode != 0
    (line,) = [line for line in proc.stderr.splitlines() if "gradient clipping" in line]
    assert "manual optimization" in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "lightning_logs").exists() or not list(tmp_path.glob("lightning_logs/*/checkpoints/*.ckpt"))
