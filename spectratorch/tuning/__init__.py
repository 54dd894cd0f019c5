"""Experiments over many runs: cross-validation (``cv``) and hyperparameter search (``tune``)."""
