"""The model that is trained, checkpointed and exported: ``Preprocess`` followed by a registered network."""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from spectratorch.models.preprocess import Preprocess
from spectratorch.models.registry import create_model

__all__ = ["SpectralClassifier", "build_classifier"]

_logger = logging.getLogger(__name__)


class SpectralClassifier(nn.Module):
    """Raw spectra and tabular features in, logits out: ``net(*preprocess(spectra, tabular))``.

    With no tabular features (``T == 0``) the tabular input may be left out (``None``); ``example_inputs`` and
    ``input_names`` then hold the spectra only, so an ONNX export made from them has a single input.

    Args:
        preprocess: Fitted (before use) input pipeline.
        net: A network from ``create_model`` for the same ``C``, ``L`` and ``T``.

    Shapes:
        spectra ``[N, C, L]``, tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> logits ``[N, K]``.

    Example:
        >>> model = build_classifier("TinyVGG", ["277", "380"], length=64, n_tabular=0, n_classes=3)
        >>> _ = model.preprocess.fit(torch.rand(10, 2, 64))
        >>> model(*model.example_inputs(4)).shape
        torch.Size([4, 3])
    """

    def __init__(self, preprocess: Preprocess, net: nn.Module):
        super().__init__()
        self.preprocess = preprocess
        self.net = net

    @property
    def n_tabular(self) -> int:
        """Tabular features ``T`` the model takes."""
        return self.preprocess.n_tabular

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the inputs ``forward`` needs: ``("spectra", "tabular")``, or ``("spectra",)`` when ``T == 0``."""
        return ("spectra", "tabular") if self.n_tabular > 0 else ("spectra",)

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        """Zero inputs of the right shapes on the model's device, e.g. for ONNX export.

        Args:
            batch_size: ``N``.

        Returns:
            ``(spectra [N, C, L], tabular [N, T])``, or ``(spectra,)`` when ``T == 0``.
        """
        pre = self.preprocess
        spectra = torch.zeros(batch_size, len(pre.channels), pre.length, device=pre.spectra_min.device)
        if self.n_tabular == 0:
            return (spectra,)
        return spectra, torch.zeros(batch_size, self.n_tabular, device=pre.spectra_min.device)

    @torch.no_grad()
    def fit(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None, y: torch.Tensor | None = None,
            max_rows: int = 4096, seed: int = 0, keep_features: bool = False) -> "SpectralClassifier":
        """Fit what depends on the training data: the preprocessing, then the network's own fixed parts.

        Networks with a ``fit_data(spectra, tabular, y)`` method (MiniRocket's kernel biases; the closed-form start
        of the linear heads, given ``y``) get the preprocessed inputs of at most ``max_rows`` training rows (a
        seeded subsample).

        Args:
            spectra: raw training spectra ``[N, C, L]``.
            tabular: raw training tabular values ``[N, T]`` (``None`` when ``T == 0``).
            y: training classes ``[N]`` (``None``: what needs them keeps its default start).
            max_rows: rows the network's ``fit_data`` sees at most.
            seed: of the subsample.
            keep_features: ask a network whose ``fit_data`` takes ``keep_features`` to keep the features it computes
                of those rows (``net.take_fit_features()``), so they are not computed again.

        Returns:
            ``self``.
        """
        self.preprocess.fit(spectra, tabular)
        fit_data = getattr(self.net, "fit_data", None)
        if fit_data is not None:
            rows = torch.randperm(len(spectra), generator=torch.Generator().manual_seed(seed))[:max_rows].sort().values
            sub_tabular = tabular.index_select(0, rows) if tabular is not None and self.n_tabular else None
            was_training = self.preprocess.training
            inputs = self.preprocess.eval()(spectra.index_select(0, rows), sub_tabular)
            kwargs = {"keep_features": True} if keep_features and _takes(fit_data, "keep_features") else {}
            fit_data(*inputs, y=None if y is None else torch.as_tensor(y).index_select(0, rows), **kwargs)
            self.preprocess.train(was_training)
        return self

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Map raw spectra ``[N, C, L]`` and tabular ``[N, T]`` (``None`` when ``T == 0``) to logits ``[N, K]``."""
        spectra, tabular = self.preprocess(spectra, tabular)
        return self.net(spectra, tabular)


def _takes(function, name: str) -> bool:
    import inspect

    return name in inspect.signature(function).parameters


def build_classifier(
    arch: str,
    channels: Sequence[str],
    length: int,
    n_tabular: int,
    n_classes: int,
    transforms: Sequence[str] = (),
    preprocess_kwargs: Mapping[str, Any] | None = None,
    **arch_kwargs,
) -> SpectralClassifier:
    """Build ``Preprocess`` and the registered network ``arch`` for one data layout.

    Args:
        arch: Registered architecture name (see ``list_models``).
        channels: Channel names, in the order of the ``C`` axis.
        length: Points ``L`` on the spectral axis.
        n_tabular: Tabular features ``T`` (0: none).
        n_classes: Classes ``K``.
        transforms: Transform names; ``Preprocess`` applies the inference-time ones and ignores the others.
        preprocess_kwargs: ``sg_window``, ``sg_order``, ``simulate_points``; ``None`` values keep the defaults.
        **arch_kwargs: Options of the architecture (``width``, ``dropout``...); ``None`` values keep the defaults.

    Returns:
        The classifier, unfitted: call ``model.fit(spectra, tabular)`` on the training split.

    Raises:
        ConfigError: On an unknown ``arch`` (the message lists the registered ones) or an invalid argument.

    Example:
        >>> model = build_classifier("VGG11", ["277"], length=100, n_tabular=2, n_classes=2, width=0.125)
        >>> model.input_names
        ('spectra', 'tabular')
    """
    options = {key: value for key, value in (preprocess_kwargs or {}).items() if value is not None}
    # reason: Preprocess checks `channels` first, so a lone string is refused before len() counts its letters.
    preprocess = Preprocess(channels, length, n_tabular, transforms=transforms, **options)
    net = create_model(
        arch,
        n_channels=len(preprocess.channels),
        length=length,
        n_tabular=n_tabular,
        n_classes=n_classes,
        **arch_kwargs,
    )
    return SpectralClassifier(preprocess, net)
