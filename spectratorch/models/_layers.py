"""Blocks shared by the network families: scaled widths, length arithmetic, bin pooling, the classifier head.

Every block here exports to ONNX with a dynamic batch axis: shapes other than the batch are fixed when the
network is built, because the spectral length is known then.
"""

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from spectratorch.errors import ConfigError
from spectratorch.options import Option

__all__ = [
    "StdConv1d",
    "BinPool1d",
    "ClassifierHead",
    "scaled_width",
    "conv_out_length",
    "check_int",
    "check_positive",
    "check_io",
    "WIDTH",
    "POOL_BINS",
    "dropout_option",
]

_logger = logging.getLogger(__name__)


def is_exporting() -> bool:
    """Whether the forward pass is being traced or compiled (an ONNX export, ``torch.jit.trace``, ``torch.compile``):
    input checks and Python-level chunking are left out of the recorded graph."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def check_int(name: str, value, caller: str, minimum: int = 1) -> None:
    """Raise if an argument is not an integer of at least ``minimum``.

    Args:
        name: Argument name, for the message.
        value: The value given.
        caller: The network or block that takes it, for the message.
        minimum: Smallest value allowed.

    Raises:
        ConfigError: If ``value`` is not an ``int`` (``bool`` excluded) or is below ``minimum``.

    Example:
        >>> check_int("n_tabular", 0, "VGG11", minimum=0)
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"The {name!r} parameter of {caller} must be an integer >= {minimum}. Got {value!r} instead.")


def check_positive(name: str, value, caller: str) -> None:
    """Raise if an argument is not a positive real number.

    Args:
        name: Argument name, for the message.
        value: The value given.
        caller: The network or block that takes it, for the message.

    Raises:
        ConfigError: If ``value`` is not a positive ``int`` or ``float``.

    Example:
        >>> check_positive("width", 0.5, "VGG11")
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ConfigError(f"The {name!r} parameter of {caller} must be a positive number. Got {value!r} instead.")


def check_io(caller: str, n_channels: int, length: int, n_tabular: int, n_classes: int) -> None:
    """Check the four arguments every registered builder takes.

    Args:
        caller: The network, for the message.
        n_channels: Spectral channels ``C`` (at least 1).
        length: Spectral length ``L`` (at least 1).
        n_tabular: Tabular features ``T`` (at least 0).
        n_classes: Classes ``K`` (at least 1).

    Raises:
        ConfigError: If one is out of range.

    Example:
        >>> check_io("VGG11", 3, 446, 0, 2)
    """
    check_int("n_channels", n_channels, caller)
    check_int("length", length, caller)
    check_int("n_tabular", n_tabular, caller, minimum=0)
    check_int("n_classes", n_classes, caller)


# ---- options several architectures declare (``@register_model(options=...)``) ------------------------------------
WIDTH = Option("width", float, 1.0, "channel multiplier (1.0 = full size)", low=0, high=64, low_open=True)
POOL_BINS = Option("pool_bins", int, 4, "positions kept by the pooling before the head", low=1)


def dropout_option(default: float, where: str = "the dense head") -> Option:
    """The ``dropout`` option, with an architecture's default.

    Example:
        >>> dropout_option(0.3).check(0.5)
        0.5
    """
    return Option("dropout", float, default, f"dropout of {where}", low=0, high=0.99)


def scaled_width(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by a width multiplier, rounded to a multiple of ``divisor`` (at least ``divisor``).

    Args:
        channels: Channel count at width 1.0.
        width: Multiplier (0.125 gives a network that trains in minutes on a CPU).
        divisor: Result is a multiple of this, so group norms have whole groups.

    Returns:
        The scaled channel count.

    Example:
        >>> scaled_width(512, 0.125), scaled_width(64, 0.01)
        (64, 8)
    """
    return max(divisor, int(round(channels * width / divisor)) * divisor)


