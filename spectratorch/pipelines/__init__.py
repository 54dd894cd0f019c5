"""Compositions of the layers below: one run end to end (``run``: train, evaluate, baseline, result sheet, export,
JSON; the architecture choice), the small-set protocol (``small``), cross-validation (``cv``) and hyperparameter
search (``tune``, ``space``). Only ``cli.py``, ``train.py`` and the public Python API (``api``, ``estimator``)
import this package; the layers below never do."""
