"""Registry of network builders, keyed by the architecture name used in file names (``VGG11``, ``ResNetV2``).

A builder takes ``(n_channels, length, n_tabular, n_classes, **arch_kwargs)`` and returns an ``nn.Module`` with
``forward_features``, ``forward_head`` and ``forward``. Adding a model is one file with one builder under
``@register_model(options=..., default_lr=..., default_weight_decay=...)``, imported by
``spectratorch/models/__init__.py``; its options (:class:`~spectratorch.options.Option`: name, type, default, range
or choices, help) are declared there, once, and ``--arch-opt KEY=VALUE``, the checks, the search space and
``--help`` read them.
"""

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from torch import nn

from spectratorch.errors import ConfigError
from spectratorch.options import Option

__all__ = ["register_model", "create_model", "list_models", "is_model", "model_options", "model_option_specs",
           "parse_arch_options", "default_weight_decay", "default_lr"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    options: dict[str, Option]
    default_lr: float
    default_weight_decay: float


_model_entrypoints: dict[str, _Entry] = {}
_IO_ARGUMENTS = {"n_channels", "length", "n_tabular", "n_classes"}


def register_model(fn: Callable[..., nn.Module] | None = None, *, options: Iterable[Option] = (),
                   default_lr: float = 1e-3, default_weight_decay: float = 0.0):
    """Register a network builder under its ``__name__`` with the options it takes; use as a decorator.

    Args:
        fn: Builder ``(n_channels, length, n_tabular, n_classes, **arch_kwargs) -> nn.Module`` (given when used
            bare, ``@register_model``).
        options: The options the builder takes (``width``, ``dropout``...), each with its type, default and range.
        default_lr: The Adam learning rate it trains with unless told otherwise.
        default_weight_decay: The weight decay it trains with unless told otherwise.

    Returns:
        ``fn`` unchanged (or the decorator, when called with keywords only).

    Raises:
        ValueError: If a builder of that name is already registered (a second one would shadow it silently).

    Example:
        >>> "VGG11" in list_models()
        True
    """
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _model_entrypoints:
            raise ValueError(
                f"A model named {name!r} is already registered (by {_model_entrypoints[name].builder.__module__}); "
                f"give the builder another name."
            )
        _model_entrypoints[name] = _Entry(builder, {o.name: o for o in options}, float(default_lr),
                                          float(default_weight_decay))
        return builder

    return add if fn is None else add(fn)


def list_models() -> list[str]:
    """Names of the registered architectures, sorted.

    Returns:
        The names ``create_model`` accepts.

    Example:
        >>> {"VGG11", "VGG16", "ResNetV2", "TinyVGG"} <= set(list_models())
        True
    """
    return sorted(_model_entrypoints)


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered architecture.

    Args:
        name: Architecture name, e.g. ``"VGG11"``.

    Returns:
        ``True`` if ``create_model(name, ...)`` would find a builder.

    Example:
        >>> is_model("VGG11"), is_model("vgg11")
        (True, False)
    """
    return name in _model_entrypoints


def _entry(name: str) -> _Entry:
    if name not in _model_entrypoints:
        raise ConfigError(f"Unknown model {name!r}. Registered models: {', '.join(list_models())}.")
    return _model_entrypoints[name]


def model_options(name: str) -> tuple[str, ...]:
    """The names of the options (``width``, ``dropout``...) architecture ``name`` takes, as declared.

    Example:
        >>> "width" in model_options("VGG11"), "width" in model_options("Linear")
        (True, False)
    """
    return tuple(_entry(name).options)


def model_option_specs(name: str) -> dict[str, Option]:
    """The options architecture ``name`` declares: name -> :class:`~spectratorch.options.Option`.

    Example:
        >>> model_option_specs("ResNetV2")["block_units"].default
        (3, 4, 6, 3)
    """
    return dict(_entry(name).options)


def parse_arch_options(name: str, pairs: Mapping[str, str]) -> dict:
    """Read ``--arch-opt KEY=VALUE`` words against the options architecture ``name`` declares.

    ``auto`` (the architecture is chosen later) accepts an option any registered architecture declares.

    Args:
        name: The architecture (``--arch``).
        pairs: ``{key: "VALUE"}`` as written.

    Returns:
        ``{key: value}``, typed and checked.

    Raises:
        ConfigError: One line naming the architecture's options and what was found.

    Example:
        >>> parse_arch_options("ResNetV2", {"block_units": "2_2", "wf": "2"})
        {'block_units': (2, 2), 'wf': 2}
    """
    if name == "auto":
        specs = {}
        for entry in _model_entrypoints.values():
            specs.update({key: option for key, option in entry.options.items() if key not in specs})
        owner = "any registered architecture (--arch auto)"
    else:
        specs, owner = _entry(name).options, name
    values = {}
    for key, text in pairs.items():
        if key not in specs:
            raise ConfigError(f"--arch-opt {key}={text}: {owner} takes no option {key!r}; its options are "
                              f"{', '.join(sorted(specs)) or 'none'}.")
        option = specs[key]
        try:
            values[key] = option.parse(text)
        except ConfigError:
            raise ConfigError(f"--arch-opt {key}={text}: {owner}'s {key} must be {option.expected()}; its options "
                              f"are {', '.join(sorted(specs))}.") from None
    return values


def default_weight_decay(name: str) -> float:
    """The weight decay (L2 penalty) architecture ``name`` trains with unless told otherwise (0 for most).

    Example:
        >>> default_weight_decay("VGG11"), default_weight_decay("Linear") > 0
        (0.0, True)
    """
    entry = _model_entrypoints.get(name)
    return entry.default_weight_decay if entry else 0.0


def default_lr(name: str) -> float:
    """The Adam learning rate architecture ``name`` trains with unless told otherwise (1e-3 for most).

    Example:
        >>> default_lr("VGG11"), default_lr("Linear")
        (0.001, 0.001)
    """
    entry = _model_entrypoints.get(name)
    return entry.default_lr if entry else 1e-3


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered network; keyword arguments set to ``None`` are dropped so defaults apply.

    Args:
        name: Architecture name, e.g. ``"VGG11"``.
        **kwargs: ``n_channels``, ``length``, ``n_tabular``, ``n_classes`` and architecture options
            (``width``, ``dropout``, ...). ``None`` means "not set": unset CLI flags keep the builder's default.

    Returns:
        The network, mapping spectra ``[N, C, L]`` and tabular ``[N, T]`` to logits ``[N, K]``.

    Raises:
        ConfigError: If ``name`` is not registered (a ``ValueError``); the message lists the registered names.

    Example:
        >>> import torch
        >>> net = create_model("TinyVGG", n_channels=3, length=64, n_tabular=0, n_classes=2, dropout=None)
        >>> net(torch.zeros(4, 3, 64), None).shape
        torch.Size([4, 2])
    """
    entry = _entry(name)
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    unknown = sorted(set(kwargs) - set(entry.options) - _IO_ARGUMENTS)
    if unknown:
        raise ConfigError(f"{name} does not take {unknown}; its options are {list(entry.options)}. Leave the others "
                          "unset.")
    _logger.debug("Building %s with %s", name, kwargs)
    return entry.builder(**kwargs)
