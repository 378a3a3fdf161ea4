"""Models: plain networks (``nets``, ``backbones``) and the Lightning classifiers that train them (``classifier``,
``finetuning``). Their public names are in :mod:`lit_nets.models`."""
