"""Data modules: everything a model trains on, held in memory as tensors. Their public names are in
:mod:`lit_nets.data`."""
