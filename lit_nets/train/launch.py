"""``python -m lit_nets torchrun [torchrun's options] fit ...``: PyTorch's launcher (``torchrun``) for a fit across
nodes, with the exit status a supervisor needs.

    python -m lit_nets torchrun --nnodes 2 --nproc_per_node 2 --node_rank 0 --master_addr HOST --master_port 29500 \\
        fit --config configs/cnn.yaml --config configs/ddp.yaml --trainer.num_nodes 2 --trainer.devices 2

It is ``torchrun [options] -m lit_nets fit ...``, run in this process by torch's own ``torch.distributed.run``, with
one difference: when SIGTERM stops the pair (SLURM's preemption, a user, a Kubernetes eviction), ``torchrun`` exits
1 on both nodes, as it does for a crash; here both exit 143 (128 + SIGTERM), as a single-process ``fit`` does: the
node that got the signal because torch raises ``SignalException`` in its agent, the other because its worker saved
``last.ckpt`` and exited 143 (torch's ``ChildFailedError`` with that code only). ``--ckpt_path last`` resumes the
pair. Any other failure is torch's report and exit status 1, as with ``torchrun``.
"""

from __future__ import annotations

import signal
import sys

from lit_nets.core.errors import UserError

TRAINER = ("fit", "validate", "test", "predict")
STOPPED = 128 + signal.SIGTERM


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    """torchrun's options, and the lit_nets command (from its subcommand on)."""
    at = next((i for i, a in enumerate(argv) if a in TRAINER), None)
    if at is None:
        raise UserError(
            "torchrun: give torchrun's options, then the lit_nets command: python -m lit_nets torchrun --nnodes 2 "
            "--nproc_per_node 2 --node_rank 0 --master_addr HOST --master_port 29500 fit --config ..."
        )
    return argv[:at], argv[at:]


def main(argv: list[str]) -> None:
    """Launch ``python -m lit_nets COMMAND`` with torchrun's ``options``; exit 143 when a SIGTERM stopped it."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    options, command = split(argv)
    try:
        run(parse_args([*options, "-m", "lit_nets", *command]))
    except SignalException as e:  # this node's launcher was signalled: its workers were stopped with the signal
        print(f"torchrun: stopped by {signal.Signals(e.sigval).name}", file=sys.stderr)
        sys.exit(128 + int(e.sigval))
    except ChildFailedError as e:
        if {failure.exitcode for failure in e.failures.values()} != {STOPPED}:
            raise
        print("torchrun: the workers were stopped by SIGTERM and saved (--ckpt_path last resumes)", file=sys.stderr)
        sys.exit(STOPPED)
