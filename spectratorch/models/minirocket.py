"""MiniRocket: fixed random dilated convolutions, proportion-of-positive-values pooling, a trained linear head.

Written from the published method (Dempster, Schmidt and Webb, "MiniRocket", KDD 2021):

- 84 kernels of length 9 with weights -1, except 2 at three of the nine positions (every choice of three);
- dilations spread exponentially from 1 to about ``(L - 1) / 8``, each with a share of the features;
- per kernel and dilation, biases drawn from quantiles (a low-discrepancy sequence) of the convolution of a random
  training spectrum, set by :meth:`MiniRocketNet.fit_data` on the training split;
- per bias, the feature is the proportion of positions where the convolution exceeds it (PPV);
- with several channels, each kernel/dilation sums the convolutions of a random subset of the channels.

- half of the kernel/dilation pairs (kernel ``k`` at the ``i``-th dilation when ``i + k`` is even) pool over the
  zero-padded convolution ("same" length), the others over the positions where the kernel fits inside the spectrum;
  the biases come from the padded convolution in both cases, as in the reference implementation.

Given the same fitted parameters (dilations, features per dilation, channel subsets, biases), the features equal
aeon's ``MiniRocket`` transform (``tests/models/test_rocket_reference.py``); the random draws themselves (which
channels, which training spectra) come from torch's generator, not numpy's. The features are standardised (mean
and spread fitted with the biases) and a linear layer maps them and the tabular values to the logits. All of it
lives in buffers, so checkpoints and ONNX files carry it.
"""

import itertools
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spectratorch.errors import ConfigError
from spectratorch.models._layers import check_int, check_io, dropout_option, is_exporting
from spectratorch.models.logistic import set_logistic_head
from spectratorch.models.registry import register_model
from spectratorch.options import Option

__all__ = ["MiniRocket", "MiniRocketNet", "MIN_LENGTH", "minirocket_dilations"]

_logger = logging.getLogger(__name__)

_KERNEL_LENGTH = 9
MIN_LENGTH = _KERNEL_LENGTH
"""The fewest points a spectrum may have (one kernel's span)."""
_N_KERNELS = 84  # reason: C(9, 3) choices of the three positions that weigh 2
_GOLDEN = (math.sqrt(5) + 1) / 2
_STEP = 2.0**-100  # reason: see MiniRocketNet._ppv


def _base_kernels() -> torch.Tensor:
    weights = torch.full((_N_KERNELS, _KERNEL_LENGTH), -1.0)
    for row, positions in enumerate(itertools.combinations(range(_KERNEL_LENGTH), 3)):
        weights[row, list(positions)] = 2.0
    return weights


