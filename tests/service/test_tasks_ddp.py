"""The new tasks under DDP (2 gloo processes on the CPU): several labels' thresholds and temperatures are chosen from
every process's validation outputs (torchmetrics gathers them), so both processes choose alike; a value's metrics
are the whole validation split's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.cli import CONFIGS, in_process, run_cli

DDP = ("--config", str(CONFIGS / "ddp.yaml"), "--trainer.accelerator", "cpu", "--trainer.devices", "2")


def test_two_processes_choose_the_same_thresholds_and_temperatures_from_all_their_outputs(tmp_path: Path) -> None:
    from lit_nets.core.data.samples import diamond_labels_frame

    diamond_labels_frame().sample(2000, random_state=1).to_csv(tmp_path / "grades.csv", index=False)
    args = (
        "--data.path",
        "grades.csv",
        "--data.sample",
        "null",
        "--trainer.max_epochs",
        "3",
        "--early_stopping",
        "null",
    )
    probe = ("--trainer.callbacks+=helpers.probes.ChosenPerProcess", "--trainer.callbacks.init_args.output", "chosen")
    proc = run_cli(
        "fit", "--config", str(CONFIGS / "multilabel.yaml"), *DDP, *args, "--model.calibrate", "temperature", *probe,
        cwd=tmp_path, timeout=400,
    )  # fmt: skip
    assert "test/map" in proc.stdout, proc.stdout[-2000:]
    ranks = [(tmp_path / f"chosen.rank{r}.json").read_text().splitlines() for r in (0, 1)]
    assert len(ranks[0]) == 3 and ranks[0] == ranks[1], ranks  # a process on its own half would choose otherwise
    last = json.loads(ranks[0][-1])
    assert any(abs(t - 0.5) > 0.01 for t in last["threshold"]) and any(abs(t - 1) > 0.01 for t in last["temperature"])


def test_a_value_under_ddp_logs_the_rmse_of_the_whole_validation_split(tmp_path: Path) -> None:
    from helpers.cli import scalars

    mpg = ("--data.path", "data/autompg.csv", "--data.target", "mpg", "--data.sample", "autompg")
    config = ("--config", str(CONFIGS / "regression.yaml"))
    proc = run_cli("fit", *config, *DDP, *mpg, "--trainer.max_epochs", "3", cwd=tmp_path, timeout=400)
    assert "test/rmse" in proc.stdout, proc.stdout[-2000:]
    run = tmp_path / "lightning_logs" / "version_0"
    logged = scalars(run)["val/rmse"][-1][1]
    in_process(
        "validate", *config, *mpg, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), cwd=tmp_path, check=True
    )
    single = scalars(tmp_path / "lightning_logs" / "version_1")["val/rmse"][-1][1]
    print(f"val/rmse logged by 2 DDP processes {logged:.4f}, one process on the same checkpoint {single:.4f}")
    assert logged == pytest.approx(single, rel=0.05)  # up to the padded duplicate rows of the distributed sampler
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["value_target"]
