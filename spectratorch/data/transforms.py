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
        factor = 1 + self.multiplier_scale * torch.randn(n, c, 1, device=spectra.device, dtype=spectra.dtype)
        noise = 1 + self.rel_noise_scale * torch.randn_like(spectra)
        spectra = spectra * factor * noise
        if tabular.shape[1]:
            tabular = tabular * (1 + self.rel_noise_scale * torch.randn_like(tabular))
        if self.xshift_scale > 0:
            spectra = self._shift(spectra)
        return spectra, tabular

    def _shift(self, spectra: torch.Tensor) -> torch.Tensor:
        n, c, length = spectra.shape
        # reason: Laplace(0, b) as the difference of two exponentials keeps the draw on the batch's device.
        exp = torch.empty(2, n, c, 1, device=spectra.device).exponential_()
        shift = torch.round(self.xshift_scale * (exp[0] - exp[1])).long()
        source = torch.arange(length, device=spectra.device).view(1, 1, length) - shift
        inside = (source >= 0) & (source < length)
        shifted = torch.gather(spectra, 2, source.clamp(0, length - 1))
        return shifted * inside


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
        lam_x = lam.view(n, 1, 1).to(spectra.dtype)
        spectra = lam_x * spectra + (1 - lam_x) * spectra[partner]
        lam_t = lam.view(n, 1).to(tabular.dtype)
        tabular = lam_t * tabular + (1 - lam_t) * tabular[partner]
        lam_y = lam.view(n, 1).to(targets.dtype)
        targets = lam_y * targets + (1 - lam_y) * targets[partner]
        return spectra, tabular, targets
