"""The table of transforms: one entry per ``--transforms`` name, torch-free.

An entry says where the transform runs, its options (flag, default, check, help), the function that applies it and
its default rule. ``stage="data"`` transforms are train-only: the data module applies them to each training batch on
the device (``on_after_batch_transfer``), with ``function(config, spectra, tabular, target) -> (spectra, tabular,
target)``. ``stage="model"`` transforms run at inference too: the preprocessing layer, the first layer of every model
(:class:`~spectratorch.models.preprocess.Preprocess`), applies them in order with ``function(pre, name, spectra) ->
spectra`` after ``setup(pre, name, options)`` registered their constants as buffers, so they travel with the
checkpoint and the ONNX file. ``reference=True`` gives the layer a ``<name>_reference`` buffer, fitted to the
training mean of the transform's input.

Adding a transform is one entry here and its function; an option of its own is one :class:`~spectratorch.options.
Option` in the entry and a field of :class:`~spectratorch.config.DataConfig` of that name (the flag, the check, the
checkpoint and the compatibility checks follow from the table).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spectratorch.options import Option

__all__ = ["Transform", "TRANSFORM_TABLE", "LAB_CHANNELS", "transform_names", "train_only", "in_model",
           "transform_options", "option_readers", "preprocess_options", "default_transforms", "transform_function"]

# reason: `da` was designed on these fluorescence channels; on other spectra its 5 % noise per point and its shifts
# can bury the differences between classes (measured on NIR data), so other data get no augmentation by default.
LAB_CHANNELS = frozenset({"277", "380", "425", "lspr"})


def _never(channels: Sequence[str]) -> bool:
    return False


def _on_lab_channels(channels: Sequence[str]) -> bool:
    return set(channels) <= LAB_CHANNELS


@dataclass(frozen=True)
class Transform:
    """One transform.

    Attributes:
        name: the ``--transforms`` word.
        stage: ``"data"`` (train-only, the data module) or ``"model"`` (the preprocessing layer, at inference too).
        function: the function that applies it, or ``"module:name"`` (imported when first used).
        help: a few words for ``--help``.
        options: its options (shared ones, like Savitzky-Golay's, are the same :class:`Option` in each entry).
        setup: ``stage="model"``: the function (or ``"module:name"``) that registers its constants.
        reference: ``stage="model"``: fitted to the training mean of its input (a ``<name>_reference`` buffer).
        default: the default rule: whether a run on these channels gets it when ``--transforms`` is not given.
    """

    name: str
    stage: str
    function: str | Callable
    help: str
    options: tuple[Option, ...] = ()
    setup: str | Callable | None = None
    reference: bool = False
    default: Callable[[Sequence[str]], bool] = _never


_PRE = "spectratorch.models.preprocess:"
_DATA = "spectratorch.data.transforms:"
_SG = (Option("sg_window", int, 11, "Savitzky-Golay window (odd)"),
       Option("sg_order", int, 2, "Savitzky-Golay polynomial order"))

TRANSFORM_TABLE: dict[str, Transform] = {t.name: t for t in (
    Transform("da", "data", _DATA + "apply_da", "intensity factor, relative noise and shift", default=_on_lab_channels,
              options=(Option("da_multiplier_scale", float, 0.1, "da: std of the factor", low=0, high=1e6),
                       Option("da_rel_noise_scale", float, 0.05, "da: relative noise std", low=0, high=1e6),
                       Option("da_xshift_scale", float, 1.5, "da: Laplace scale of the shift", low=0, high=1e6))),
    Transform("mixup", "data", _DATA + "apply_mixup", "mix samples and their targets",
              options=(Option("mixup_alpha", float, 0.4, "mixup's Beta(alpha, alpha)", low=0, high=1e6,
                              low_open=True),)),
    Transform("simulate", "model", _PRE + "simulate", "zero what the new fluorimeter cannot see",
              setup=_PRE + "setup_simulate"),
    Transform("snv", "model", _PRE + "snv", "standard normal variate"),
    Transform("sg1", "model", _PRE + "savgol", "Savitzky-Golay first derivative", _SG, setup=_PRE + "setup_savgol"),
    Transform("sg2", "model", _PRE + "savgol", "Savitzky-Golay second derivative", _SG, setup=_PRE + "setup_savgol"),
    Transform("msc", "model", _PRE + "msc", "multiplicative scatter correction", reference=True),
    Transform("emsc", "model", _PRE + "emsc", "extended MSC", reference=True, setup=_PRE + "setup_emsc",
              options=(Option("emsc_order", int, 2, "emsc: polynomial order of the baseline", low=0, high=10),)),
    Transform("als", "model", _PRE + "als", "minus the asymmetric-least-squares baseline", setup=_PRE + "setup_als",
              options=(Option("als_lambda", float, 1e6, "als: smoothness of the baseline", low=0, high=1e12,
                              low_open=True),
                       Option("als_p", float, 0.01, "als: weight of the points above the baseline", low=0, high=0.5,
                              low_open=True))),
)}
"""Name -> :class:`Transform`, in the order ``--help`` lists them."""


def transform_names() -> tuple[str, ...]:
    """Every transform name, in table order.

    Example:
        >>> transform_names()[:3]
        ('da', 'mixup', 'simulate')
    """
    return tuple(TRANSFORM_TABLE)


def train_only() -> tuple[str, ...]:
    """The transforms the data module applies to training batches only.

    Example:
        >>> train_only()
        ('da', 'mixup')
    """
    return tuple(name for name, t in TRANSFORM_TABLE.items() if t.stage == "data")


def in_model(transforms: Sequence[str] | None = None) -> tuple[str, ...]:
    """The model's transforms: of ``transforms`` (in their order), or every one (``None``).

    Example:
        >>> in_model(["da", "snv", "sg1"])
        ('snv', 'sg1')
    """
    names = TRANSFORM_TABLE if transforms is None else transforms
    return tuple(n for n in names if n in TRANSFORM_TABLE and TRANSFORM_TABLE[n].stage == "model")


def transform_options(stage: str | None = None) -> dict[str, Option]:
    """Every transform option (of one ``stage``, or all), each once, in table order.

    Example:
        >>> list(transform_options("model"))
        ['sg_window', 'sg_order', 'emsc_order', 'als_lambda', 'als_p']
    """
    found: dict[str, Option] = {}
    for t in TRANSFORM_TABLE.values():
        if stage in (None, t.stage):
            found.update({o.name: o for o in t.options if o.name not in found})
    return found


def option_readers() -> dict[str, tuple[str, ...]]:
    """Each option of the model's transforms -> the transforms that read it.

    Example:
        >>> option_readers()["sg_order"]
        ('sg1', 'sg2')
    """
    readers: dict[str, tuple[str, ...]] = {}
    for t in TRANSFORM_TABLE.values():
        if t.stage == "model":
            for option in t.options:
                readers[option.name] = readers.get(option.name, ()) + (t.name,)
    return readers


def preprocess_options(config) -> dict:
    """The options of the model's transforms, read from a configuration (a ``DataConfig`` or a mapping).

    Example:
        >>> preprocess_options({"sg_window": 7})["sg_window"], preprocess_options({})["als_p"]
        (7, 0.01)
    """
    get = config.get if isinstance(config, dict) else lambda key, default: getattr(config, key, default)
    return {name: get(name, option.default) for name, option in transform_options("model").items()}


def default_transforms(channels: Sequence[str]) -> tuple[str, ...]:
    """The transforms a run on ``channels`` gets when ``--transforms`` is not given (each entry's default rule).

    Example:
        >>> default_transforms(("277", "380")), default_transforms(("nir",))
        (('da',), ())
    """
    return tuple(name for name, t in TRANSFORM_TABLE.items() if t.default(channels))


def transform_function(reference: str | Callable) -> Callable:
    """The function an entry names (``"module:name"`` is imported here).

    Example:
        >>> transform_function(len)("ab")
        2
    """
    if callable(reference):
        return reference
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
