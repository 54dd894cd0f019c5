"""Search spaces: which training flags a study varies, and over what, read from a YAML file and checked up front.

Format (one entry per training flag; ``-`` and ``_`` alike; see ``examples/search_space.yaml``)::

    lr: {low: 1.0e-4, high: 1.0e-2, log: true}     # a float range (log scale)
    max_epochs: {low: 10, high: 40, step: 10}      # an int range (both bounds integers)
    arch: [TinyVGG, VGG11]                          # choices (a list, or {choices: [...]})
    transforms: [[da], [da, mixup], none]           # a choice may be a list (flags taking several values)
    n_kernels: [4, 8, 16]                           # an option an architecture declares (--arch-opt)

Every flag of ``spectratorch train`` that changes what is learnt can be searched, and every option an architecture
declares with its builder (read from the registry, ``--arch-opt``); output, hardware and split flags cannot. Torch is
imported only to read those declarations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from spectratorch.errors import ConfigError
from spectratorch.options import parse_units

__all__ = ["Param", "SEARCHABLE", "load_space", "parse_space", "apply_params"]

# reason: these decide where files go, which fold is validated, or the hardware: a study must not vary them.
_NOT_SEARCHABLE = {"data", "current_split", "n_splits", "test_source", "project", "output_dir", "load_this", "fit",
                   "evaluate", "to_onnx", "save_test_preds", "resume", "accelerator", "devices", "precision",
                   "strategy", "num_nodes", "limit_batches", "target_metric", "loggers", "mlflow_uri", "arch_opts"}
_GROUPS = {f.name: group for group, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))
           for f in dataclasses.fields(cls)}
SEARCHABLE = tuple(sorted(name for name in _GROUPS if name not in _NOT_SEARCHABLE))
"""Configuration fields a search space may name."""


@dataclass(frozen=True)
class Param:
    """One searched flag: a range (``low``, ``high``, ``log``, ``step``) or ``choices``."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in (self.low, self.high))

    def suggest(self, trial):
        """Draw a value from an Optuna trial (choices that are lists travel as JSON strings)."""
        if self.choices is not None:
            encoded = [json.dumps(c) for c in self.choices]
            return json.loads(trial.suggest_categorical(self.name, encoded))
        if self.is_int:
            return trial.suggest_int(self.name, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def corners(self) -> list:
        """The values a check must accept: every choice, or both bounds."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _declared_arch_options() -> dict:
    """Every option a registered architecture declares with its builder: name -> Option (the first declaration)."""
    # reason: the declarations live with the builders, which import torch; read only when a space names one.
    from spectratorch.models.registry import list_models, model_option_specs

    found: dict = {}
    for arch in list_models():
        found.update({k: v for k, v in model_option_specs(arch).items() if k not in found})
    return found


def _param(key: str, spec) -> Param:
    name = str(key).strip().lstrip("-").replace("-", "_")
    if name not in _GROUPS and name not in _declared_arch_options():
        raise ConfigError(f"the search space names an unknown flag {_flag(name)}; searchable flags are "
                          f"{', '.join(_flag(n) for n in SEARCHABLE)}, and the options architectures declare "
                          f"({', '.join(sorted(_declared_arch_options()))}).")
    if name not in SEARCHABLE and name in _GROUPS:
        raise ConfigError(f"the search space names {_flag(name)}, which a study cannot vary (outputs, hardware, "
                          f"split, target metric); set it on the command line instead.")
    if isinstance(spec, dict) and "choices" in spec:
        spec = spec["choices"]
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"the search space gives {_flag(name)} an empty list of choices; give at least one.")
        return Param(name, choices=tuple(spec))
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log", "step"}:
        raise ConfigError(f"the search space entry {_flag(name)} must be a list of choices or {{low, high[, log, "
                          f"step]}}; got {spec!r}.")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise ConfigError(f"the search space range of {_flag(name)} needs numbers; got low={low!r}, high={high!r}.")
    if not low < high:
        raise ConfigError(f"the search space range of {_flag(name)} is empty: low {low!r} must be below high "
                          f"{high!r}.")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"the search space range of {_flag(name)} is on a log scale, so low must be > 0; got "
                          f"{low!r}.")
    return Param(name, low=low, high=high, log=log, step=spec.get("step"))


def parse_space(values: dict, base: RunConfig) -> list[Param]:
    """Check a search space against the configuration it varies.

    Every choice and both bounds of every range are put into ``base`` and must give a valid configuration, so a
    bad value fails here, before any trial.

    Args:
        values: ``{flag: spec}`` as read from YAML.
        base: the configuration the flags of the command line give.

    Returns:
        The parameters, in file order.

    Raises:
        ConfigError: an unknown or unsearchable flag, an empty range or list, or a value the flag refuses.

    Example:
        >>> [p.name for p in parse_space({"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "arch": ["TinyVGG"]},
        ...                              RunConfig())]
        ['lr', 'arch']
    """
    if not isinstance(values, dict) or not values:
        raise ConfigError("the search space must be a mapping of at least one training flag to its choices or range, "
                          "e.g. `lr: {low: 1.0e-4, high: 1.0e-2, log: true}`.")
    params = [_param(key, spec) for key, spec in values.items()]
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ConfigError(f"the search space names a flag twice: {names}.")
    for param in params:
        for value in param.corners():
            try:
                apply_params(base, {param.name: value})
            except ConfigError as err:
                raise ConfigError(f"the search space value {value!r} of {_flag(param.name)} is refused: {err}") \
                    from None
    return params


def load_space(path: str | os.PathLike, base: RunConfig) -> list[Param]:
    """Read and check a YAML search space (see the module's docstring for the format)."""
    try:
        import yaml
    except ImportError:
        raise ConfigError("--space needs PyYAML, which is not installed; install it with "
                          "`pip install spectratorch[tune]`.") from None

    path = Path(path)
    if not path.is_file():
        found = "a folder, not a file" if path.is_dir() else "no such file"
        raise ConfigError(f"--space {path}: {found}; see examples/search_space.yaml for the format.")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"--space {path} is not valid YAML ({str(err).splitlines()[0]}).") from None
    return parse_space(values, base)


def _value(name: str, value):
    if name == "transforms" and value in ("none", None, []):
        return ("none",)
    if name in ("targets", "channels", "transforms", "tabular") and isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    if _GROUPS.get(name, "model") == "model" and name != "arch":
        option = _declared_arch_options().get(name)
        if option is not None and option.type is tuple and isinstance(value, (list, tuple)):
            return parse_units(value)
        if option is not None and name not in _GROUPS:
            return option.check(value, where=f"the architecture option {name}")
    return value


def apply_params(base: RunConfig, params: dict) -> RunConfig:
    """``base`` with some fields replaced (checked as when a config is built).

    Example:
        >>> apply_params(RunConfig(), {"lr": 0.01, "arch": "TinyVGG"}).train.lr
        0.01
    """
    groups: dict[str, dict] = {"data": {}, "model": {}, "train": {}}
    declared = {}
    for name, value in params.items():
        if name in _GROUPS:
            groups[_GROUPS[name]][name] = _value(name, value)
        else:
            declared[name] = _value(name, value)
    if declared:
        groups["model"]["arch_opts"] = {**base.model.arch_opts, **declared}
    return RunConfig(dataclasses.replace(base.data, **groups["data"]),
                     dataclasses.replace(base.model, **groups["model"]),
                     dataclasses.replace(base.train, **groups["train"]))
