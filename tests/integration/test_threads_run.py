"""A run says how many threads it uses and why, and keeps the number in its config and hyper-parameters."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from helpers.cli import CONFIGS, in_process


def test_a_fit_says_its_threads_and_records_them(tmp_path: Path, monkeypatch, capfd) -> None:
    monkeypatch.delenv("LIT_NETS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    args = ["--trainer.max_epochs", "1", "--test_after_fit", "false", "--figures.enabled", "false"]
    proc = in_process(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        *args,
        "--threads",
        "1",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    assert "Threads:      1 per process (--threads)" in proc.stderr
    run = tmp_path / "lightning_logs" / "version_0"
    assert yaml.safe_load((run / "hparams.yaml").read_text())["threads"] == 1
    assert yaml.safe_load((run / "config.yaml").read_text())["threads"] == 1
    monkeypatch.delenv("LIT_NETS_THREADS", raising=False)  # the run set it for the processes it would start
    proc = in_process(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        *args,
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
        check=True,
    )
    # no number given: the share, with how it was found, looked at again as the run goes
    assert re.search(
        r"Threads:      \d per process \(the CPU share: \d cores? this process may use, other processes "
        r"keep [\d.]+ of the host's \d+ busy \(load average\); looked at again each epoch\)",
        proc.stderr,
    )
