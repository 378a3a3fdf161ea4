"""The promise of the Quickstart: the seed config trains to a useful accuracy on the offline sample."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.cli import CONFIGS, REPO, run_cli, scalars

OFFLINE = ("--data.init_args.download", "false", "--trainer.enable_progress_bar", "false")


def fit_cnn_yaml(work: Path, *extra: str) -> float:
    run_cli("fit", "--config", str(CONFIGS / "cnn.yaml"), *OFFLINE, *extra, cwd=work)
    return scalars(work / "lightning_logs" / "version_0")["test/acc"][-1][1]


def test_quickstart_config_reaches_95_percent_on_the_sample(tmp_path: Path) -> None:
    acc = fit_cnn_yaml(tmp_path)
    assert acc >= 0.95, f"configs/cnn.yaml (5 epochs): test accuracy {acc:.4f} on the 1,000 held-out digits"
    # the README's Quickstart shows a run's summary: its figure holds within the 0.01 it says machines differ by
    shown = re.search(r"^Test \(best\):  test/acc ([\d.]+)", (REPO / "README.md").read_text(), re.M)
    assert abs(acc - float(shown.group(1))) <= 0.01, f"README {shown.group(1)}, this run {acc:.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quickstart_accuracy_holds_for_other_seeds(tmp_path: Path, seed: int) -> None:
    acc = fit_cnn_yaml(tmp_path, "--seed_everything", str(seed), "--data.init_args.seed", str(seed))
    assert acc >= 0.95, f"seed {seed}: test accuracy {acc:.4f}"
