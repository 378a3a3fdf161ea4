"""Models: plain networks (``nets``) and the Lightning classifiers that train them."""

from lit_nets.models.classifier import Classifier, CNNClassifier, MLPClassifier

CLASSIFIERS = (CNNClassifier, MLPClassifier)  # every trainable model class (what a checkpoint can hold)

__all__ = ["CLASSIFIERS", "CNNClassifier", "Classifier", "MLPClassifier"]
