"""Back from a checkpoint: the trained module, and the data it was trained on (or new data in its layout)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from spectratorch.config import DataConfig
from spectratorch.contract import differences
from spectratorch.data.datamodule import SpectralDataModule
from spectratorch.data.splits import TEST_MODES
from spectratorch.errors import CheckpointError, ConfigError, no_file
from spectratorch.training.module import SpectralModule

__all__ = ["load_module", "read_checkpoint", "checkpoint_differences", "data_config_from_hparams",
           "datamodule_from_hparams"]

# reason: these define what a model takes and answers; a checkpoint that differs in them cannot serve this run.
_COMPARED = ("arch", "channels", "axis", "tabular_columns", "labels", "transforms")


def _safe_globals() -> list:
    """What a checkpoint of ours may hold besides tensors and plain containers: numpy values in hyperparameters."""
    import numpy as np

    # reason: torch's weights-only unpickler admits tensors, containers and numbers; numpy arrays and scalars (an
    # axis, a statistic) are the only other things `spectratorch train` puts in a checkpoint.
    scalar_types = [type(np.dtype(code).type(0)) for code in "?bBhHiIlLqQefdgFDG"]
    dtype_types = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGUSMm"]
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    return [np.ndarray, np.dtype, *{*scalar_types, *dtype_types}, multiarray._reconstruct, multiarray.scalar]


def _refusal(path: Path, err: Exception) -> CheckpointError:
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if not found:
        return CheckpointError(f"{path}: not a spectratorch checkpoint (not a readable torch file).")
    return CheckpointError(
        f"{path}: refused: it asks for {found.group(1)}, which a spectratorch checkpoint never holds; loading it "
        "could run code. Use only checkpoints written by `spectratorch train`."
    )


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dictionary, read with torch's weights-only unpickler (it runs no code from the file).

    Raises:
        CheckpointError: missing file, unreadable file, or a pickle asking for anything but tensors, containers and
            numpy values (one line, nothing run).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(no_file(path, "checkpoint file", ".ckpt"))
    try:
        # reason: a file that is not a torch checkpoint (a pickled dataset given by mistake) makes torch warn about
        # its pickle protocol before it fails; the refusal below is the one line that says what it is.
        with torch.serialization.safe_globals(_safe_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refusal(path, err) from None
    except (RuntimeError, KeyError, TypeError, EOFError, ValueError, AttributeError, OSError) as err:
        raise CheckpointError(f"{path}: not a spectratorch checkpoint ({type(err).__name__}).") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise CheckpointError(f"{path}: not a spectratorch checkpoint (no hyperparameters).")
    return checkpoint


def load_module(path: str | os.PathLike) -> SpectralModule:
    """Load a checkpoint written by ``spectratorch train`` on the CPU (weights-only: the file runs no code).

    Raises:
        CheckpointError: the file is missing, is not a spectratorch checkpoint, or asks for anything else.
    """
    import torch

    path = Path(path)
    read_checkpoint(path)  # reason: refuses a hostile file with one line before Lightning reads it
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return SpectralModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refusal(path, err) from None
    except (RuntimeError, KeyError, TypeError, EOFError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path}: not a spectratorch checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}).") from None


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
        dm = SpectralDataModule(dataclasses.replace(config, data=str(source)))
    elif isinstance(source, pd.DataFrame):
        dm = SpectralDataModule(config, data=source)
    else:
        raise ConfigError(f"data must be a SpectralDataModule, a DataFrame or a path; got {type(source).__name__}.")
    if hparams.get("axis") is not None:
        # reason: a file of the model's points and more (a wider export) gives the model its own points.
        dm.model_axis = np.asarray(hparams["axis"], dtype=float)
    # reason: a channel shorter than in training would be read as zeros (older checkpoints do not record ranges).
    dm.model_ranges = hparams.get("channel_ranges")
    return dm


def checkpoint_differences(hparams: dict, expected: dict) -> list[str]:
    """What differs between a checkpoint's hyperparameters and this run's (or another checkpoint's), one line each
    (:func:`spectratorch.contract.differences` over what a model takes and answers).

    Example:
        >>> checkpoint_differences({"arch": "VGG11", "labels": ["a", "b"]}, {"arch": "VGG11", "labels": ["a", "c"]})
        ["labels: checkpoint ['a', 'b'], this run ['a', 'c']"]
    """
    return differences(hparams, expected, _COMPARED, names=("checkpoint", "this run"))