def conv_out_length(length: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a 1D convolution or pooling (dilation 1, floor mode).

    Args:
        length: Input length.
        kernel_size: Kernel size.
        stride: Stride.
        padding: Zero padding on each side.

    Returns:
        The output length.

    Example:
        >>> conv_out_length(446, 3, stride=2, padding=1)
        223
    """
    return (length + 2 * padding - kernel_size) // stride + 1


class StdConv1d(nn.Conv1d):
    """Conv1d with weight standardisation: each output filter has zero mean and unit variance before use.

    Paired with GroupNorm as in BiT (ResNetV2), it removes the dependence on batch statistics.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size.
        stride: Stride.
        padding: Zero padding on each side.
        bias: Whether to add a bias.
        eps: Added to the filter variance.

    Shapes:
        input ``[N, in_channels, L]`` -> output ``[N, out_channels, L_out]``.

    Example:
        >>> conv = StdConv1d(2, 8, 3, padding=1)
        >>> conv(torch.zeros(4, 2, 20)).shape
        torch.Size([4, 8, 20])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        eps: float = 1e-6,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` ``[N, C_in, L]`` with the standardised weight; returns ``[N, C_out, L_out]``."""
        mean = self.weight.mean(dim=(1, 2), keepdim=True)
        var = self.weight.var(dim=(1, 2), unbiased=False, keepdim=True)
        weight = (self.weight - mean) / torch.sqrt(var + self.eps)
        return F.conv1d(x, weight, self.bias, self.stride, self.padding)


class BinPool1d(nn.Module):
    """Average pooling of a known length into ``bins`` positions, the bins of ``adaptive_avg_pool1d``.

    Computed as a product with a fixed ``[length, bins]`` averaging matrix, because the TorchScript ONNX exporter
    (``dynamo=False``) refuses adaptive pooling when the length is not a multiple of the bins; since the length
    is known when the network is built, the bin boundaries are too. The matrix is derived from the arguments,
    so it is not saved.

    Args:
        length: Input length ``L``.
        bins: Output positions; 1 is global average pooling.

    Shapes:
        input ``[N, C, L]`` -> output ``[N, C, bins]``.

    Example:
        >>> pool = BinPool1d(7, 3)
        >>> x = torch.arange(7.0).reshape(1, 1, 7)
        >>> torch.allclose(pool(x), F.adaptive_avg_pool1d(x, 3))
        True
    """

    def __init__(self, length: int, bins: int):
        super().__init__()
        check_int("length", length, "BinPool1d")
        check_int("bins", bins, "BinPool1d")
        self.length = length
        self.bins = bins
        weight = torch.zeros(length, bins)
        for i in range(bins):
            # reason: the same boundaries as adaptive_avg_pool1d, so bins overlap when bins > length.
            start = (i * length) // bins
            end = math.ceil((i + 1) * length / bins)
            weight[start:end, i] = 1.0 / (end - start)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` ``[N, C, L]`` to ``[N, C, bins]``."""
        return torch.matmul(x, self.weight)

    def extra_repr(self) -> str:
        return f"length={self.length}, bins={self.bins}"


class ClassifierHead(nn.Module):
    """Pool to a few bins, flatten, append the tabular features, two dense layers, then the logits.

    Args:
        in_channels: Feature channels ``F`` from the network trunk.
        in_length: Feature length ``L'`` from the network trunk.
        n_tabular: Tabular features ``T`` (0: no tabular input).
        n_classes: Classes ``K``.
        pool_bins: Positions kept by the pooling; 1 is global average pooling.
        hidden: Size of the two hidden dense layers.
        dropout: Dropout probability after each hidden layer.

    Shapes:
        features ``[N, F, L']`` and tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> head = ClassifierHead(16, 10, 2, 3, pool_bins=4, hidden=8, dropout=0.0)
        >>> head(torch.zeros(5, 16, 10), torch.zeros(5, 2)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        in_channels: int,
        in_length: int,
        n_tabular: int,
        n_classes: int,
        pool_bins: int = 4,
        hidden: int = 64,
        dropout: float = 0.3,
    ):
        super().__init__()
        check_int("pool_bins", pool_bins, "the classifier head")
        check_int("hidden", hidden, "the classifier head")
        check_int("n_tabular", n_tabular, "the classifier head", minimum=0)
        check_int("n_classes", n_classes, "the classifier head")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(
                f"The 'dropout' parameter of the classifier head must be in [0, 1). Got {dropout!r} instead."
            )
        self.n_tabular = n_tabular
        self.pool = BinPool1d(in_length, pool_bins)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels * pool_bins + n_tabular, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, features: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Map features ``[N, F, L']`` and tabular ``[N, T]`` to logits ``[N, K]``."""
        x = self.pool(features).flatten(1)
        # reason: with T == 0 the tabular input is left out of the graph, so an ONNX export has only spectra.
        if self.n_tabular > 0:
            if tabular is None:
                raise ConfigError(
                    f"This model takes {self.n_tabular} tabular features, but tabular is None; "
                    f"pass a tensor of shape [N, {self.n_tabular}]."
                )
            x = torch.cat([x, tabular], dim=1)
        return self.fc(self.mlp(x))
