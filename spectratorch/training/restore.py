"""Back from a checkpoint: the trained module, and the data it was trained on (or new data in its layout)."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pandas as pd

from spectratorch.config import DataConfig
from spectratorch.contract import differences
from spectratorch.data.datamodule import SpectralDataModule
from spectratorch.data.splits import TEST_MODES
from spectratorch.errors import CheckpointError, ConfigError
from spectratorch.training.module import SpectralModule

__all__ = ["load_module", "checkpoint_differences", "data_config_from_hparams", "datamodule_from_hparams"]

# reason: these define what a model takes and answers; a checkpoint that differs in them cannot serve this run.
_COMPARED = ("arch", "channels", "axis", "tabular_columns", "labels", "transforms")


def load_module(path: str | os.PathLike) -> SpectralModule:
    """Load a checkpoint written by ``spectratorch train`` on the CPU.

    Raises:
        CheckpointError: the file is missing or is not a spectratorch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    try:
        return SpectralModule.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    except (RuntimeError, KeyError, TypeError, EOFError, ValueError, AttributeError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"{path}: not a spectratorch checkpoint ({type(err).__name__}: {err}).") from None


def data_config_from_hparams(hparams: dict) -> DataConfig:
    """The run's data configuration; an external test file is replaced by the validation fold (not needed here)."""
    values = (hparams.get("config") or {}).get("data")
    if not values:
        raise CheckpointError("the checkpoint records no data configuration; it was not written by "
                              "`spectratorch train`.")
    config = DataConfig(**values)
    if config.test_source not in TEST_MODES:
        config = dataclasses.replace(config, test_source="is-val")
    return config


def datamodule_from_hparams(hparams: dict, source=None) -> SpectralDataModule:
    """The checkpoint's data module: its own training data, or ``source`` (path or DataFrame) in the same layout.

    Raises:
        CheckpointError: the training data is not on this machine and no ``source`` was given.
    """
    if isinstance(source, SpectralDataModule):
        return source
    config = data_config_from_hparams(hparams)
    if source is None:
        if not config.data_path.is_file():
            raise CheckpointError(
                f"this needs the checkpoint's data, but its training data {str(config.data_path)!r} is not here; "
                "pass --data FILE (a dataset with the same channels, axis and classes)."
            )
        return SpectralDataModule(config)
    if isinstance(source, (str, os.PathLike)):
        return SpectralDataModule(dataclasses.replace(config, data=str(source)))
    if isinstance(source, pd.DataFrame):
        return SpectralDataModule(config, data=source)
    raise ConfigError(f"data must be a SpectralDataModule, a DataFrame or a path; got {type(source).__name__}.")


def checkpoint_differences(hparams: dict, expected: dict) -> list[str]:
    """What differs between a checkpoint's hyperparameters and this run's (or another checkpoint's), one line each
    (:func:`spectratorch.contract.differences` over what a model takes and answers).

    Example:
        >>> checkpoint_differences({"arch": "VGG11", "labels": ["a", "b"]}, {"arch": "VGG11", "labels": ["a", "c"]})
        ["labels: checkpoint ['a', 'b'], this run ['a', 'c']"]
    """
    return differences(hparams, expected, _COMPARED, names=("checkpoint", "this run"))
