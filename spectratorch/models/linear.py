"""Linear: multinomial logistic regression on the preprocessed spectrum, refined by the same loop as the networks.

The classical reference for small spectral sets, in the registry so that it is checkpointed, exported and served
like any other architecture. On a small set it is solved, not trained (``spectratorch/pipelines/small.py``: C by
inner cross-validation, Newton-CG on all training rows). On a large set it starts from scikit-learn's solution on
the training rows (``fit_data``, see ``models/logistic.py``) and the loop refines it; the loop's L2 penalty is the
run's weight decay (``--weight-decay``, default ``DEFAULT_WEIGHT_DECAY`` for this architecture).
"""

import logging

import numpy as np
import torch
from torch import nn

from spectratorch.models._layers import check_io, dropout_option
from spectratorch.models.logistic import set_logistic_head
from spectratorch.models.registry import register_model

__all__ = ["LinearClassifier", "Linear"]

_logger = logging.getLogger(__name__)


class LinearClassifier(nn.Module):
    """Logits = W · [flattened spectra, tabular] + b.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        dropout: Dropout on the inputs (0: none).

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> net = LinearClassifier(2, 50, 1, 3)
        >>> net(torch.zeros(4, 2, 50), torch.zeros(4, 1)).shape
        torch.Size([4, 3])
    """

    DEFAULT_WEIGHT_DECAY = 1e-3
    # reason: no learning rate of its own. On fewer than LARGE_TRAIN training rows the layer is solved (C by inner
    # CV of the training rows, pipelines/small.py) and takes no Adam step; on larger sets Adam starts from the
    # lbfgs solution at the package's default rate (1e-3), which no set of ours chose for this head.

    def __init__(self, n_channels: int, length: int, n_tabular: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        check_io("Linear", n_channels, length, n_tabular, n_classes)
        self.n_tabular = n_tabular
        self.n_classes = n_classes
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_channels * length + n_tabular, n_classes)
        # reason: the uniform prediction until fit_data sets the logistic regression's solution.
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    @torch.no_grad()
    def fit_data(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None,
                 y: torch.Tensor | None = None) -> "LinearClassifier":
        """Start from the logistic regression of the training rows, solved by lbfgs (C by cross-validation).

        Args:
            spectra: preprocessed training spectra ``[N, C, L]``.
            tabular: preprocessed tabular values ``[N, T]`` (``None`` when ``T == 0``).
            y: their classes ``[N]``; ``None`` keeps the zero start.

        Returns:
            ``self``.
        """
        if y is not None:
            c = set_logistic_head(self.fc, self.head_inputs(spectra, tabular), y)
            _logger.info("Linear: started from the logistic regression of %d training rows (C=%g)", len(y), c)
        return self

    def head_inputs(self, spectra: torch.Tensor, tabular: torch.Tensor | None) -> torch.Tensor:
        """What ``fc`` multiplies: preprocessed spectra ``[N, C, L]`` and tabular ``[N, T]`` -> ``[N, C * L + T]``."""
        features = self.forward_features(spectra)
        return torch.cat([features, tabular], dim=1) if self.n_tabular > 0 else features

    def set_fc(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Set ``fc`` to a solved head ``(weight [K, F], bias [K])``."""
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(weight))
            self.fc.bias.copy_(torch.from_numpy(bias))

    def forward_features(self, spectra: torch.Tensor) -> torch.Tensor:
        """Spectra ``[N, C, L]`` -> features ``[N, C * L]``."""
        return spectra.flatten(1)

    def forward_head(self, features: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[N, C * L]`` and tabular ``[N, T]`` -> logits ``[N, K]``."""
        if self.n_tabular > 0:
            features = torch.cat([features, tabular], dim=1)
        return self.fc(self.dropout(features))

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Spectra ``[N, C, L]`` and tabular ``[N, T]`` (``None`` when ``T == 0``) -> logits ``[N, K]``."""
        return self.forward_head(self.forward_features(spectra), tabular)


@register_model(options=(dropout_option(0.0, "the inputs"),),
                default_weight_decay=LinearClassifier.DEFAULT_WEIGHT_DECAY)
def Linear(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> LinearClassifier:
    """Linear: multinomial logistic regression on every point of every channel (and the tabular values).

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T``.
        n_classes: Classes ``K``.
        **kwargs: ``dropout`` (see ``LinearClassifier``).

    Returns:
        The network.

    Example:
        >>> Linear(1, 100, 0, 2)(torch.zeros(3, 1, 100)).shape
        torch.Size([3, 2])
    """
    return LinearClassifier(n_channels, length, n_tabular, n_classes, **kwargs)
