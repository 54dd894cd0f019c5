"""Train-only batch transforms: ``da`` (intensity, noise and shift augmentation) and ``mixup``.

Their entries in the table of transforms (``spectratorch/transforms.py``) name ``apply_da`` and ``apply_mixup``.
They act on whole batches of raw spectra ``[B, C, L]`` and tabular values ``[B, T]`` on whatever device the batch
is on, after the transfer (on the GPU when there is one). The inference-time transforms (``simulate``, ``snv``,
``sg1``, ``sg2``) live in the model's preprocessing layer instead, so they travel with the checkpoint and the ONNX.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DataAugment", "Mixup", "one_hot", "relative_noise", "apply_da", "apply_mixup"]


@dataclass(frozen=True)
class DataAugment:
    """The lab's ``da``: a factor per spectrum, element-wise relative noise, an integer shift per spectrum.

    Attributes:
        multiplier_scale: std of the per-spectrum multiplicative factor N(1, s).
        rel_noise_scale: std of the element-wise relative noise N(1, s), on spectra and tabular values.
        xshift_scale: scale of the Laplace distribution of the shift along the axis (rounded, zero-filled).
    """

    multiplier_scale: float = 0.1
    rel_noise_scale: float = 0.05
    xshift_scale: float = 1.5

    def __call__(self, spectra: torch.Tensor, tabular: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch.

        Args:
            spectra: ``[B, C, L]``.
            tabular: ``[B, T]``.

        Returns:
            The augmented ``(spectra, tabular)``, same shapes.

        Example:
            >>> x, t = DataAugment(0, 0, 0)(torch.ones(2, 1, 4), torch.ones(2, 1))
            >>> x.tolist(), t.tolist()
            ([[[1.0, 1.0, 1.0, 1.0]], [[1.0, 1.0, 1.0, 1.0]]], [[1.0], [1.0]])
        """
        n, c, length = spectra.shape
        out = self._shift(spectra) if self.xshift_scale > 0 else spectra
        factor = torch.empty(n, c, 1, device=spectra.device, dtype=spectra.dtype).normal_(1.0, self.multiplier_scale)
        if self.rel_noise_scale > 0:
            # reason: the noise buffer is fresh, so the products go into it and the input batch is never written.
            noise = relative_noise(spectra.shape, self.rel_noise_scale, spectra.device, spectra.dtype)
            out = noise.mul_(factor).mul_(out)
        else:
            out = out * factor
        if tabular.shape[1] and self.rel_noise_scale > 0:
            tabular = tabular * relative_noise(tabular.shape, self.rel_noise_scale, tabular.device, tabular.dtype)
        return out, tabular

    def _shift(self, spectra: torch.Tensor) -> torch.Tensor:
        """Shift each spectrum by its own integer (positive: to larger x), zero-filled; a new tensor."""
        n, c, length = spectra.shape
        # reason: Laplace(0, b) as the difference of two exponentials keeps the draw on the batch's device.
        exp = torch.empty(2, n * c, device=spectra.device).exponential_()
        shift = torch.round(self.xshift_scale * (exp[0] - exp[1])).long().clamp_(-length, length)
        pad = int(shift.abs().max())
        padded = torch.nn.functional.pad(spectra.reshape(n * c, length), (pad, pad)).view(-1)
        # reason: row r shifted by s is the `length` values of the flat padded rows starting at r·(length + 2·pad)
        # + pad − s. A view with stride 1 along both axes holds every such window, so one index_select copies
        # the whole batch, a row at a time (no index per element).
        windows = padded.as_strided((padded.numel() - length + 1, length), (1, 1))
        starts = torch.arange(0, padded.numel(), length + 2 * pad, device=spectra.device) + (pad - shift)
        return windows.index_select(0, starts).view(n, c, length)


