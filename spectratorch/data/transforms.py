"""Train-only batch transforms: ``da`` (intensity, noise and shift augmentation) and ``mixup``.

They act on whole batches of raw spectra ``[B, C, L]`` and tabular values ``[B, T]`` on whatever device the batch
is on, after the transfer (on the GPU when there is one). The inference-time transforms (``simulate``, ``snv``,
``sg1``, ``sg2``) live in the model's preprocessing layer instead, so they travel with the checkpoint and the ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DataAugment", "Mixup", "one_hot"]


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
        # reason: draw N(1, s) straight into one buffer and reuse it for the result: one pass per random draw.
        out = torch.empty_like(spectra).normal_(1.0, self.rel_noise_scale)
        out.mul_(torch.empty(n, c, 1, device=spectra.device, dtype=spectra.dtype).normal_(1.0, self.multiplier_scale))
        out.mul_(spectra)
        if tabular.shape[1]:
            tabular = tabular * torch.empty_like(tabular).normal_(1.0, self.rel_noise_scale)
        if self.xshift_scale > 0:
            out = self._shift(out)
        return out, tabular

    def _shift(self, spectra: torch.Tensor) -> torch.Tensor:
        n, c, length = spectra.shape
        # reason: Laplace(0, b) as the difference of two exponentials keeps the draw on the batch's device.
        exp = torch.empty(2, n, c, 1, device=spectra.device).exponential_()
        shift = torch.round(self.xshift_scale * (exp[0] - exp[1])).long().clamp_(-length, length)
        # reason: zero padding on both sides makes every source index valid: one gather, no mask, no clamp.
        pad = int(shift.abs().max())
        if pad == 0:
            return spectra
        padded = torch.nn.functional.pad(spectra, (pad, pad))
        source = torch.arange(pad, pad + length, device=spectra.device).view(1, 1, length) - shift
        return torch.gather(padded, 2, source)


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
        lam = torch.distributions.Beta(concentration, concentration).sample()
        partner = torch.randperm(n, device=spectra.device)
        # reason: lerp(partner, self, λ) = λ·self + (1 − λ)·partner in one pass.
        spectra = torch.lerp(spectra[partner], spectra, lam.view(n, 1, 1).to(spectra.dtype))
        tabular = torch.lerp(tabular[partner], tabular, lam.view(n, 1).to(tabular.dtype))
        targets = torch.lerp(targets[partner], targets, lam.view(n, 1).to(targets.dtype))
        return spectra, tabular, targets
