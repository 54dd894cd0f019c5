"""PLSDA: partial least squares discriminant analysis, its projection and regression folded into one linear layer.

The classical chemometric classifier: a PLS2 regression of the one-hot classes on the preprocessed spectrum (and
the tabular values), predicting the class with the highest score. ``x -> T = (x - mean) R -> Y = T Qᵀ + mean_y`` is
linear in ``x``, so it is stored as one ``nn.Linear`` whose outputs (the one-hot scores, divided by a temperature
fitted on out-of-fold predictions) are the logits. It is solved, not trained: ``fit_data`` (or the small-set
pipeline) sets the layer from :func:`spectratorch.models.closed_form.pls_path`.
"""

import logging

import numpy as np
import torch

from spectratorch.models._layers import check_int, dropout_option
from spectratorch.models.closed_form import cv_hits, pls_path
from spectratorch.models.linear import LinearClassifier
from spectratorch.models.registry import register_model
from spectratorch.options import Option

__all__ = ["PLSDAClassifier", "PLSDA", "choose_pls_components"]

_logger = logging.getLogger(__name__)


def choose_pls_components(x: np.ndarray, y: np.ndarray, n_classes: int, n_folds: int = 5, seed: int = 0) -> int:
    """The number of PLS components with the most right predictions over a stratified ``n_folds`` CV of the rows.

    Args:
        x: ``[N, F]`` features.
        y: ``[N]`` classes.
        n_classes: ``K``.
        n_folds: folds (fewer when a class has fewer rows; 1 component when a class has a single row).
        seed: of the folds.

    Returns:
        The count, fewest first among ties.
    """
    hits = cv_hits(x, y, n_classes, lambda x_fit, y_fit: pls_path(x_fit, y_fit, n_classes), n_folds, seed)
    return 1 if hits is None else int(hits.argmax()) + 1


class PLSDAClassifier(LinearClassifier):
    """Logits = PLS-DA scores of ``[flattened spectra, tabular]``, one linear layer.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        n_components: Latent variables (``None``: chosen by 5-fold CV of the training rows in ``fit_data``).
        dropout: Dropout on the inputs (0: none).

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> net = PLSDAClassifier(1, 40, 0, 2)
        >>> _ = net.fit_data(torch.randn(30, 1, 40), None, torch.arange(30) % 2)
        >>> net(torch.zeros(4, 1, 40)).shape
        torch.Size([4, 2])
    """

    def __init__(self, n_channels: int, length: int, n_tabular: int, n_classes: int, n_components: int | None = None,
                 dropout: float = 0.0):
        super().__init__(n_channels, length, n_tabular, n_classes, dropout)
        if n_components is not None:
            check_int("n_components", n_components, "PLSDA")
        self.n_components = n_components

    @torch.no_grad()
    def fit_data(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None,
                 y: torch.Tensor | None = None) -> "PLSDAClassifier":
        """Set the layer to the PLS-DA of the training rows (components by CV unless given); ``y=None``: no change."""
        if y is None:
            return self
        x, labels = self.head_inputs(spectra, tabular).double().cpu().numpy(), y.cpu().numpy()
        k = self.n_components or choose_pls_components(x, labels, self.n_classes)
        weight, bias = pls_path(x, labels, self.n_classes, max_components=k)[-1]
        self.set_fc(weight, bias)
        _logger.info("PLSDA: %d components, solved on %d training rows", k, len(labels))
        return self


@register_model(options=(Option("n_components", int, None, "PLS components (default: chosen by inner CV)", low=1),
                         dropout_option(0.0, "the inputs")))
def PLSDA(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> PLSDAClassifier:
    """PLSDA: PLS-DA on every point of every channel (and the tabular values), as one linear layer.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``n_components``, ``dropout`` (see ``PLSDAClassifier``).

    Returns:
        The network.

    Example:
        >>> PLSDA(1, 100, 0, 2)(torch.zeros(3, 1, 100)).shape
        torch.Size([3, 2])
    """
    return PLSDAClassifier(n_channels, length, n_tabular, n_classes, **kwargs)
