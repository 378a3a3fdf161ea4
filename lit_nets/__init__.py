"""lit_nets: train an MLP on CSV data or a CNN on images with PyTorch Lightning, then use the model."""

__version__ = "0.3.0"
