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
from typing import Any

from lit_nets.core.errors import UserError

TRAINER = ("fit", "validate", "test", "predict")
STOPPED = 128 + signal.SIGTERM


HELP = f"""usage: python -m lit_nets torchrun [torchrun's options] {{{",".join(TRAINER)}}} [the command's options]

A fit (or validate, test, predict) across processes and nodes through PyTorch's launcher, run in this process:
torchrun's options first (--nnodes, --nproc_per_node, --node_rank, --master_addr, --master_port, --rdzv_*, ...;
python -m torch.distributed.run --help lists them), then the lit_nets command with its own options. Exits 143 when
a SIGTERM stopped the nodes (--ckpt_path last resumes), as a single-process fit does; torchrun itself exits 1.

  python -m lit_nets torchrun --nnodes 2 --nproc_per_node 2 --node_rank 0 --master_addr HOST --master_port 29500 \\
      fit --config configs/cnn.yaml --config configs/ddp.yaml --trainer.num_nodes 2 --trainer.devices 2"""


def parse(argv: list[str]) -> Any:
    """torchrun's arguments, read by torchrun's own parser (so an option's value is never taken for the command),
    with the lit_nets command as the module it runs; a mistake is one line."""
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> None:
        raise UserError(f"torchrun: {message} (python -m lit_nets torchrun --help)")

    parser.error = error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    if args.training_script not in TRAINER:
        raise UserError(
            f"torchrun: after torchrun's options comes the lit_nets command ({', '.join(TRAINER)}), not "
            f"{args.training_script!r}: python -m lit_nets torchrun --nnodes 2 --nproc_per_node 2 --node_rank 0 "
            "--master_addr HOST --master_port 29500 fit --config ..."
        )
    args.training_script_args = [args.training_script, *args.training_script_args]
    args.training_script, args.module, args.no_python = "lit_nets", True, False
    return args


def main(argv: list[str]) -> None:
    """Launch ``python -m lit_nets COMMAND`` with torchrun's options; exit 143 when a SIGTERM stopped it."""
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP)
        return
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import run

    args = parse(argv)
    try:
        run(args)
    except SignalException as e:  # this node's launcher was signalled: its workers were stopped with the signal
        print(f"torchrun: stopped by {signal.Signals(e.sigval).name}", file=sys.stderr)
        sys.exit(128 + int(e.sigval))
    except ChildFailedError as e:
        if {failure.exitcode for failure in e.failures.values()} != {STOPPED}:
            raise
        print("torchrun: the workers were stopped by SIGTERM and saved (--ckpt_path last resumes)", file=sys.stderr)
        sys.exit(STOPPED)
    except ValueError as e:  # torchrun's checks of its options (--nproc_per_node abc, a rendezvous endpoint)
        raise UserError(f"torchrun: {str(e).strip().splitlines()[0]} (python -m lit_nets torchrun --help)") from None


def leave_process_group() -> None:
    """Under DDP, every process waits here for the others, then all leave the process group together, while nothing
    else runs. Lightning leaves it in an ``atexit`` handler, each process at its own moment of exit: a process whose
    peer had already gone was seen once to abort inside libtorch (SIGABRT, a multi-node resume in CI)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
