"""The core: data, models and the checkpoint contract. It imports neither wing (train, deploy)."""
