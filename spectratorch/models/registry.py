"""Registry of network builders, keyed by the architecture name used in file names (``VGG11``, ``ResNetV2``).

A builder takes ``(n_channels, length, n_tabular, n_classes, **arch_kwargs)`` and returns an ``nn.Module`` with
``forward_features``, ``forward_head`` and ``forward``. Adding a model is one file with one ``@register_model``
builder, imported by ``spectratorch/models/__init__.py``.
"""

import logging
from collections.abc import Callable

from torch import nn

from spectratorch.errors import ConfigError

__all__ = ["register_model", "create_model", "list_models", "is_model", "model_options", "default_weight_decay",
           "default_lr"]

_logger = logging.getLogger(__name__)

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a network builder under its ``__name__``; use as a decorator.

    Args:
        fn: Builder ``(n_channels, length, n_tabular, n_classes, **arch_kwargs) -> nn.Module``.

    Returns:
        ``fn`` unchanged.

    Raises:
        ValueError: If a builder of that name is already registered (a second one would shadow it silently).

    Example:
        >>> "VGG11" in list_models()
        True
    """
    name = fn.__name__
    if name in _model_entrypoints:
        raise ValueError(
            f"A model named {name!r} is already registered (by {_model_entrypoints[name].__module__}); "
            f"give the builder another name."
        )
    _model_entrypoints[name] = fn
    return fn


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


def model_options(name: str) -> tuple[str, ...]:
    """The options (``width``, ``dropout``...) architecture ``name`` takes, from its builder's ``options``.

    Example:
        >>> "width" in model_options("VGG11"), "width" in model_options("Linear")
        (True, False)
    """
    if name not in _model_entrypoints:
        raise ConfigError(f"Unknown model {name!r}. Registered models: {', '.join(list_models())}.")
    return tuple(getattr(_model_entrypoints[name], "options", ()))


def default_weight_decay(name: str) -> float:
    """The weight decay (L2 penalty) architecture ``name`` trains with unless told otherwise (0 for most).

    Example:
        >>> default_weight_decay("VGG11"), default_weight_decay("Linear") > 0
        (0.0, True)
    """
    return float(getattr(_model_entrypoints.get(name), "default_weight_decay", 0.0))


def default_lr(name: str) -> float:
    """The Adam learning rate architecture ``name`` trains with unless told otherwise (1e-3 for most).

    Example:
        >>> default_lr("VGG11"), default_lr("Linear")
        (0.001, 0.001)
    """
    return float(getattr(_model_entrypoints.get(name), "default_lr", 1e-3))


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
    if name not in _model_entrypoints:
        raise ConfigError(f"Unknown model {name!r}. Registered models: {', '.join(list_models())}.")
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    _logger.debug("Building %s with %s", name, kwargs)
    return _model_entrypoints[name](**kwargs)
