"""docs/scale.md's multi-node line (``python -m lit_nets torchrun``, torch's launcher), run for real as two nodes on
this machine: two launchers (node ranks 0 and 1, one CPU process each over gloo) train one run; SIGTERM to one node's
launcher saves and stops both with status 143; ``--ckpt_path last`` resumes the pair."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from helpers.cli import CONFIGS
from helpers.service import free_port

# docs/scale.md: python -m lit_nets torchrun --nnodes 2 --nproc_per_node 2 --node_rank 0 --master_addr HOST \
#     --master_port 29500 fit --config configs/cnn.yaml --config configs/ddp.yaml --trainer.num_nodes 2 ...
# here one CPU process per node, and 10 batches an epoch (defaults on: figures, the test after fit)
FIT = [
    *("fit", "--config", str(CONFIGS / "cnn.yaml"), "--config", str(CONFIGS / "ddp.yaml")),
    *("--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.accelerator", "cpu"),
    *("--trainer.limit_train_batches", "10", "--trainer.enable_progress_bar", "false"),
]


def node(rank: int, port: int, cwd: Path, *args: str) -> subprocess.Popen:
    """One node's ``python -m lit_nets torchrun`` (torch's launcher, in that process), started as a user starts it."""
    command = [sys.executable, "-m", "lit_nets", "torchrun", "--nnodes", "2", "--nproc_per_node", "1"]
    command += ["--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port), *FIT, *args]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(*nodes: subprocess.Popen, timeout: float = 400) -> list[tuple[int, str]]:
    """Each node's exit status and output; a node still running after ``timeout`` fails the test (after a kill)."""
    results = []
    for proc in nodes:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            raise AssertionError("a node did not finish: the other one hangs in a collective") from None
        results.append((proc.returncode, out))
    return results


def test_two_nodes_train_one_run_stop_together_on_sigterm_and_resume(tmp_path: Path) -> None:
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    port = free_port()
    nodes = [
        node(1, port, tmp_path, "--trainer.max_epochs", "40"),
        node(0, port, tmp_path, "--trainer.max_epochs", "40"),
    ]
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline and all(p.poll() is None for p in nodes):
        time.sleep(0.5)
    assert last.exists(), finish(*nodes, timeout=5)
    nodes[0].send_signal(signal.SIGTERM)  # node 1's torchrun, the one PID its user (or SLURM) started
    (status1, out1), (status0, out0) = finish(*nodes)
    # the launcher forwards the signal to its worker, which saves last.ckpt and stops; the other node's worker stops
    # too (143); both launchers exit 143, as a single-process fit stopped by SIGTERM does (torchrun's own: 1)
    assert (status1, status0) == (143, 143), f"node 1:\n{out1}\n\nnode 0:\n{out0}"
    assert "torchrun: stopped by SIGTERM" in out1 and "torchrun: the workers were stopped by SIGTERM" in out0
    stopped = torch.load(last, weights_only=True)
    epochs = int(stopped["epoch"]) + 1
    assert epochs < 40  # stopped by the signal, not finished
    port = free_port()
    resumed = finish(
        node(1, port, tmp_path, "--trainer.max_epochs", str(epochs + 1), "--ckpt_path", "last"),
        node(0, port, tmp_path, "--trainer.max_epochs", str(epochs + 1), "--ckpt_path", "last"),
    )
    (status1, out1), (status0, out0) = resumed
    assert status1 == 0 and status0 == 0, f"node 1:\n{out1}\n\nnode 0:\n{out0}"  # whole: a crash's reason is early
    assert "Resuming lightning_logs/version_0 in its own folder" in out0, out0[-3000:]
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]  # one run folder
    assert torch.load(last, weights_only=True)["epoch"] >= epochs  # trained on from where it stopped
    accuracy = float(out0.split("Test (best):  test/acc ")[1].split()[0])
    assert accuracy >= 0.85, out0[-2000:]
    assert (tmp_path / "lightning_logs" / "version_0" / "confusion_matrix_test.png").is_file()
