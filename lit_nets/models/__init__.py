"""Models: plain networks (``nets``) and the Lightning classifiers that train them."""

from lit_nets.models.classifier import Classifier, CNNClassifier, MLPClassifier

__all__ = ["CNNClassifier", "Classifier", "MLPClassifier"]
