"""scripts/slurm.sh cannot run here (no SLURM): its syntax, its resources against the Trainer arguments it passes,
and the environment SLURM gives each task, as Lightning's SLURM plugin reads it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm.sh"


def sbatch(name: str) -> str:
    return re.search(rf"^#SBATCH --{name}=(\S+)", SCRIPT.read_text(), re.M).group(1)


def test_the_script_parses_and_asks_for_what_it_trains_on() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    command = " ".join(SCRIPT.read_text().split("\\\n"))
    nodes = re.search(r"--trainer.num_nodes (\d+)", command).group(1)
    devices = re.search(r"--trainer.devices (\d+)", command).group(1)
    assert sbatch("nodes") == nodes and sbatch("ntasks-per-node") == devices  # one task per device
    assert sbatch("gres") == f"gpu:{devices}"
    assert sbatch("signal").startswith("SIGUSR1@")  # Lightning's auto-requeue listens for SIGUSR1
    assert re.search(r"^srun python -m lit_nets fit ", command, re.M)  # srun starts a task per device


def test_lightning_reads_each_tasks_rank_from_the_slurm_environment(monkeypatch) -> None:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    nodes, per_node = int(sbatch("nodes")), int(sbatch("ntasks-per-node"))
    # what SLURM sets for the last task of the job (node 1, local task 1), as srun starts it
    env = {
        "SLURM_NTASKS": str(nodes * per_node), "SLURM_PROCID": str(nodes * per_node - 1), "SLURM_LOCALID": "1",
        "SLURM_NODEID": str(nodes - 1), "SLURM_NODELIST": "gpu[07-08]", "SLURM_JOB_NAME": sbatch("job-name"),
        "SLURM_JOB_ID": "12345", "SLURM_NTASKS_PER_NODE": str(per_node),
    }  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert SLURMEnvironment.detect()
    slurm = SLURMEnvironment()
    assert (slurm.world_size(), slurm.global_rank(), slurm.local_rank(), slurm.node_rank()) == (4, 3, 1, 1)
    assert slurm.main_address == "gpu07" and 10000 <= slurm.main_port <= 19999  # rank 0's node; a port from the job
