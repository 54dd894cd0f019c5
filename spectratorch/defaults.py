"""Data-adaptive defaults: settings left unset (``None``) are resolved from the size of the training split.

The lab's 30k-sample runs keep the usual values (batch 256, 30 epochs, patience 8); a set of a few hundred spectra
gets smaller batches and more epochs, so that it still sees enough optimizer steps to learn. The resolved values
are what the run records in its JSON and checkpoint.
"""

from __future__ import annotations

import dataclasses
import math

from spectratorch.config import RunConfig
from spectratorch.errors import ConfigError
from spectratorch.transforms import LAB_CHANNELS, default_transforms

__all__ = ["LAB_CHANNELS", "ARCH_CANDIDATES", "LARGE_TRAIN", "auto_arch", "auto_transforms", "auto_batch_size",
           "auto_max_epochs", "auto_patience", "resolve_defaults"]

# reason: the lab's recipe (VGG11 with `da`) was tuned on thousands of fluorescence spectra; below that, or on other
# spectra, no fixed choice wins everywhere (measured on public NIR/FTIR sets), so the candidates are compared.
LARGE_TRAIN = 2000
# reason: the solved heads the small-set protocol compares by inner CV (spectratorch/pipelines/small.py).
ARCH_CANDIDATES = ("Linear", "PLSDA", "MiniRocket", "KernelRidge", "LDA")
# reason: named, so that `--help` states the values the functions below use.
CPU_WIDTH = 0.25
MIN_BATCH, MAX_BATCH = 16, 256
MIN_STEPS, MIN_EPOCHS, MAX_EPOCHS = 2000, 30, 400
PATIENCE_STEPS, MIN_PATIENCE, MAX_PATIENCE = 300, 8, 60


def auto_transforms(channels) -> tuple[str, ...]:
    """The default rules of the table of transforms: ``("da",)`` when every channel is one of the lab's fluorescence
    channels, else no transform.

    Example:
        >>> auto_transforms(("277", "380")), auto_transforms(("nir",))
        (('da',), ())
    """
    return default_transforms(channels)


def auto_arch(channels, n_train: int) -> str | None:
    """``VGG11`` on the lab's channels with at least ``LARGE_TRAIN`` training rows; ``None`` (compare) otherwise.

    Example:
        >>> auto_arch(("277", "380"), 24000), auto_arch(("277",), 300), auto_arch(("nir",), 24000)
        ('VGG11', None, None)
    """
    return "VGG11" if set(channels) <= LAB_CHANNELS and n_train >= LARGE_TRAIN else None


def auto_batch_size(n_train: int) -> int:
    """The power of two nearest below ``n_train / 8``, within 16..256.

    Example:
        >>> auto_batch_size(30000), auto_batch_size(240), auto_batch_size(40)
        (256, 16, 16)
    """
    return int(min(MAX_BATCH, max(MIN_BATCH, 2 ** math.floor(math.log2(max(1, n_train / 8))))))


def _steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, n_train // batch_size)


def auto_max_epochs(n_train: int, batch_size: int) -> int:
    """At least 30 epochs and about 2000 optimizer steps, at most 400 epochs.

    Example:
        >>> auto_max_epochs(24000, 256), auto_max_epochs(120, 16)
        (30, 286)
    """
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_STEPS / _steps_per_epoch(n_train, batch_size)))))


def auto_patience(n_train: int, batch_size: int) -> int:
    """At least 8 epochs and about 300 optimizer steps without improvement before stopping, at most 60."""
    return int(min(MAX_PATIENCE, max(MIN_PATIENCE, math.ceil(PATIENCE_STEPS / _steps_per_epoch(n_train, batch_size)))))


def resolve_defaults(config: RunConfig, n_train: int) -> RunConfig:
    """Fill ``transforms``, ``batch_size``, ``max_epochs``, ``early_stop_patience``, ``width``, ``lr`` and
    ``weight_decay`` when they are ``None`` (the architecture must be chosen already)."""
    from spectratorch.models.registry import default_lr, default_weight_decay, model_options

    model = config.model
    if model.arch == "auto":
        chosen = auto_arch(config.data.channels, n_train)
        if chosen is None:
            raise ConfigError(f"--arch auto on {n_train} training rows is decided by inner cross-validation of the "
                              f"candidates {list(ARCH_CANDIDATES)}; call spectratorch.pipelines.run.train, or name an "
                              "--arch.")
        model = dataclasses.replace(model, arch=chosen)
    if model.width is None and "width" in model_options(model.arch):
        model = dataclasses.replace(model, width=CPU_WIDTH)
    weight_decay = config.train.weight_decay
    if weight_decay is None:
        weight_decay = default_weight_decay(model.arch)
    lr = config.train.lr or default_lr(model.arch)
    batch_size = config.data.batch_size or auto_batch_size(n_train)
    transforms = auto_transforms(config.data.channels) if config.data.transforms is None else config.data.transforms
    train = config.train
    max_epochs = train.max_epochs or auto_max_epochs(n_train, batch_size)
    # reason: 0 is a patience (stop at the first epoch without progress), not "unset".
    patience = (train.early_stop_patience if train.early_stop_patience is not None
                else auto_patience(n_train, batch_size))
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, batch_size=batch_size, transforms=transforms),
        model=model,
        train=dataclasses.replace(train, max_epochs=max_epochs, early_stop_patience=patience, weight_decay=weight_decay,
                                  lr=lr),
    )
