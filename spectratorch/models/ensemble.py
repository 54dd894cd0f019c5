"""Ensemble: the soft vote of several solved heads on one preprocessed input, as one network.

``logits = log(mean_m softmax(member_m(spectra, tabular))) / T``: the log of the mean of the members' calibrated
probabilities (each member's temperature is folded into its last layer), with one more temperature ``T`` fitted on
out-of-fold predictions. The members share the model's ``Preprocess``; their architectures and options are the
``members`` option, so the checkpoint rebuilds them and ONNX exports them like any network.
"""

import torch
from torch import nn

from spectratorch.errors import ConfigError
from spectratorch.models._layers import check_io
from spectratorch.models.registry import create_model, register_model
from spectratorch.options import Option

__all__ = ["EnsembleNet", "Ensemble"]

# reason: two solved heads with no random parts: the smallest ensemble every registry test can build.
_DEFAULT_MEMBERS = ({"arch": "Linear"}, {"arch": "PLSDA"})


class EnsembleNet(nn.Module):
    """The members' mean probability, as logits.

    Args:
        n_channels: Spectral channels ``C``.
        length: Spectral length ``L``.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        members: ``[{"arch": name, **options}, ...]``, at least one, no ``Ensemble`` among them.

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> net = EnsembleNet(1, 50, 0, 3)
        >>> net(torch.zeros(4, 1, 50)).softmax(1)[0].tolist()
        [0.3333333432674408, 0.3333333432674408, 0.3333333432674408]
    """

    def __init__(self, n_channels: int, length: int, n_tabular: int, n_classes: int,
                 members: list | tuple = _DEFAULT_MEMBERS):
        super().__init__()
        check_io("Ensemble", n_channels, length, n_tabular, n_classes)
        specs = [dict(m) for m in members]
        if not specs or any(not isinstance(m.get("arch"), str) or m["arch"] == "Ensemble" for m in specs):
            raise ConfigError(f"Ensemble members must be [{{'arch': NAME, ...}}, ...] of other architectures; got "
                              f"{list(members)!r}.")
        self.members_spec = specs
        self.members = nn.ModuleList(
            create_model(m["arch"], n_channels=n_channels, length=length, n_tabular=n_tabular, n_classes=n_classes,
                         **{k: v for k, v in m.items() if k != "arch"}) for m in specs)
        self.register_buffer("inverse_temperature", torch.tensor(1.0))

    def forward_features(self, spectra: torch.Tensor) -> torch.Tensor:
        """The members take the preprocessed spectra themselves: ``[N, C, L]`` unchanged."""
        return spectra

    def forward_head(self, features: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Spectra ``[N, C, L]`` and tabular ``[N, T]`` -> logits ``[N, K]``."""
        probabilities = torch.stack([member(features, tabular).softmax(dim=1) for member in self.members]).mean(0)
        return probabilities.clamp_min(1e-12).log() * self.inverse_temperature

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Spectra ``[N, C, L]`` and tabular ``[N, T]`` (``None`` when ``T == 0``) -> logits ``[N, K]``."""
        return self.forward_head(self.forward_features(spectra), tabular)


@register_model(options=(Option("members", list, list(_DEFAULT_MEMBERS),
                                "the members, e.g. [{'arch': 'Linear'}, {'arch': 'PLSDA'}]"),))
def Ensemble(n_channels: int, length: int, n_tabular: int, n_classes: int, **kwargs) -> EnsembleNet:
    """Ensemble: the mean calibrated probability of solved heads (``members``), as one network.

    Example:
        >>> Ensemble(1, 100, 0, 2, members=[{"arch": "Linear"}])(torch.zeros(3, 1, 100)).shape
        torch.Size([3, 2])
    """
    return EnsembleNet(n_channels, length, n_tabular, n_classes, **kwargs)
