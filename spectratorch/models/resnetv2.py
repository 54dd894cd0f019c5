"""ResNetV2 for spectra: BiT-style pre-activation bottlenecks with GroupNorm and weight-standardised convolutions.

Stage ``i`` has bottleneck width ``64 * 2**i * wf`` and output width four times that (BiT), scaled by ``width``
so the network fits a CPU; the first stage keeps the length, each later one halves it.
"""

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spectratorch.errors import ConfigError
from spectratorch.models._layers import (
    POOL_BINS,
    WIDTH,
    ClassifierHead,
    StdConv1d,
    check_int,
    check_io,
    check_positive,
    conv_out_length,
    dropout_option,
    scaled_width,
)
from spectratorch.models.registry import register_model
from spectratorch.options import Option

__all__ = ["PreActBottleneck", "PreActResNet", "ResNetV2"]

_logger = logging.getLogger(__name__)

_MAX_GROUPS = 32


def _group_norm(channels: int) -> nn.GroupNorm:
    # reason: BiT uses 32 groups; a scaled width need not be a multiple of 32, so take the largest divisor.
    return nn.GroupNorm(math.gcd(_MAX_GROUPS, channels), channels)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: (GN, ReLU, 1x conv), (GN, ReLU, 3x conv with stride), (GN, ReLU, 1x conv) + skip.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        mid_channels: Bottleneck channels.
        stride: Stride of the middle convolution (and of the projection skip).

    Shapes:
        input ``[N, in_channels, L]`` -> output ``[N, out_channels, L_out]``.

    Example:
        >>> block = PreActBottleneck(16, 32, 8, stride=2)
        >>> block(torch.zeros(2, 16, 9)).shape
        torch.Size([2, 32, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, stride: int = 1):
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = StdConv1d(in_channels, mid_channels, 1)
        self.norm2 = _group_norm(mid_channels)
        self.conv2 = StdConv1d(mid_channels, mid_channels, 3, stride=stride, padding=1)
        self.norm3 = _group_norm(mid_channels)
        self.conv3 = StdConv1d(mid_channels, out_channels, 1)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = StdConv1d(in_channels, out_channels, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` ``[N, C_in, L]``; returns ``[N, C_out, L_out]``."""
        x_preact = F.relu(self.norm1(x))
        # reason: pre-activation (ResNetV2): a projection skip reads the normalised input, an identity skip the raw.
        shortcut = x if self.downsample is None else self.downsample(x_preact)
        x = self.conv1(x_preact)
        x = self.conv2(F.relu(self.norm2(x)))
        x = self.conv3(F.relu(self.norm3(x)))
        return x + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet (ResNetV2, BiT) over 1D spectra with a tabular-aware head.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        block_units: Bottlenecks per stage; (3, 4, 6, 3) is ResNet-50.
        wf: Width factor of BiT (R50x1, R50x3...).
        width: Channel multiplier on top of ``wf``, below 1.0 to shrink the network for a CPU.
        pool_bins: Positions the head pools the features to (adaptive average bins); 1 is global average.
        dropout: Dropout after each hidden dense layer.

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> net = PreActResNet(2, 100, 1, 3, block_units=(1, 1), width=0.125)
        >>> net(torch.zeros(4, 2, 100), torch.zeros(4, 1)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        n_channels: int,
        length: int,
        n_tabular: int,
        n_classes: int,
        block_units: Sequence[int] = (3, 4, 6, 3),
        wf: int = 1,
        width: float = 1.0,
        pool_bins: int = 4,
        dropout: float = 0.3,
    ):
        super().__init__()
        check_io("ResNetV2", n_channels, length, n_tabular, n_classes)
        _check_block_units(block_units)
        check_int("wf", wf, "ResNetV2")
        check_positive("width", width, "ResNetV2")
        check_int("pool_bins", pool_bins, "ResNetV2")
        self.n_tabular = n_tabular
        self.n_classes = n_classes
        stem_channels = scaled_width(64 * wf, width)
        self.stem = nn.Sequential(
            StdConv1d(n_channels, stem_channels, 7, stride=2, padding=3),
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        feature_length = conv_out_length(conv_out_length(length, 7, 2, 3), 3, 2, 1)
        blocks: list[nn.Module] = []
        in_channels = stem_channels
        for stage, units in enumerate(block_units):
            mid_channels = scaled_width(64 * 2**stage * wf, width)
            out_channels = 4 * mid_channels
            for unit in range(units):
                stride = 2 if stage > 0 and unit == 0 else 1
                blocks.append(PreActBottleneck(in_channels, out_channels, mid_channels, stride=stride))
                in_channels, feature_length = out_channels, conv_out_length(feature_length, 3, stride, 1)
        self.stages = nn.Sequential(*blocks)
        # reason: pre-activation blocks end on a sum, so the trunk needs a last norm and activation.
        self.norm = _group_norm(in_channels)
        self.num_features = in_channels
        self.feature_length = feature_length
        self.head = ClassifierHead(
            in_channels,
            feature_length,
            n_tabular,
            n_classes,
            pool_bins=pool_bins,
            hidden=scaled_width(512 * wf, width),
            dropout=dropout,
        )

    def forward_features(self, spectra: torch.Tensor) -> torch.Tensor:
        """Trunk: spectra ``[N, C, L]`` -> features ``[N, F, L']``."""
        return F.relu(self.norm(self.stages(self.stem(spectra))))

    def forward_head(self, features: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Head: features ``[N, F, L']`` and tabular ``[N, T]`` -> logits ``[N, K]``."""
        return self.head(features, tabular)

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Spectra ``[N, C, L]`` and tabular ``[N, T]`` (``None`` when ``T == 0``) -> logits ``[N, K]``."""
        return self.forward_head(self.forward_features(spectra), tabular)


def _check_block_units(block_units) -> None:
    if (
        isinstance(block_units, (str, bytes))
        or not isinstance(block_units, Sequence)
        or not block_units
        or any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in block_units)
    ):
        raise ConfigError(
            f"The 'block_units' parameter of ResNetV2 must be a non-empty sequence of positive "
            f"integers, e.g. (3, 4, 6, 3). Got {block_units!r} instead."
        )


@register_model(options=(Option("block_units", tuple, (3, 4, 6, 3), "blocks per stage, e.g. 3_4_6_3"),
                         Option("wf", int, 1, "width factor", low=1), WIDTH, POOL_BINS, dropout_option(0.3)))
def ResNetV2(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> PreActResNet:
    """ResNetV2 (BiT): stem convolution and max-pool, pre-activation bottleneck stages, GroupNorm, StdConv1d.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``block_units``, ``wf``, ``width``, ``pool_bins``, ``dropout`` (see ``PreActResNet``).

    Returns:
        The network.

    Example:
        >>> ResNetV2(3, 446, 0, 2, block_units=(1, 1, 1, 1), width=0.25)(torch.zeros(2, 3, 446)).shape
        torch.Size([2, 2])
    """
    net = PreActResNet(n_channels, length, n_tabular, n_classes, **kwargs)
    _logger.debug("ResNetV2: %d features x %d positions before the head", net.num_features, net.feature_length)
    return net
