#!/bin/bash
# SLURM example (not run here: we have no cluster): Lightning's DDP on 2 nodes x 2 GPUs, requeued automatically
# when the time limit or a pre-emption comes. Submit from the repository root:  sbatch scripts/slurm.sh
# Lightning reads the SLURM environment itself (ranks, master address); one task per GPU.
#SBATCH --job-name=lit_nets
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --gres=gpu:2
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --signal=SIGUSR1@90
#SBATCH --requeue
#SBATCH --output=slurm-%j.out
set -euo pipefail
source .venv/bin/activate
# 90 s before the limit SLURM sends SIGUSR1: Lightning's SLURMEnvironment (auto_requeue, on by default) saves
# hpc_ckpt_N.ckpt in the run's root folder and requeues the job, which restores it by itself. A job restarted by
# hand resumes with --ckpt_path last.
srun python -m lit_nets fit --config configs/cnn.yaml --config configs/ddp.yaml --config configs/preemptible.yaml \
    --trainer.num_nodes 2 --trainer.devices 2 --trainer.accelerator gpu