def minirocket_dilations(length: int, n_features: int, max_dilations: int = 32) -> tuple[list[int], list[int]]:
    """Dilations and features per kernel at each, as in MiniRocket.

    Args:
        length: Spectral length ``L``.
        n_features: Features wanted in all (rounded down to a multiple of 84).
        max_dilations: Most dilations per kernel.

    Returns:
        ``(dilations, features_per_kernel)``, two lists of the same length.

    Example:
        >>> dilations, counts = minirocket_dilations(446, 10_000)
        >>> dilations[0], dilations[-1] <= (446 - 1) / 8, 84 * sum(counts)
        (1, True, 9996)
    """
    per_kernel = max(1, n_features // _N_KERNELS)
    n_dilations = min(per_kernel, max_dilations)
    max_exponent = math.log2(max(1.0, (length - 1) / (_KERNEL_LENGTH - 1)))
    raw = np.floor(np.logspace(0, max_exponent, n_dilations, base=2)).astype(int)
    dilations, counts = np.unique(raw, return_counts=True)
    features = (counts * (per_kernel / n_dilations)).astype(int)
    for i in range(per_kernel - int(features.sum())):
        features[i % len(features)] += 1
    keep = features > 0
    return [int(d) for d in dilations[keep]], [int(f) for f in features[keep]]


class MiniRocketNet(nn.Module):
    """MiniRocket features (fixed, fitted once on training data) and a trained linear head.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        n_features: Random-kernel features (about; a multiple of 84). 10 000 in the paper.
        max_dilations: Most dilations per kernel.
        seed: Seed of the channel subsets and of the spectra the biases come from (the features are part of the
            architecture, not of the training run).
        dropout: Dropout on the standardised features.

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> net = MiniRocketNet(2, 120, 0, 3, n_features=840)
        >>> _ = net.fit_data(torch.randn(30, 2, 120))
        >>> net(torch.randn(5, 2, 120)).shape
        torch.Size([5, 3])
    """

    DEFAULT_WEIGHT_DECAY = 1e-3
    # reason: no learning rate of its own. On fewer than LARGE_TRAIN training rows the head is solved (ridge, alpha
    # by leave-one-out, pipelines/small.py) and takes no Adam step; on larger sets Adam starts from the lbfgs
    # solution at the package's default rate (1e-3), which no set of ours chose for this head.

    def __init__(self, n_channels: int, length: int, n_tabular: int, n_classes: int, n_features: int = 4000,
                 max_dilations: int = 32, seed: int = 0, dropout: float = 0.0):
        super().__init__()
        check_io("MiniRocket", n_channels, length, n_tabular, n_classes)
        check_int("n_features", n_features, "MiniRocket", minimum=_N_KERNELS)
        check_int("max_dilations", max_dilations, "MiniRocket")
        if length < _KERNEL_LENGTH:
            raise ConfigError(f"MiniRocket needs spectra of at least {_KERNEL_LENGTH} points; got {length}.")
        self.n_tabular, self.n_classes, self.seed = n_tabular, n_classes, seed
        self.dilations, self.features_per_kernel = minirocket_dilations(length, n_features, max_dilations)
        generator = torch.Generator().manual_seed(seed)
        base = _base_kernels()
        for i, dilation in enumerate(self.dilations):
            mask = self._channel_mask(n_channels, generator)
            self.register_buffer(f"weight_{i}", base[:, None, :] * mask[:, :, None])
            self.register_buffer(f"bias_{i}", torch.zeros(_N_KERNELS, self.features_per_kernel[i]))
        self.num_features = _N_KERNELS * sum(self.features_per_kernel)
        self.register_buffer("feature_mean", torch.zeros(self.num_features))
        self.register_buffer("feature_scale", torch.ones(self.num_features))
        self.dropout = nn.Dropout(dropout)
        self._fit_features: torch.Tensor | None = None
        self.fc = nn.Linear(self.num_features + n_tabular, n_classes)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    @staticmethod
    def _channel_mask(n_channels: int, generator: torch.Generator) -> torch.Tensor:
        """``[84, C]`` 0/1: each kernel's random subset of channels (1 to min(C, 9), log-uniform in count)."""
        if n_channels == 1:
            return torch.ones(_N_KERNELS, 1)
        top = math.log2(min(n_channels, _KERNEL_LENGTH) + 1)
        counts = (2 ** (torch.rand(_N_KERNELS, generator=generator) * top)).floor().clamp(1, n_channels).long()
        order = torch.rand(_N_KERNELS, n_channels, generator=generator).argsort(dim=1)
        return (order.argsort(dim=1) < counts[:, None]).float()

    @property
    def head(self) -> nn.Linear:
        """The final linear layer (features and tabular values -> logits), where a closed-form solution goes."""
        return self.fc

    def _convolve(self, spectra: torch.Tensor, i: int, weight: torch.Tensor | None = None) -> torch.Tensor:
        dilation = self.dilations[i]
        weight = getattr(self, f"weight_{i}") if weight is None else weight
        return F.conv1d(spectra, weight, padding=(_KERNEL_LENGTH // 2) * dilation, dilation=dilation)

    @torch.no_grad()
    def fit_data(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None,
                 y: torch.Tensor | None = None, keep_features: bool = False) -> "MiniRocketNet":
        """Set the biases from training spectra, then the features' mean and spread, then (given ``y``) the head.

        Args:
            spectra: preprocessed training spectra ``[N, C, L]`` (a few hundred to a few thousand are enough).
            tabular: preprocessed tabular values ``[N, T]`` (``None`` when ``T == 0``); used for the head only.
            y: their classes ``[N]``: the head starts from their logistic regression on the standardised features
                (lbfgs, C by cross-validation), as the paper's classifier does; ``None`` keeps the zero start.
            keep_features: keep the standardised features of ``spectra`` (computed here for the scaling) until
                :meth:`take_fit_features` hands them over, so a caller needing them does not transform again.

        Returns:
            ``self``.
        """
        generator = torch.Generator().manual_seed(self.seed)
        offset = 0
        for i in range(len(self.dilations)):
            count = self.features_per_kernel[i]
            rows = torch.randint(len(spectra), (_N_KERNELS,), generator=generator)
            # reason: kernel k on its own spectrum k only, as one grouped convolution (not all 84 on all 84).
            own = F.conv1d(spectra[rows].flatten(0, 1)[None], getattr(self, f"weight_{i}"), groups=_N_KERNELS,
                           padding=(_KERNEL_LENGTH // 2) * self.dilations[i], dilation=self.dilations[i])[0]
            steps = torch.arange(offset + 1, offset + _N_KERNELS * count + 1, dtype=torch.float64)
            quantiles = torch.frac(steps * _GOLDEN).view(_N_KERNELS, count).to(own.dtype)
            getattr(self, f"bias_{i}").copy_(_row_quantiles(own, quantiles))
            offset += _N_KERNELS * count
        features = self.transform(spectra)
        self.feature_mean.copy_(features.mean(0))
        self.feature_scale.copy_(features.std(0, correction=int(len(features) > 1)).clamp_min(1e-3))
        features = (features - self.feature_mean) / self.feature_scale
        self._fit_features = features if keep_features else None
        if y is not None:
            if self.n_tabular > 0:
                features = torch.cat([features, tabular], dim=1)
            c = set_logistic_head(self.fc, features, y, self.seed)
            _logger.info("MiniRocket: head started from the logistic regression of %d training rows (C=%g)", len(y), c)
        return self

    def take_fit_features(self) -> torch.Tensor | None:
        """``forward_features`` of the rows the last ``fit_data(..., keep_features=True)`` saw, handed over once.

        Returns:
            ``[N, F]`` standardised features, or ``None`` (none kept, or already taken).
        """
        features, self._fit_features = self._fit_features, None
        return features

    @torch.no_grad()
    def transform(self, spectra: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """The MiniRocket transform, a batch of rows at a time: spectra ``[N, C, L]`` -> PPV features ``[N, F]``.

        Args:
            spectra: preprocessed spectra ``[N, C, L]``.
            batch_size: rows per pass (default: about 2**21 kernel responses per pass).

        Returns:
            The features, not standardised, in the reference's order (dilation, then kernel, then bias).
        """
        return self._ppv_in_passes(spectra, batch_size)

    def _ppv_in_passes(self, spectra: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        batch_size = batch_size or self._rows_per_pass(spectra.shape[-1])
        halves = self._halves()
        return torch.cat([self._ppv(spectra[start : start + batch_size], halves)
                          for start in range(0, max(len(spectra), 1), batch_size)])

    def _rows_per_pass(self, length: int) -> int:
        # reason: passes whose responses stay in cache are faster: on 2000-point spectra (10,000 features, one
        # thread), 2 rows per pass (about 2**21 responses against their biases per dilation) took 105 us per row and
        # dilation, 1 row 147 us.
        responses_per_dilation = self.num_features * length // len(self.dilations)
        return max(1, 2**21 // responses_per_dilation)

    def _halves(self) -> list[tuple[tuple[torch.Tensor, torch.Tensor], ...]]:
        """Per dilation, ``((weight, bias) padded, (weight, bias) inside)``: weights ``[kernels, C * 9]``
        (channel-major taps), biases ``[kernels, features per kernel]``."""
        halves = []
        for i in range(len(self.dilations)):
            padded, inside, _ = _padding_split(i)
            weight, bias = getattr(self, f"weight_{i}").flatten(1), getattr(self, f"bias_{i}")
            halves.append(tuple((weight[rows], bias[rows]) for rows in (padded, inside)))
        return halves

    def _ppv(self, spectra: torch.Tensor, halves: list | None = None) -> torch.Tensor:
        halves = self._halves() if halves is None else halves
        length = spectra.shape[-1]
        parts = []
        for i, dilation in enumerate(self.dilations):
            _, _, order = _padding_split(i)
            edge = (_KERNEL_LENGTH // 2) * dilation
            # reason: the nine taps of every position as a matrix [N, C * 9, L], so each half is one matrix product
            # (as fast as oneDNN's dilated conv1d here, and the inside half skips the padded positions).
            padded = F.pad(spectra, (edge, edge))
            taps = torch.stack([padded[..., j * dilation : j * dilation + length] for j in range(_KERNEL_LENGTH)], 2)
            taps = taps.flatten(1, 2)
            ppv = []
            for (weight, bias), columns in zip(halves[i], (taps, taps[..., edge : length - edge]), strict=True):
                responses = torch.matmul(weight, columns)  # [N, kernels, positions]
                # reason: the proportion above each bias as a sum of floats: clamp(r - b, 0, step) is 0 or step for
                # every float32 difference (none lies in (0, 2**-100) but zero), and a broadcast subtraction, a clamp
                # and a sum for all biases at once ran 3x faster than a comparison and a mean per bias on a CPU
                # (measured); all export to ONNX (Sub, Clip, ReduceSum).
                above = (responses[:, :, None, :] - bias[None, :, :, None]).clamp_(0.0, _STEP).sum(3)
                ppv.append(above * (1.0 / (_STEP * columns.shape[-1])))
            parts.append(torch.cat(ppv, dim=1)[:, order].flatten(1))
        return torch.cat(parts, dim=1)

    def forward_features(self, spectra: torch.Tensor) -> torch.Tensor:
        """Spectra ``[N, C, L]`` -> standardised PPV features ``[N, F]``."""
        # reason: a few rows per pass, as `transform`, so a pass's responses against every bias ([rows, kernels,
        # biases, positions] floats) stay in cache and its memory bounded; an export traces one pass over the whole
        # (dynamic) batch. The proportions are step functions of the spectra (zero gradient almost everywhere), so
        # they are computed without autograd: a model holding MiniRocket keeps no graph of its responses (a vote with
        # a linear member kept them all for its saliency: 7 to 8 GB in the 5-fold cv of 1,000 x 2,000 spectra, 1 GB
        # without), and MiniRocket alone has no gradient in its spectra.
        with torch.no_grad():
            ppv = self._ppv(spectra) if is_exporting() else self._ppv_in_passes(spectra)
        return (ppv - self.feature_mean) / self.feature_scale

    def forward_head(self, features: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[N, F]`` and tabular ``[N, T]`` -> logits ``[N, K]``."""
        features = self.dropout(features)
        if self.n_tabular > 0:
            features = torch.cat([features, tabular], dim=1)
        return self.fc(features)

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Spectra ``[N, C, L]`` and tabular ``[N, T]`` (``None`` when ``T == 0``) -> logits ``[N, K]``."""
        return self.forward_head(self.forward_features(spectra), tabular)


def _padding_split(i: int) -> tuple[list[int], list[int], list[int]]:
    """Kernels pooled over the padded convolution at the ``i``-th dilation, those pooled inside, and the order that
    puts ``padded + inside`` back in kernel order."""
    padded = [k for k in range(_N_KERNELS) if (i + k) % 2 == 0]
    inside = [k for k in range(_N_KERNELS) if (i + k) % 2 == 1]
    order = np.argsort(padded + inside).tolist()
    return padded, inside, order


def _row_quantiles(values: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Row ``k`` of ``values [K, L]`` at its own quantiles ``quantiles[k]`` -> ``[K, n]`` (linear interpolation)."""
    ordered = values.sort(dim=1).values
    position = quantiles * (values.shape[1] - 1)
    low = position.floor().long()
    high = (low + 1).clamp_max(values.shape[1] - 1)
    weight = position - low
    return torch.lerp(ordered.gather(1, low), ordered.gather(1, high), weight)


@register_model(options=(Option("n_features", int, 4000, "random-kernel features", low=_N_KERNELS),
                         Option("max_dilations", int, 32, "dilations per kernel, at most", low=1),
                         Option("seed", int, 0, "seed of the random biases' samples", low=0),
                         dropout_option(0.0, "the standardised features")),
                default_weight_decay=MiniRocketNet.DEFAULT_WEIGHT_DECAY)
def MiniRocket(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> MiniRocketNet:
    """MiniRocket: random dilated kernels with PPV pooling (fixed) and a trained linear head; strong on small sets.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``n_features``, ``max_dilations``, ``seed``, ``dropout`` (see ``MiniRocketNet``).

    Returns:
        The network; call ``fit_data`` on preprocessed training spectra before training (``SpectralClassifier.fit``
        does).

    Example:
        >>> MiniRocket(1, 200, 0, 2).num_features
        3948
    """
    return MiniRocketNet(n_channels, length, n_tabular, n_classes, **kwargs)
