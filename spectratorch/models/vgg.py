"""VGG for spectra: 1D convolutions of kernel 3, downsampling by stride-2 convolutions, a small dense head.

Variants are rows of ``cfgs``: an integer is a convolution with that many output channels (at ``width`` 1.0),
``"D"`` makes the convolution before it stride 2. It stands where VGG has a max-pool after a convolution, so
the depth of each variant is that of the image network (VGG11: 8 convolutions).
"""

import logging

import torch
from torch import nn

from spectratorch.models._layers import (
    POOL_BINS,
    WIDTH,
    ClassifierHead,
    check_int,
    check_io,
    check_positive,
    conv_out_length,
    dropout_option,
    scaled_width,
)
from spectratorch.models.registry import register_model
from spectratorch.options import Option

__all__ = ["VGG", "VGG11", "VGG16", "TinyVGG", "cfgs"]

_logger = logging.getLogger(__name__)

cfgs: dict[str, list[int | str]] = {
    "TinyVGG": [16, "D", 32, "D"],
    "VGG11": [64, "D", 128, "D", 256, 256, "D", 512, 512, "D", 512, 512, "D"],
    "VGG16": [64, 64, "D", 128, 128, "D", 256, 256, 256, "D", 512, 512, 512, "D", 512, 512, 512, "D"],
}


def _conv_plan(cfg: list[int | str]) -> list[tuple[int, int]]:
    """Turn a ``cfgs`` row into ``(channels, stride)`` per convolution."""
    plan: list[tuple[int, int]] = []
    for item in cfg:
        if item == "D":
            plan[-1] = (plan[-1][0], 2)
        else:
            plan.append((item, 1))
    return plan


class VGG(nn.Module):
    """VGG-style 1D network with a tabular-aware head.

    Args:
        cfg: A row of ``cfgs``.
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        width: Channel multiplier (1.0: 64...512 channels; 0.125 trains in minutes on a CPU).
        batch_norm: Batch norm after each convolution (the convolutions then have no bias).
        pool_bins: Positions the head pools the features to (adaptive average bins); 1 is global average.
        dropout: Dropout after each hidden dense layer.

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> net = VGG(cfgs["TinyVGG"], n_channels=3, length=100, n_tabular=2, n_classes=4)
        >>> net(torch.zeros(5, 3, 100), torch.zeros(5, 2)).shape
        torch.Size([5, 4])
    """

    def __init__(
        self,
        cfg: list[int | str],
        n_channels: int,
        length: int,
        n_tabular: int,
        n_classes: int,
        width: float = 1.0,
        batch_norm: bool = True,
        pool_bins: int = 4,
        dropout: float = 0.3,
    ):
        super().__init__()
        check_io("VGG", n_channels, length, n_tabular, n_classes)
        check_positive("width", width, "VGG")
        check_int("pool_bins", pool_bins, "VGG")
        self.n_tabular = n_tabular
        self.n_classes = n_classes
        layers: list[nn.Module] = []
        in_channels, feature_length = n_channels, length
        for channels, stride in _conv_plan(cfg):
            out_channels = scaled_width(channels, width)
            layers.append(nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels, feature_length = out_channels, conv_out_length(feature_length, 3, stride, 1)
        self.features = nn.Sequential(*layers)
        self.num_features = in_channels
        self.feature_length = feature_length
        # reason: the hidden size follows the last convolution, so it shrinks with `width` like the rest.
        self.head = ClassifierHead(
            in_channels, feature_length, n_tabular, n_classes, pool_bins=pool_bins, hidden=in_channels, dropout=dropout
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_features(self, spectra: torch.Tensor) -> torch.Tensor:
        """Convolutional trunk: spectra ``[N, C, L]`` -> features ``[N, F, L']``."""
        return self.features(spectra)

    def forward_head(self, features: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Head: features ``[N, F, L']`` and tabular ``[N, T]`` -> logits ``[N, K]``."""
        return self.head(features, tabular)

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Spectra ``[N, C, L]`` and tabular ``[N, T]`` (``None`` when ``T == 0``) -> logits ``[N, K]``."""
        return self.forward_head(self.forward_features(spectra), tabular)


_OPTIONS = (WIDTH, Option("batch_norm", bool, True, "batch norm after each convolution"), POOL_BINS,
            dropout_option(0.3))


def _create_vgg(variant: str, n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> VGG:
    net = VGG(cfgs[variant], n_channels, length, n_tabular, n_classes, **kwargs)
    _logger.debug("%s: %d features x %d positions before the head", variant, net.num_features, net.feature_length)
    return net


@register_model(options=_OPTIONS)
def VGG11(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> VGG:
    """VGG11: 8 convolutions (64...512 channels at ``width`` 1.0), 5 of them stride 2.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``width``, ``batch_norm``, ``pool_bins``, ``dropout`` (see ``VGG``).

    Returns:
        The network.

    Example:
        >>> VGG11(3, 446, 0, 2, width=0.125)(torch.zeros(2, 3, 446)).shape
        torch.Size([2, 2])
    """
    return _create_vgg("VGG11", n_channels, length, n_tabular, n_classes, **kwargs)


@register_model(options=_OPTIONS)
def VGG16(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> VGG:
    """VGG16: 13 convolutions (64...512 channels at ``width`` 1.0), 5 of them stride 2.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``width``, ``batch_norm``, ``pool_bins``, ``dropout`` (see ``VGG``).

    Returns:
        The network.

    Example:
        >>> VGG16(1, 100, 2, 3, width=0.125)(torch.zeros(2, 1, 100), torch.zeros(2, 2)).shape
        torch.Size([2, 3])
    """
    return _create_vgg("VGG16", n_channels, length, n_tabular, n_classes, **kwargs)


@register_model(options=_OPTIONS)
def TinyVGG(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> VGG:
    """TinyVGG: 2 convolutions of 16 and 32 channels, both stride 2; for tests and smoke runs on a CPU.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``width``, ``batch_norm``, ``pool_bins``, ``dropout`` (see ``VGG``).

    Returns:
        The network.

    Example:
        >>> TinyVGG(3, 64, 0, 2)(torch.zeros(2, 3, 64)).shape
        torch.Size([2, 2])
    """
    return _create_vgg("TinyVGG", n_channels, length, n_tabular, n_classes, **kwargs)
