"""The model classes by the names configs and checkpoints use (``class_path: lit_nets.models.CNNClassifier``);
they live in :mod:`lit_nets.core.models`."""

from lit_nets.core.checkpoint import classifiers
from lit_nets.core.models.classifier import Classifier, CNNClassifier, MLPClassifier
from lit_nets.core.models.finetuning import BackboneClassifier

CLASSIFIERS = classifiers()  # every trainable model class (what a checkpoint can hold)

__all__ = ["CLASSIFIERS", "BackboneClassifier", "CNNClassifier", "Classifier", "MLPClassifier"]
