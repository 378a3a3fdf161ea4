"""Models: plain networks (``nets``) and the Lightning classifiers that train them."""

from lit_nets.models.classifier import Classifier, CNNClassifier, MLPClassifier
from lit_nets.models.finetuning import BackboneClassifier

# every trainable model class (what a checkpoint can hold)
CLASSIFIERS = (BackboneClassifier, CNNClassifier, MLPClassifier)

__all__ = ["CLASSIFIERS", "BackboneClassifier", "CNNClassifier", "Classifier", "MLPClassifier"]
