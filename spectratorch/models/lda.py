"""LDA: shrinkage linear discriminant analysis on the preprocessed spectrum, as one linear layer.

The chemometrician's other linear classifier beside logistic regression: one covariance shared by the classes (the
pooled within-class covariance of the standardised features, shrunk towards the identity by ``shrinkage``), so the
discriminant scores ``x Σ⁻¹ μ_k - μ_k Σ⁻¹ μ_k / 2 + log π_k`` are linear in ``x`` and stored as one ``nn.Linear``
(divided by a temperature fitted on out-of-fold predictions, they are the logits). It is solved, not trained:
``fit_data`` (or the small-set pipeline) sets the layer from :func:`spectratorch.models.closed_form.lda_path`.
"""

import logging

import numpy as np
import torch

from spectratorch.models._layers import dropout_option
from spectratorch.models.closed_form import LDA_SHRINKAGES, cv_hits, lda_path
from spectratorch.models.linear import LinearClassifier
from spectratorch.models.registry import register_model
from spectratorch.options import Option

__all__ = ["LDAClassifier", "LDA", "choose_lda_shrinkage"]

_logger = logging.getLogger(__name__)


def choose_lda_shrinkage(x: np.ndarray, y: np.ndarray, n_classes: int, n_folds: int = 5, seed: int = 0) -> float:
    """The shrinkage of :data:`~spectratorch.models.closed_form.LDA_SHRINKAGES` with the most right predictions over
    a stratified ``n_folds`` CV of the rows.

    Args:
        x: ``[N, F]`` features.
        y: ``[N]`` classes.
        n_classes: ``K``.
        n_folds: folds (fewer when a class has fewer rows; the middle of the grid when a class has a single row).
        seed: of the folds.

    Returns:
        The shrinkage, the strongest among ties.
    """
    hits = cv_hits(x, y, n_classes, lambda x_fit, y_fit: lda_path(x_fit, y_fit, n_classes), n_folds, seed)
    return float(LDA_SHRINKAGES[len(LDA_SHRINKAGES) // 2 if hits is None else int(hits.argmax())])


_SHRINKAGE = Option("shrinkage", float, None, "LDA covariance shrinkage in (0, 1] (default: chosen by inner CV)", low=0,
                    high=1, low_open=True)


class LDAClassifier(LinearClassifier):
    """Logits = shrinkage-LDA discriminant scores of ``[flattened spectra, tabular]``, one linear layer.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        shrinkage: In (0, 1] (``None``: chosen by 5-fold CV of the training rows in ``fit_data``).
        dropout: Dropout on the inputs (0: none).

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> net = LDAClassifier(1, 40, 0, 2)
        >>> _ = net.fit_data(torch.randn(30, 1, 40), None, torch.arange(30) % 2)
        >>> net(torch.zeros(4, 1, 40)).shape
        torch.Size([4, 2])
    """

    def __init__(self, n_channels: int, length: int, n_tabular: int, n_classes: int, shrinkage: float | None = None,
                 dropout: float = 0.0):
        super().__init__(n_channels, length, n_tabular, n_classes, dropout)
        self.shrinkage = _SHRINKAGE.check(shrinkage, "the 'shrinkage' parameter of LDA")

    @torch.no_grad()
    def fit_data(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None,
                 y: torch.Tensor | None = None) -> "LDAClassifier":
        """Set the layer to the LDA of the training rows (shrinkage by CV unless given); ``y=None``: no change."""
        if y is None:
            return self
        x, labels = self.head_inputs(spectra, tabular).double().cpu().numpy(), y.cpu().numpy()
        shrinkage = self.shrinkage or choose_lda_shrinkage(x, labels, self.n_classes)
        weight, bias = lda_path(x, labels, self.n_classes, shrinkages=(shrinkage,))[0]
        self.set_fc(weight, bias)
        _logger.info("LDA: shrinkage %g, solved on %d training rows", shrinkage, len(labels))
        return self


@register_model(options=(_SHRINKAGE, dropout_option(0.0, "the inputs")))
def LDA(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> LDAClassifier:
    """LDA: shrinkage linear discriminant analysis on every point of every channel (and the tabular values).

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``shrinkage``, ``dropout`` (see ``LDAClassifier``).

    Returns:
        The network.

    Example:
        >>> LDA(1, 100, 0, 2)(torch.zeros(3, 1, 100)).shape
        torch.Size([3, 2])
    """
    return LDAClassifier(n_channels, length, n_tabular, n_classes, **kwargs)
