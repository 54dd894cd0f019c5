"""KernelRidge: RBF kernel ridge classification on the standardised preprocessed spectrum, solved in closed form.

The classical nonlinear reference for small spectral sets (the family of the RBF SVM), stored as an ordinary
network: the training rows (standardised, with the tabular values appended) are a buffer, the ``support``;
``forward_features`` gives the RBF kernel values ``exp(-gamma ||z - s||²)`` of a spectrum against every support row
(``||z||² + ||s||² - 2 z·s`` by a matrix product, so ONNX exports it as MatMul, Exp); the last layer ``fc`` holds the
dual coefficients and the intercept (see :func:`spectratorch.models.closed_form.kernel_ridge_head`). On a small set
``gamma`` is chosen by the inner cross-validation and alpha by leave-one-out (``spectratorch/pipelines/small.py``).

Size: ``n_support x (C L + T)`` float64 values; 1,000 training rows of 2,000 points make a 16 MB buffer (ONNX
file 16 MB). The number of support rows is the ``n_support`` option, so a checkpoint rebuilds the buffers' shapes.
"""

import logging

import numpy as np
import torch
from torch import nn

from spectratorch.models._layers import (
    check_int,
    check_io,
)
from spectratorch.models.registry import register_model
from spectratorch.options import Option

__all__ = ["KernelRidge", "KernelRidgeNet"]

_logger = logging.getLogger(__name__)

# reason: a placeholder support for a model built before its training rows are known (registry tests, a checkpoint
# written before this option existed has none); fit_data resizes it to the training rows.
_DEFAULT_SUPPORT = 16


