"""``python -m lit_nets ...`` and the ``lit-nets`` console script: the command-line interface."""

import gc
import os
import sys


def run() -> None:
    """Import the CLI without garbage collections, then run it.

    Importing Lightning, torch and jsonargparse makes ~500,000 long-lived objects, and Python's garbage collector
    walks them all in ~7 full collections on the way (0.6 s of a 5 s start on our CPU). None run while importing,
    and the imported objects then go out of the collector's reach (:func:`lit_nets.runtime.freeze_heap`).
    ``LIT_NETS_TUNE=0`` leaves the collector as it is.
    """
    tune = os.environ.get("LIT_NETS_TUNE") != "0"
    if tune:
        gc.disable()
    try:
        from lit_nets import runtime
        from lit_nets.cli import main
    finally:
        if tune:
            gc.enable()
    runtime.freeze_heap()
    main()


if __name__ == "__main__":
    sys.argv[0] = "python -m lit_nets"  # how the usage lines name the program
    run()
