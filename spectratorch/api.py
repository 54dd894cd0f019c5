"""The Python route to a run: :func:`train`, whose keywords are the flags of ``spectratorch train``."""

from __future__ import annotations

import dataclasses

from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig

__all__ = ["train", "run_config"]

_GROUPS = (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))


def run_config(**flags) -> RunConfig:
    """A :class:`~spectratorch.config.RunConfig` from the flags of ``spectratorch train`` as keywords
    (``--max-epochs 5`` -> ``max_epochs=5``, ``--no-baseline`` -> ``baseline=False``, ``--logger csv`` ->
    ``loggers=["csv"]``).

    Raises:
        TypeError: a keyword that is no flag of ``spectratorch train``; the message lists the accepted ones.
        ConfigError: an invalid value (the same checks as the command line).

    Example:
        >>> run_config(data="x.csv", arch="Linear", max_epochs=5).model.arch
        'Linear'
    """
    fields = {f.name: group for group, cls in _GROUPS for f in dataclasses.fields(cls)}
    unknown = sorted(set(flags) - set(fields))
    if unknown:
        raise TypeError(f"train() got unknown keyword(s) {unknown}; the keywords are the flags of `spectratorch "
                        f"train` with _ for -: {sorted(fields)}.")
    if "data" in flags and flags["data"] is not None:
        flags["data"] = str(flags["data"])
    values = {group: {k: v for k, v in flags.items() if fields[k] == group} for group, _ in _GROUPS}
    return RunConfig(DataConfig(**values["data"]), ModelConfig(**values["model"]), TrainConfig(**values["train"]))


def train(data=None, **flags) -> dict:
    """Train as ``spectratorch train`` does; the keywords are its flags (hyphens as underscores).

    Args:
        data: the dataset file (``.csv``, ``.parquet``, ``.xlsx``, ``.pkl``); ``None``: the demo dataset.
        **flags: ``targets``, ``channels``, ``arch``, ``max_epochs``, ``to_onnx``, ``output_dir`` ... as on the
            command line; unset ones follow the data as there.

    Returns:
        The run's summary (what ``<stem>.json`` holds): ``name``, ``labels``, ``metrics``, ``files`` ...

    Raises:
        TypeError: an unknown keyword.
        ConfigError, SchemaError, TargetError, SplitError: before training starts, as on the command line.

    Example:
        >>> import spectratorch
        >>> summary = spectratorch.train(data="my spectra.csv", arch="Linear", to_onnx=True)   # doctest: +SKIP
        >>> summary["files"]["onnx"]                                                           # doctest: +SKIP
    """
    from spectratorch.pipelines.run import train as run_train

    return run_train(run_config(data=data, **flags))
