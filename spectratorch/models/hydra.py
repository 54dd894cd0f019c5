"""Hydra: groups of competing random kernels, counted where each wins, and a linear head.

Written from the published method (Dempster, Schmidt and Webb, "Hydra: competing convolutional kernels for fast and
accurate time series classification", Data Mining and Knowledge Discovery, 2023):

- per dilation (``1, 2, 4, ...`` up to about ``(L - 1) / 8``), ``n_groups`` groups of ``n_kernels`` random kernels
  of length 9 (normal weights, each kernel made zero-mean and scaled to unit absolute sum), zero-padded;
- half of the groups see the spectrum, the other half its first difference;
- with several channels, each group sees the sum of a random subset of the channels (drawn with repetition,
  ``clip(C // 2, 2, max_channels)`` of them);
- at every position, within each group, the kernel with the largest response adds that response to its first
  feature, and the kernel with the smallest response adds 1 to its second feature;
- the features go through the paper's sparse scaling (square root of the positive part; mean and spread from the
  training rows, zeros kept at zero), then a linear layer.

The kernels are drawn from ``seed`` by torch's generator in the order of the reference implementation, so the
transform equals aeon's ``HydraTransformer(random_state=seed)``; ``tests/models/test_rocket_reference.py`` checks
it. Everything lives in buffers, so checkpoints and ONNX files carry it.
"""

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

__all__ = ["Hydra", "HydraNet", "MIN_LENGTH", "hydra_dilations"]

_logger = logging.getLogger(__name__)

_KERNEL_LENGTH = 9
MIN_LENGTH = _KERNEL_LENGTH
"""The fewest points a spectrum may have (one kernel's span)."""
# reason: the published values: unseen zeros weigh in the spread as (share of zeros) ** 4, plus 1e-8.
_SPARSE_EXPONENT = 4
_SPARSE_EPSILON = 1e-8
# reason: rows per pass of `transform` so one pass holds about 2 ** 20 responses (4 MiB, in cache): on 100 x 2000
# spectra, one row per pass took 5.1 s of CPU, four rows 6.3 s, 32 rows 20 s.
_PASS_ELEMENTS = 2**20


def hydra_dilations(length: int) -> list[int]:
    """Dilations ``1, 2, 4, ...`` up to ``(L - 1) / 8`` (at least ``[1]``), as in Hydra.

    Example:
        >>> hydra_dilations(2000), hydra_dilations(16)
        ([1, 2, 4, 8, 16, 32, 64, 128], [1])
    """
    top = int(math.log2((length - 1) / (_KERNEL_LENGTH - 1))) if length > _KERNEL_LENGTH else 0
    return [2**e for e in range(max(top, 0) + 1)]


