"""``python -m lit_nets ...`` runs the command-line interface."""

import sys

from lit_nets.cli import main

if __name__ == "__main__":
    sys.argv[0] = "python -m lit_nets"  # how the usage lines name the program
    main()