def relative_noise(shape: torch.Size | tuple[int, ...], scale: float, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Element-wise factors N(1, ``scale``): a new tensor of ``shape``.

    On a GPU, and for fewer than 16,384 values, this is ``normal_``. On the CPU, where drawing the normals is most
    of ``da``'s cost, each value is one of the 65,536 quantiles of N(1, ``scale``), picked by 16 random bits: a
    normal quantised to 16 bits (|z| ≤ 4.33). The bits come from numpy's PCG64 (64 bits a call, against the 32 of
    torch's Mersenne twister), seeded from torch's generator, so ``torch.manual_seed`` still fixes every draw.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> noise = relative_noise((100_000,), 0.05, torch.device("cpu"))
        >>> round(float(noise.mean()), 3), round(float(noise.std()), 3)
        (1.0, 0.05)
    """
    device, count = torch.device(device), math.prod(shape)
    if device.type != "cpu" or count < _QUANTISED_FROM:
        return torch.empty(shape, device=device, dtype=dtype).normal_(1.0, scale)
    seed = int(torch.randint(2**63 - 1, ()))
    bits = np.random.PCG64(seed).random_raw(-(-count // 4)).view(np.int16)[:count]
    # reason: int16 + 32768 is the uint16 value of the same bits, an index into the table.
    index = torch.from_numpy(bits).to(torch.int32).add_(32768)
    return _noise_table(float(scale), dtype).index_select(0, index).view(shape)


_QUANTISED_FROM = 16_384  # values; below this, seeding the bit generator costs more than normal_ saves


@functools.lru_cache(maxsize=8)
def _noise_table(scale: float, dtype: torch.dtype) -> torch.Tensor:
    """The 65,536 quantiles of N(1, ``scale``) at probabilities (i + 0.5) / 65536."""
    probabilities = (torch.arange(65536, dtype=torch.float64) + 0.5) / 65536
    return (1.0 + scale * torch.special.ndtri(probabilities)).to(dtype)


def one_hot(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Float one-hot targets ``[B, K]`` from int classes ``[B]``."""
    return torch.nn.functional.one_hot(y, n_classes).float()


@dataclass(frozen=True)
class Mixup:
    """Mix every sample with a random partner from the same batch (any class), λ ~ Beta(α, α) per sample.

    Spectra, tabular values and (soft) targets are mixed the same way, so a batch of two classes gives soft
    targets between them: the mixtures the lab asks for.
    """

    alpha: float = 0.4

    def __call__(
        self, spectra: torch.Tensor, tabular: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mix a batch.

        Args:
            spectra: ``[B, C, L]``.
            tabular: ``[B, T]``.
            targets: soft targets ``[B, K]`` (rows sum to 1).

        Returns:
            Mixed ``(spectra, tabular, targets)``.
        """
        n = spectra.shape[0]
        concentration = torch.full((n,), float(self.alpha), device=spectra.device)
        lam = torch.distributions.Beta(concentration, concentration, validate_args=False).sample()
        partner = torch.randperm(n, device=spectra.device)
        # reason: lerp(partner, self, λ) = λ·self + (1 − λ)·partner in one pass; index_select, not [partner],
        # which takes the general advanced-indexing path (6x slower on a CPU batch).
        spectra = torch.lerp(spectra.index_select(0, partner), spectra, lam.view(n, 1, 1).to(spectra.dtype))
        tabular = torch.lerp(tabular.index_select(0, partner), tabular, lam.view(n, 1).to(tabular.dtype))
        targets = torch.lerp(targets.index_select(0, partner), targets, lam.view(n, 1).to(targets.dtype))
        return spectra, tabular, targets


def apply_da(config, spectra: torch.Tensor, tabular: torch.Tensor,
             target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``da`` with the scales of ``config`` (a ``DataConfig``): the table's function for ``da``."""
    augment = DataAugment(config.da_multiplier_scale, config.da_rel_noise_scale, config.da_xshift_scale)
    return (*augment(spectra, tabular), target)


def apply_mixup(config, spectra: torch.Tensor, tabular: torch.Tensor,
                target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mixup`` with ``config.mixup_alpha``: the table's function for ``mixup``."""
    return Mixup(config.mixup_alpha)(spectra, tabular, target)