class HydraNet(nn.Module):
    """Hydra features (random kernels fixed by the seed; scaling fitted on training data) and a linear head.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        n_kernels: Kernels per group (8 in the paper).
        n_groups: Groups per dilation (64 in the paper); half see the first difference.
        max_channels: Most channels summed into one group's input (8 in the reference).
        seed: Seed of the kernels and channel subsets (the features are part of the architecture).
        dropout: Dropout on the scaled features.

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> net = HydraNet(2, 120, 0, 3, n_groups=16)
        >>> _ = net.fit_data(torch.randn(30, 2, 120))
        >>> net(torch.randn(5, 2, 120)).shape, net.num_features
        (torch.Size([5, 3]), 1024)
    """

    DEFAULT_WEIGHT_DECAY = 1e-3
    # reason: as MiniRocket: the head starts from the logistic regression solved in fit_data, so Adam only refines
    # it (the value MiniRocket's was chosen at, on generated NIR spectra).
    DEFAULT_LR = 1e-4

    def __init__(self, n_channels: int, length: int, n_tabular: int, n_classes: int, n_kernels: int = 8,
                 n_groups: int = 64, max_channels: int = 8, seed: int = 0, dropout: float = 0.0):
        super().__init__()
        check_io("Hydra", n_channels, length, n_tabular, n_classes)
        check_int("n_kernels", n_kernels, "Hydra")
        check_int("n_groups", n_groups, "Hydra")
        check_int("max_channels", max_channels, "Hydra")
        if length < _KERNEL_LENGTH:
            raise ConfigError(f"Hydra needs spectra of at least {_KERNEL_LENGTH} points; got {length}.")
        self.n_channels, self.n_tabular, self.n_classes, self.seed = n_channels, n_tabular, n_classes, seed
        self.n_kernels = n_kernels
        self.dilations = hydra_dilations(length)
        self.n_inputs = min(2, n_groups)  # the spectrum, and its first difference when there are 2+ groups
        self.groups_per_input = n_groups // self.n_inputs
        generator = torch.Generator().manual_seed(seed)
        # reason: the reference's order of draws (all weights, then each dilation's channels), so a seed gives its
        # kernels.
        weight = torch.randn(len(self.dilations), self.n_inputs, n_kernels * self.groups_per_input, 1, _KERNEL_LENGTH,
                             generator=generator)
        weight = weight - weight.mean(-1, keepdim=True)
        self.register_buffer("weight", weight / weight.abs().sum(-1, keepdim=True))
        per_group = int(np.clip(n_channels // 2, 2, max_channels))
        channels = torch.stack([torch.randint(0, n_channels, (self.n_inputs, self.groups_per_input, per_group),
                                              generator=generator) for _ in self.dilations])
        self.register_buffer("channels", channels)  # [dilations, inputs, groups, per_group]
        self.num_features = len(self.dilations) * self.n_inputs * 2 * self.groups_per_input * n_kernels
        self.register_buffer("feature_mean", torch.zeros(self.num_features))
        self.register_buffer("feature_scale", torch.ones(self.num_features))
        self.dropout = nn.Dropout(dropout)
        self._fit_features: torch.Tensor | None = None
        self.head = nn.Linear(self.num_features + n_tabular, n_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _counts(self, spectra: torch.Tensor) -> torch.Tensor:
        """One pass of the transform: ``[N, C, L]`` -> ``[N, F]`` (dilation, input, max/min, group, kernel)."""
        inputs = (spectra, spectra[..., 1:] - spectra[..., :-1])[: self.n_inputs]
        groups, parts = self.groups_per_input, []
        for i, dilation in enumerate(self.dilations):
            padding = (_KERNEL_LENGTH - 1) * dilation // 2
            for j, source in enumerate(inputs):
                if self.n_channels > 1:
                    # reason: each group convolves the sum of its own channels (grouped convolution).
                    source = source[:, self.channels[i, j]].sum(2)
                out = F.conv1d(source, self.weight[i, j], dilation=dilation, padding=padding,
                               groups=groups if self.n_channels > 1 else 1).unflatten(1, (groups, self.n_kernels))
                high, high_at = out.max(2)
                # reason: min(dim) over the kernels of a group is 5x faster than argmin(dim) on a CPU (measured).
                low_at = out.min(2).indices
                # reason: zeros and ones made from the data: the exporter freezes zeros_like and ones_like to the
                # example's batch size.
                empty = out[..., 0] * 0  # [N, groups, kernels]
                parts.append(empty.scatter_add(2, high_at, high))
                parts.append(empty.scatter_add(2, low_at, (low_at >= 0).to(high.dtype)))
        return torch.cat(parts, dim=1).flatten(1)

    @torch.no_grad()
    def transform(self, spectra: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """The Hydra transform, a batch of rows at a time: spectra ``[N, C, L]`` -> counts ``[N, F]`` (not scaled).

        Args:
            spectra: preprocessed spectra ``[N, C, L]``.
            batch_size: rows per pass (default: about 2**20 responses per pass).

        Returns:
            The features in the reference's order (dilation, spectrum/difference, max/min, group, kernel).
        """
        return self._counts_in_passes(spectra, batch_size)

    def _counts_in_passes(self, spectra: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        width = self.weight.shape[2] * spectra.shape[-1]
        batch_size = batch_size or max(1, _PASS_ELEMENTS // width)
        return torch.cat([self._counts(spectra[start : start + batch_size])
                          for start in range(0, max(len(spectra), 1), batch_size)])

    def take_fit_features(self) -> torch.Tensor | None:
        """``forward_features`` of the rows the last ``fit_data(..., keep_features=True)`` saw, handed over once.

        Returns:
            ``[N, F]`` scaled features, or ``None`` (none kept, or already taken).
        """
        features, self._fit_features = self._fit_features, None
        return features

    def _scale(self, counts: torch.Tensor) -> torch.Tensor:
        root = counts.clamp_min(0).sqrt()
        return (root - self.feature_mean) * (root != 0).to(root.dtype) / self.feature_scale

    @torch.no_grad()
    def fit_data(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None,
                 y: torch.Tensor | None = None, keep_features: bool = False) -> "HydraNet":
        """Fit the sparse scaling on training spectra, then (given ``y``) start the head from their logistic regression.

        Args:
            spectra: preprocessed training spectra ``[N, C, L]``.
            tabular: preprocessed tabular values ``[N, T]`` (``None`` when ``T == 0``); used for the head only.
            y: their classes ``[N]`` (``None`` keeps the zero start).
            keep_features: keep the scaled features of ``spectra`` (computed here for the scaling) until
                :meth:`take_fit_features` hands them over, so a caller needing them does not transform again.

        Returns:
            ``self``.
        """
        counts = self.transform(spectra)
        root = counts.clamp_min(0).sqrt()
        zeros = (root == 0).to(root.dtype).mean(0)
        self.feature_mean.copy_(root.mean(0))
        spread = root.std(0, correction=int(len(root) > 1))
        self.feature_scale.copy_(spread + zeros**_SPARSE_EXPONENT + _SPARSE_EPSILON)
        features = self._scale(counts)
        self._fit_features = features if keep_features else None
        if y is not None:
            if self.n_tabular > 0:
                features = torch.cat([features, tabular], dim=1)
            c = set_logistic_head(self.head, features, y, self.seed)
            _logger.info("Hydra: head started from the logistic regression of %d training rows (C=%g)", len(y), c)
        return self

    def forward_features(self, spectra: torch.Tensor) -> torch.Tensor:
        """Spectra ``[N, C, L]`` -> scaled Hydra features ``[N, F]``, what ``head`` reads."""
        # reason: a few rows per pass, as `transform` (memory bounded on large batches); an export traces one pass.
        return self._scale(self._counts(spectra) if is_exporting() else self._counts_in_passes(spectra))

    def forward_head(self, features: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[N, F]`` and tabular ``[N, T]`` -> logits ``[N, K]``."""
        features = self.dropout(features)
        if self.n_tabular > 0:
            features = torch.cat([features, tabular], dim=1)
        return self.head(features)

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Spectra ``[N, C, L]`` and tabular ``[N, T]`` (``None`` when ``T == 0``) -> logits ``[N, K]``."""
        return self.forward_head(self.forward_features(spectra), tabular)


@register_model(options=(Option("n_kernels", int, 8, "kernels per group", low=1),
                         Option("n_groups", int, 64, "groups of competing kernels", low=1),
                         Option("max_channels", int, 8, "channels a kernel reads, at most", low=1),
                         Option("seed", int, 0, "seed of the random kernels", low=0),
                         dropout_option(0.0, "the scaled features")),
                default_lr=HydraNet.DEFAULT_LR, default_weight_decay=HydraNet.DEFAULT_WEIGHT_DECAY)
def Hydra(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> HydraNet:
    """Hydra: competing random kernels counted where they win (fixed), sparse scaling and a linear head.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``n_kernels``, ``n_groups``, ``max_channels``, ``seed``, ``dropout`` (see ``HydraNet``).

    Returns:
        The network; call ``fit_data`` on preprocessed training spectra before training (``SpectralClassifier.fit``
        does).

    Example:
        >>> Hydra(1, 200, 0, 2).num_features
        5120
    """
    return HydraNet(n_channels, length, n_tabular, n_classes, **kwargs)
