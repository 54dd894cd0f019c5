"""spectratorch: deep-learning classifiers for spectral and tabular data.

Importing the package imports neither torch nor lightning: the training names below are loaded on first use,
so ``spectratorch.inference`` and the data schema run on a PC with only onnxruntime, numpy and pandas.
"""

import importlib

from spectratorch._version import __version__

__all__ = [
    "__version__",
    "train",
    "SpectraClassifier",
    "Predictor",
    "SpectralDataModule",
    "SpectralTable",
    "load_table",
    "read_dataset",
    "model_name",
    "parse_model_name",
    "create_model",
    "list_models",
]

_LAZY = {
    "train": "spectratorch.api",
    "SpectraClassifier": "spectratorch.estimator",
    "Predictor": "spectratorch.inference",
    "SpectralDataModule": "spectratorch.data.datamodule",
    "SpectralTable": "spectratorch.data.schema",
    "load_table": "spectratorch.data.schema",
    "read_dataset": "spectratorch.data.io",
    "model_name": "spectratorch.contract",
    "parse_model_name": "spectratorch.contract",
    "create_model": "spectratorch.models.registry",
    "list_models": "spectratorch.models.registry",
}


def __getattr__(name):
    # reason: lazy so that `import spectratorch.inference` never pulls torch in through this file.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spectratorch' has no attribute {name!r}")
