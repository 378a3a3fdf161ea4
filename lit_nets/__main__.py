"""``python -m lit_nets ...`` and the ``lit-nets`` console script: the one door to every subcommand.

Trainer subcommands (fit, validate, test, predict) go to the Lightning CLI (:mod:`lit_nets.train.cli`), ``cv``,
``tune`` and ``torchrun`` to :mod:`lit_nets.train`; ``plot``, ``explain``, ``export`` and ``serve`` are plain tools
with their own arguments (:mod:`lit_nets.tools`). Bad input ends here as one line ``error: ...`` and exit status 2.
"""

from __future__ import annotations

import difflib
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any

from lit_nets.core.errors import UserError, find_user_error

# every subcommand with its line of the top-level help (Lightning's CLI knows only the first four)
SUBCOMMANDS = {
    "fit": "train a model, then test its best checkpoint (--ckpt_path last resumes a run)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split: metrics, confusion matrix, worst mistakes",
    "predict": "predictions.csv for new files (data.predict_path / data.predict_root) or the test split",
    "cv": "k-fold cross-validation of a config: a fit per fold, mean ± std of every metric, out-of-fold predictions",
    "tune": "a hyper-parameter search (Optuna): pruned, resumable, each trial a run; best.yaml to train the winner",
    "torchrun": "a fit across nodes through PyTorch's torchrun, exiting 143 when a SIGTERM stopped it (resumable)",
    "plot": "learning curves of one or several run folders",
    "explain": "why a model decided: Grad-CAM on image files, or column contributions to table rows",
    "export": "state_dict, TorchScript, torch.export and ONNX files of a checkpoint, with parity checks",
    "serve": "an HTTP service and web page for a checkpoint or an exported model",
    "track": "send a run folder to MLflow: what a tracking server that stopped answering missed, or a whole run",
}


def top_level_help(prog: str) -> str:
    """What ``python -m lit_nets --help`` prints: every subcommand with a line that says what it does."""
    import lit_nets

    about = lit_nets.__doc__.split(": ", 1)[1].strip()  # "train an MLP on CSV data or a CNN on images ..."
    lines = [
        f"usage: {prog} SUBCOMMAND [options]",
        "",
        about[0].upper() + about[1:],
        "",
        "Training and evaluation (Lightning's CLI: --config FILE, --print_config, --trainer.*, --model.*, --data.*):",
    ]
    for name, line in SUBCOMMANDS.items():
        if name == "plot":
            lines += ["", "Tools:"]
        lines.append(f"  {name:<10}{line}")
    lines += ["", f"{prog} SUBCOMMAND --help lists the options of one; README.md shows every workflow."]
    return "\n".join(lines)


def program() -> str:
    """How the usage lines name this program."""
    return "lit-nets" if Path(sys.argv[0]).name == "lit-nets" else "python -m lit_nets"


def quick(argv: list[str], prog: str) -> bool:
    """The answers that need neither torch nor Lightning (their import is most of a command's start-up): the
    top-level help, the version, a mistyped subcommand (one line, exit 2) and torchrun's help. True when answered."""
    if not argv or argv[0] in ("-h", "--help"):
        print(top_level_help(prog))
        sys.exit(0 if argv else 2)
    if argv[0] == "--version":
        from lit_nets import __version__

        print(f"lit_nets {__version__}")
        return True
    if not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:
        close = difflib.get_close_matches(argv[0], list(SUBCOMMANDS), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        print(
            f"error: unknown subcommand {argv[0]!r}; {hint}The subcommands: {', '.join(SUBCOMMANDS)} "
            f"({prog} --help says what each does)",
            file=sys.stderr,
        )
        sys.exit(2)
    if argv[0] == "torchrun" and (len(argv) == 1 or argv[1] in ("-h", "--help")):
        from lit_nets.train.launch import HELP

        print(HELP)
        return True
    return False


def run() -> None:
    """Answer at once what needs no torch (:func:`quick`); else import the CLI without garbage collections, then
    run it.

    Importing Lightning, torch and jsonargparse makes ~500,000 long-lived objects, and Python's garbage collector
    walks them all in ~7 full collections on the way (0.6 s of a 5 s start on our CPU). None run while importing,
    and the imported objects go out of the collector's reach (``gc.freeze``) before it is on again: every object
    made while it was off counts as new, so the first allocation after ``gc.enable()`` started a collection that
    walked all of them (0.26-0.36 s). The import's own cyclic garbage stays frozen with them (about 4 MB of a
    0.94 GB process). ``LIT_NETS_TUNE=0`` leaves the collector as it is.
    """
    if quick(sys.argv[1:], program()):
        return
    tune = os.environ.get("LIT_NETS_TUNE") != "0"
    if tune:
        gc.disable()
    try:
        from lit_nets.train import cli  # noqa: F401  (torch, Lightning and jsonargparse: the long import)
    finally:
        if tune:
            gc.freeze()  # lit_nets.core.runtime.freeze_heap, called while nothing can start a collection
            gc.enable()
    main()


def main(args: list[str] | None = None) -> None:
    """Entry point of ``python -m lit_nets`` and the ``lit-nets`` console script.

    Trainer subcommands (fit, validate, test, predict) go to the LightningCLI; ``plot``, ``explain``, ``export``
    and ``serve`` are plain tools with their own arguments (``python -m lit_nets serve --help``).
    """
    argv = sys.argv[1:] if args is None else list(args)
    prog = program()
    if quick(argv, prog):
        return
    import torch

    from lit_nets import tools
    from lit_nets.core import runtime
    from lit_nets.core.logs import setup_logging

    setup_logging()
    runtime.tune()
    if not torch.cuda.is_available():
        # the pytorch profiler's kineto library looks for GPUs and logs "ERROR ... gpuGetDeviceCount failed with
        # code 35" and USDT lines on machines without one; level 6 keeps it quiet (a setting of the user's wins)
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        if argv[0] in tools.TOOLS:
            tools.run_tool(argv[0], argv[1:], prog)
            return
        if argv[0] == "cv":
            from lit_nets.train import cv

            cv.main(argv[1:], prog)
            return
        if argv[0] == "tune":
            tune_module().main(argv[1:], prog)
            return
        if argv[0] == "torchrun":
            from lit_nets.train import launch

            launch.main(argv[1:])
            return
        from lit_nets.train.cli import LitNetsCLI

        LitNetsCLI(args=args)
    except SIGTERMException:  # Lightning's SystemExit, with no code: exit 0 would say the run is complete
        print("Stopped by SIGTERM.", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except Exception as e:
        user_error = find_user_error(e)
        if user_error is None or os.environ.get("LIT_NETS_TRACEBACK"):
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)


def tune_module() -> Any:
    """:mod:`lit_nets.train.tune`, or one line that says how to install Optuna (an extra) where it is missing."""
    try:
        from lit_nets.train import tune
    except ImportError as e:
        if e.name and e.name.split(".")[0] in ("optuna", "optuna_integration"):
            raise UserError(f"tune needs Optuna ({e.name} is not installed): pip install -e '.[tune]'") from None
        raise
    return tune


if __name__ == "__main__":
    sys.argv[0] = "python -m lit_nets"  # how the usage lines name the program
    run()