class KernelRidgeNet(nn.Module):
    """Logits = dual coefficients · RBF kernel values against the support rows + intercept.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        n_support: Support rows ``S`` (the training rows; ``fit_data`` resizes to the rows it is given).

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> net = KernelRidgeNet(1, 40, 0, 2)
        >>> _ = net.fit_data(torch.randn(30, 1, 40), None, torch.arange(30) % 2)
        >>> net(torch.zeros(4, 1, 40)).shape
        torch.Size([4, 2])
    """

    def __init__(self, n_channels: int, length: int, n_tabular: int, n_classes: int,
                 n_support: int = _DEFAULT_SUPPORT):
        super().__init__()
        check_io("KernelRidge", n_channels, length, n_tabular, n_classes)
        check_int("n_support", n_support, "KernelRidge")
        self.n_tabular, self.n_classes = n_tabular, n_classes
        n_inputs = n_channels * length + n_tabular
        self.register_buffer("input_mean", torch.zeros(n_inputs))
        self.register_buffer("input_scale", torch.ones(n_inputs))
        # reason: float64, because the kernel is computed in float64 (see `kernel`); a float32 buffer cast in the
        # graph is constant-folded by the ONNX export into float64 copies anyway (32 MB instead of 16 MB for 1,000
        # rows of 2,000 points).
        self.register_buffer("support", torch.zeros(n_support, n_inputs, dtype=torch.float64))
        self.register_buffer("support_norm", torch.zeros(n_support, dtype=torch.float64))
        # reason: scikit-learn's gamma="scale" on standardised inputs (1 / number of inputs) until a CV chooses one.
        self.register_buffer("gamma", torch.tensor(1.0 / n_inputs))
        self.fc = nn.Linear(n_support, n_classes)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    @property
    def n_support(self) -> int:
        """Support rows ``S``."""
        return self.support.shape[0]

    def _inputs(self, spectra: torch.Tensor, tabular: torch.Tensor | None) -> torch.Tensor:
        inputs = spectra.flatten(1)
        if self.n_tabular > 0:
            inputs = torch.cat([inputs, tabular], dim=1)
        return inputs

    def standardise(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Spectra ``[N, C, L]`` and tabular ``[N, T]`` -> standardised inputs ``[N, C L + T]``."""
        return (self._inputs(spectra, tabular) - self.input_mean) / self.input_scale

    @torch.no_grad()
    def fit_data(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None,
                 y: torch.Tensor | None = None) -> "KernelRidgeNet":
        """Keep the training rows as the support (standardised on them); given ``y``, solve the head at ``gamma``.

        Args:
            spectra: preprocessed training spectra ``[N, C, L]``.
            tabular: preprocessed tabular values ``[N, T]`` (``None`` when ``T == 0``).
            y: their classes ``[N]``: the dual coefficients at the current ``gamma``, alpha by leave-one-out;
                ``None`` leaves the head at zero.

        Returns:
            ``self``.
        """
        from spectratorch.models.closed_form import kernel_ridge_head, squared_distances

        inputs = self._inputs(spectra, tabular).double()
        mean, scale = inputs.mean(0), inputs.std(0, unbiased=False)
        self.input_mean.copy_(mean)
        self.input_scale.copy_(torch.where(scale > 1e-12, scale, torch.ones_like(scale)))
        support = (inputs - mean) / self.input_scale.double()
        if len(support) != self.n_support:
            device, dtype = self.fc.weight.device, self.fc.weight.dtype
            self.support = support.to(device)
            self.support_norm = (support * support).sum(1).to(device)
            self.fc = nn.Linear(len(support), self.n_classes, device=device, dtype=dtype)
            nn.init.zeros_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)
        else:
            self.support.copy_(support)
            self.support_norm.copy_((support * support).sum(1))
        if y is not None:
            z = self.support.double().cpu().numpy()
            kernel = np.exp(-float(self.gamma) * squared_distances(z, z))
            (weight, bias), alpha = kernel_ridge_head(kernel, y.cpu().numpy(), self.n_classes)
            self.set_head(float(self.gamma), weight, bias)
            _logger.info("KernelRidge: solved on %d training rows (gamma=%g, alpha=%g)", len(y), float(self.gamma),
                         alpha)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # reason: a support of another size (a model fitted on more rows than its `n_support` option said, as on the
        # large-set path) is resized to the saved one, so every checkpoint of this network loads.
        saved = state_dict.get(prefix + "support")
        if saved is not None and saved.shape != self.support.shape:
            device, dtype = self.fc.weight.device, self.fc.weight.dtype
            self.support = torch.zeros(saved.shape, dtype=self.support.dtype, device=device)
            self.support_norm = torch.zeros(saved.shape[0], dtype=self.support_norm.dtype, device=device)
            self.fc = nn.Linear(saved.shape[0], self.n_classes, device=device, dtype=dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_head(self, gamma: float, weight: np.ndarray, bias: np.ndarray) -> None:
        """Set ``gamma`` and the dual coefficients ``weight [K, S]`` and intercepts ``bias [K]``."""
        self.gamma.fill_(gamma)
        self.fc.weight.copy_(torch.from_numpy(np.asarray(weight)))
        self.fc.bias.copy_(torch.from_numpy(np.asarray(bias)))

    def kernel(self, inputs: torch.Tensor) -> torch.Tensor:
        """Standardised inputs ``[N, D]`` -> RBF kernel values against the support ``[N, S]``, in float64.

        # reason: ``||z||² + ||s||² - 2 z·s`` cancels to about ``D x 1e-7`` in float32 near a support row, and a
        # small alpha gives dual coefficients in the thousands: on 60 generated spectra the float32 probabilities
        # moved by 3e-3 between torch and onnxruntime; in float64 they agree within the export check's tolerance.
        """
        inputs = inputs.double()
        # reason: linear(inputs, support) is inputs @ supportᵀ without a transposed copy of the support in the ONNX.
        d2 = (inputs * inputs).sum(1, keepdim=True) + self.support_norm.double() \
            - 2.0 * nn.functional.linear(inputs, self.support.double())
        return torch.exp(-self.gamma.double() * d2.clamp_min(0.0))

    def forward_features(self, spectra: torch.Tensor) -> torch.Tensor:
        """Spectra ``[N, C, L]`` -> standardised flattened spectra ``[N, C L]`` (the kernel needs the tabular too)."""
        n = spectra.shape[1] * spectra.shape[2]
        return (spectra.flatten(1) - self.input_mean[:n]) / self.input_scale[:n]

    def forward_head(self, features: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised spectra ``[N, C L]`` and raw-scale tabular ``[N, T]`` -> logits ``[N, K]``."""
        if self.n_tabular > 0:
            n = features.shape[1]
            features = torch.cat([features, (tabular - self.input_mean[n:]) / self.input_scale[n:]], dim=1)
        logits = nn.functional.linear(self.kernel(features), self.fc.weight.double(), self.fc.bias.double())
        return logits.to(features.dtype)

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Spectra ``[N, C, L]`` and tabular ``[N, T]`` (``None`` when ``T == 0``) -> logits ``[N, K]``."""
        return self.forward_head(self.forward_features(spectra), tabular)


@register_model(options=(Option("n_support", int, _DEFAULT_SUPPORT, "training rows of the kernel's support", low=1),))
def KernelRidge(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> KernelRidgeNet:
    """KernelRidge: RBF kernel ridge classification on every point of every channel (and the tabular values).

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``n_support`` (see ``KernelRidgeNet``).

    Returns:
        The network.

    Example:
        >>> KernelRidge(1, 100, 0, 2)(torch.zeros(3, 1, 100)).shape
        torch.Size([3, 2])
    """
    return KernelRidgeNet(n_channels, length, n_tabular, n_classes, **kwargs)
