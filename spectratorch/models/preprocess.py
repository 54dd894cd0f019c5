"""The input pipeline as the first layer of every model, so a checkpoint and an ONNX file take raw spectra.

``Preprocess`` applies the inference-time transforms (the ``stage="model"`` entries of the table of transforms,
``spectratorch/transforms.py``; their functions are below) in the order given, then scales
every spectral point and every tabular feature to [-1, 1] with the minimum and maximum of the training split.
Its constants (simulation mask, Savitzky-Golay kernels, the scatter references) and fitted ranges are buffers: they
travel with the
``state_dict`` and become constants of an exported graph. Train-only transforms (``da``, ``mixup``...) belong to
the data pipeline and are ignored here.
"""

import logging
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spectratorch.errors import ConfigError
from spectratorch.models._asls import AsymmetricLeastSquares
from spectratorch.models._layers import check_int, is_exporting
from spectratorch.transforms import TRANSFORM_TABLE, in_model, transform_function, transform_options

__all__ = ["Preprocess", "SIMULATE_POINTS", "INFERENCE_TRANSFORMS", "simulate", "snv", "savgol", "msc", "emsc", "als",
           "setup_simulate", "setup_savgol", "setup_emsc", "setup_als"]

_logger = logging.getLogger(__name__)

SIMULATE_POINTS: dict[str, int] = {"277": 45, "380": 113, "425": 158}
"""Channel name -> leading points of its axis that the new fluorimeter cannot see (``simulate`` zeroes them)."""

INFERENCE_TRANSFORMS: tuple[str, ...] = in_model()
"""Transforms applied by ``Preprocess`` (from the table); other names in ``transforms`` are left to the data
pipeline."""

# reason: only a spectrum with no spread at all (a zero-filled channel) is kept from dividing by zero; an additive
# epsilon (1e-6) outweighed the spread of spectra in small units (1e-6 and below) and made SNV depend on the unit.
_SNV_FLOOR = 1e-30
# reason: a point whose training range is this small next to its channel's typical range is a constant plus float
# rounding (e.g. a derivative over a zeroed region after snv); scaling it would blow the rounding up to [-1, 1].
_RELATIVE_SPAN = 1e-5
# reason: the typical range is the 90th percentile of the points' ranges, not the widest: a few points of another
# scale (a laser line, one mistyped cell of 1e6) would otherwise make every other point "constant" and zero it.
_TYPICAL_SPAN = 0.9
_SG_DERIVATIVES = {"sg1": 1, "sg2": 2}
# reason: Eilers and Boelens (2005) report that 5-10 reweighting steps settle the weights; 10 keeps the baseline of
# the synthetic and demo spectra within 1e-6 of a run to convergence (tests/models/test_preprocess.py).
ALS_SOLVES = 10


class Preprocess(nn.Module):
    """Inference-time transforms, then per-feature min-max scaling to [-1, 1], fitted on the training split.

    Transforms, applied to the raw spectra in the order of ``transforms``:

    - ``simulate``: zero the first ``k`` points of each channel named in ``SIMULATE_POINTS`` (updated by
      ``simulate_points``); other channels are untouched.
    - ``snv``: standard normal variate, per sample and channel: ``(x - mean) / (std + 1e-6)`` over the axis
      (population std).
    - ``sg1``, ``sg2``: Savitzky-Golay first / second derivative along the axis, per axis step, with a
      ``sg_window``-point window and a polynomial of order ``sg_order``; the edges are padded by repeating the
      end values, so the length is unchanged.
    - ``msc``: multiplicative scatter correction, per sample and channel: the least-squares fit ``x ~ a + b r`` on
      the reference ``r`` (the training mean of the transform's input), then ``(x - a) / b``.
    - ``emsc``: extended MSC: the least-squares fit ``x ~ b r + sum_k c_k u^k`` (``u`` the positions mapped to
      [-1, 1], ``k`` up to ``emsc_order``), then ``(x - sum_k c_k u^k) / b``.
    - ``als``: minus the asymmetric-least-squares baseline (smoothness ``als_lambda``, asymmetry ``als_p``,
      ``ALS_SOLVES`` reweighted solves, see :class:`~spectratorch.models._asls.AsymmetricLeastSquares`).

    Scaling maps the training minimum of each spectral point (channel and position) and each tabular feature
    to -1 and the maximum to 1; a feature constant in training maps to 0. A spectral point counts as constant
    when its training range is at most 1e-5 of the widest range in its channel, since such a range is float
    rounding (the derivative of a zeroed region after ``snv``) that would otherwise be blown up to [-1, 1].
    Values outside the training range are not clipped: they land outside [-1, 1], so a drifted instrument shows
    up rather than being hidden.

    Args:
        channels: Channel names, in the order of the ``C`` axis (e.g. ``["277", "380"]``).
        length: Points ``L`` on the spectral axis.
        n_tabular: Tabular features ``T`` (0: none).
        transforms: Transform names; the ones not in ``INFERENCE_TRANSFORMS`` are ignored here.
        simulate_points: Extra or overriding entries for ``SIMULATE_POINTS``.
        **options: The transforms' options, by the names of the table (unset: the table's default):
            ``sg_window`` Savitzky-Golay window (odd, more than ``sg_order``, at most ``length``); ``sg_order``
            Savitzky-Golay polynomial order (at least the derivative order); ``emsc_order`` polynomial order of
            ``emsc``'s baseline (0: an offset); ``als_lambda`` smoothness of ``als``'s baseline (> 0); ``als_p``
            weight of points above ``als``'s baseline, in (0, 1).

    Raises:
        ConfigError: On an invalid argument.

    Shapes:
        spectra ``[N, C, L]`` and tabular ``[N, T]`` (or ``None`` when ``T == 0``) -> the same shapes.

    Example:
        >>> pre = Preprocess(["277", "380"], length=50, n_tabular=1, transforms=["snv", "da"])
        >>> spectra, tabular = torch.rand(6, 2, 50), torch.tensor([[1.0], [3.0], [2.0], [5.0], [4.0], [1.0]])
        >>> out, tab = pre.fit(spectra, tabular)(spectra, tabular)
        >>> out.shape, tab[:4, 0].tolist()
        (torch.Size([6, 2, 50]), [-1.0, 0.0, -0.5, 1.0])
    """

    def __init__(
        self,
        channels: Sequence[str],
        length: int,
        n_tabular: int,
        transforms: Sequence[str] = (),
        simulate_points: Mapping[str, int] | None = None,
        **options,
    ):
        super().__init__()
        self.channels = _check_channels(channels)
        check_int("length", length, "Preprocess")
        check_int("n_tabular", n_tabular, "Preprocess", minimum=0)
        self.length = length
        self.n_tabular = n_tabular
        self.transforms = _inference_transforms(transforms)
        self.simulate_points = simulate_points
        n_channels = len(self.channels)
        options = _transform_options(options)
        # reason: each transform's constants once, in the table's order, whatever the order of `transforms`.
        for name in (n for n in TRANSFORM_TABLE if n in self.transforms):
            entry = TRANSFORM_TABLE[name]
            if entry.setup is not None:
                transform_function(entry.setup)(self, name, options)
            if entry.reference:
                self.register_buffer(f"{name}_reference", torch.zeros(n_channels, length))
        self._steps = [(name, transform_function(TRANSFORM_TABLE[name].function)) for name in self.transforms]
        self.register_buffer("spectra_min", torch.zeros(n_channels, length))
        self.register_buffer("spectra_max", torch.zeros(n_channels, length))
        self.register_buffer("tabular_min", torch.zeros(n_tabular))
        self.register_buffer("tabular_max", torch.zeros(n_tabular))
        self.register_buffer("fitted", torch.tensor(False))
        # reason: the centre and factor of the scaling, derived from the ranges whenever they change (fit, load), so
        # a batch costs one subtraction and one multiplication; not saved, the ranges are the state.
        for name, size in (("spectra", (n_channels, length)), ("tabular", (n_tabular,))):
            self.register_buffer(f"_{name}_center", torch.zeros(size), persistent=False)
            self.register_buffer(f"_{name}_factor", torch.zeros(size), persistent=False)
        # reason: a Python copy of `fitted`, so forward checks it without a device sync and exports see a constant.
        self._fitted = False
        self.register_load_state_dict_post_hook(_sync_fitted)

    def apply_transforms(self, spectra: torch.Tensor, stop: int | None = None) -> torch.Tensor:
        """Apply the inference-time transforms, in order, without scaling.

        Args:
            spectra: Raw spectra ``[N, C, L]``.
            stop: apply only the first ``stop`` transforms (``None``: all).

        Returns:
            Transformed spectra ``[N, C, L]``, float32 even under autocast.
        """
        device_type = spectra.device.type
        if torch.is_autocast_enabled(device_type):
            # reason: under 16-bit autocast the derivative convolution would run in half precision, where raw
            # counts above 65504 overflow and bf16 keeps 3 digits; the input pipeline stays float32.
            with torch.autocast(device_type, enabled=False):
                return self.apply_transforms(spectra.float(), stop)
        for name, function in self._steps[:stop]:
            spectra = function(self, name, spectra)
        return spectra

    @torch.no_grad()
    def fit(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None, chunk_size: int = 4096) -> "Preprocess":
        """Fit the scaling ranges on the transformed training data, ``chunk_size`` samples at a time.

        Args:
            spectra: Raw training spectra ``[N, C, L]``, any device (chunks are moved to the buffers' device).
            tabular: Training tabular features ``[N, T]``; ``None`` or ``[N, 0]`` when ``T == 0``.
            chunk_size: Samples transformed at once, to bound memory.

        Returns:
            ``self``, fitted.

        Raises:
            ConfigError: If the shapes do not match the constructor, ``N`` is 0, or a value is NaN or infinite.
        """
        check_int("chunk_size", chunk_size, "Preprocess.fit")
        self._check_inputs(spectra, tabular)
        if spectra.shape[0] == 0:
            raise ConfigError(
                f"Preprocess.fit needs at least one training sample; got spectra of shape {tuple(spectra.shape)}."
            )
        device = self.spectra_min.device
        for index, name in enumerate(self.transforms):
            if TRANSFORM_TABLE[name].reference:
                getattr(self, f"{name}_reference").copy_(self._mean_input(spectra, index, chunk_size))
        self._derive_emsc()
        low = torch.full_like(self.spectra_min, float("inf"))
        high = torch.full_like(self.spectra_max, float("-inf"))
        for start in range(0, spectra.shape[0], chunk_size):
            chunk = self.apply_transforms(spectra[start : start + chunk_size].to(device, low.dtype))
            low = torch.minimum(low, chunk.amin(dim=0))
            high = torch.maximum(high, chunk.amax(dim=0))
        _check_finite("spectra", low, high)
        self.spectra_min.copy_(low)
        self.spectra_max.copy_(high)
        if self.n_tabular > 0:
            values = tabular.to(device, self.tabular_min.dtype)
            low, high = values.amin(dim=0), values.amax(dim=0)
            _check_finite("tabular", low, high)
            self.tabular_min.copy_(low)
            self.tabular_max.copy_(high)
        self.fitted.fill_(True)
        self._fitted = True
        self._derive_scaling()
        _logger.debug("Preprocess fitted on %d samples (transforms: %s)", spectra.shape[0], self.transforms)
        return self

    def forward(
        self, spectra: torch.Tensor, tabular: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Transform and scale a batch.

        Args:
            spectra: Raw spectra ``[N, C, L]``.
            tabular: Tabular features ``[N, T]``; ``None`` or ``[N, 0]`` when ``T == 0`` (returned as given).

        Returns:
            ``(spectra, tabular)`` of the same shapes, scaled (not clipped) to [-1, 1] over the training range.

        Raises:
            ConfigError: If ``fit`` has not been called (nor a fitted ``state_dict`` loaded), or shapes mismatch.
        """
        if not self._fitted:
            raise ConfigError(
                "Preprocess is not fitted: call fit(spectra, tabular) on the training split, or load "
                "a fitted state_dict, before using it."
            )
        # reason: an export records the graph, not these checks; under tracing they would only warn.
        if not is_exporting():
            self._check_inputs(spectra, tabular)
        spectra = (self.apply_transforms(spectra) - self._spectra_center) * self._spectra_factor
        if self.n_tabular > 0:
            tabular = (tabular - self._tabular_center) * self._tabular_factor
        return spectra, tabular

    def _mean_input(self, spectra: torch.Tensor, stop: int, chunk_size: int) -> torch.Tensor:
        """The mean ``[C, L]`` of the training spectra after the first ``stop`` transforms (float64 sum)."""
        device, total = self.spectra_min.device, torch.zeros_like(self.spectra_min, dtype=torch.float64)
        for start in range(0, spectra.shape[0], chunk_size):
            chunk = self.apply_transforms(spectra[start : start + chunk_size].to(device, torch.float32), stop)
            total += chunk.double().sum(dim=0)
        return (total / spectra.shape[0]).float()

    @torch.no_grad()
    def _derive_emsc(self) -> None:
        if "emsc" not in self.transforms:
            return
        polynomial = self._emsc_polynomial.double()
        design = torch.cat([polynomial.expand(len(self.channels), -1, -1),
                            self.emsc_reference.double().unsqueeze(-1)], dim=-1)
        self._emsc_projection.copy_(torch.linalg.pinv(design).float())

    @torch.no_grad()
    def _derive_scaling(self) -> None:
        for name, relative in (("spectra", _RELATIVE_SPAN), ("tabular", 0.0)):
            center, factor = _scaling(getattr(self, f"{name}_min"), getattr(self, f"{name}_max"), relative)
            getattr(self, f"_{name}_center").copy_(center)
            getattr(self, f"_{name}_factor").copy_(factor)

    def _check_inputs(self, spectra: torch.Tensor, tabular: torch.Tensor | None) -> None:
        expected = (len(self.channels), self.length)
        if spectra.dim() != 3 or tuple(spectra.shape[1:]) != expected:
            raise ConfigError(
                f"Preprocess expects spectra of shape [N, {expected[0]}, {expected[1]}] (channels "
                f"{list(self.channels)}); got {tuple(spectra.shape)}. Build it for this data."
            )
        if tabular is None:
            if self.n_tabular > 0:
                raise ConfigError(f"Preprocess expects {self.n_tabular} tabular features; got tabular=None.")
            return
        if tabular.dim() != 2 or tabular.shape[1] != self.n_tabular or tabular.shape[0] != spectra.shape[0]:
            raise ConfigError(
                f"Preprocess expects tabular of shape [{spectra.shape[0]}, {self.n_tabular}] to go "
                f"with spectra {tuple(spectra.shape)}; got {tuple(tabular.shape)}."
            )

    def extra_repr(self) -> str:
        return (
            f"channels={list(self.channels)}, length={self.length}, n_tabular={self.n_tabular}, "
            f"transforms={list(self.transforms)}"
        )


def _sync_fitted(module: Preprocess, incompatible_keys) -> None:
    module._fitted = bool(module.fitted)
    module._derive_scaling()
    module._derive_emsc()


# ---- the functions and setups the table of transforms names (spectratorch/transforms.py) -----------------------
def simulate(pre: Preprocess, name: str, spectra: torch.Tensor) -> torch.Tensor:
    """``simulate``: zero the points the new fluorimeter cannot see."""
    return spectra * pre.simulate_mask


def setup_simulate(pre: Preprocess, name: str, options: Mapping) -> None:
    pre.register_buffer("simulate_mask", _simulate_mask(pre.channels, pre.length, pre.simulate_points))


def snv(pre: Preprocess, name: str, spectra: torch.Tensor) -> torch.Tensor:
    """``snv``: ``(x - mean) / std`` per sample and channel (0 where the spectrum has no spread), in float64."""
    # reason: counts on a large common level (50,000 +- tens) lose most of their digits to `x - mean` in float32, and
    # onnxruntime's sums run in another order than torch's: the export's check then refused the model.
    wide = spectra.double()
    mean = wide.mean(dim=-1, keepdim=True)
    std = (wide - mean).pow(2).mean(dim=-1, keepdim=True).sqrt()
    return ((wide - mean) / std.clamp_min(_SNV_FLOOR)).to(spectra.dtype)


def savgol(pre: Preprocess, name: str, spectra: torch.Tensor) -> torch.Tensor:
    """``sg1``, ``sg2``: the Savitzky-Golay derivative, edges padded by repeating the end values."""
    weight = getattr(pre, f"{name}_weight")
    half = weight.shape[-1] // 2
    padded = F.pad(spectra, (half, half), mode="replicate")
    return F.conv1d(padded, weight, groups=weight.shape[0])


def setup_savgol(pre: Preprocess, name: str, options: Mapping) -> None:
    kernel = _savgol_kernel(options["sg_window"], options["sg_order"], _SG_DERIVATIVES[name], pre.length)
    pre.register_buffer(f"{name}_weight", kernel.repeat(len(pre.channels), 1, 1))


def msc(pre: Preprocess, name: str, spectra: torch.Tensor) -> torch.Tensor:
    """``msc`` on the fitted reference."""
    return _msc(spectra, pre.msc_reference)


def emsc(pre: Preprocess, name: str, spectra: torch.Tensor) -> torch.Tensor:
    """``emsc``: minus the fitted polynomial, divided by the reference's coefficient."""
    # reason: [N, C, 1, L] @ [C, L, P] -> [N, C, 1, P]: one batched product per channel, exportable as MatMul.
    coefficients = (spectra.unsqueeze(2) @ pre._emsc_projection.transpose(1, 2)).squeeze(2)
    offset = coefficients[..., :-1] @ pre._emsc_polynomial.T
    return (spectra - offset) / coefficients[..., -1:]


def setup_emsc(pre: Preprocess, name: str, options: Mapping) -> None:
    order, length = options["emsc_order"], pre.length
    check_int("emsc_order", order, "Preprocess", minimum=0)
    if order + 2 > length:
        raise ConfigError(f"The 'emsc_order' parameter of Preprocess must be at most length - 2 = "
                          f"{length - 2}. Got {order!r} instead.")
    pre.emsc_order = order
    # reason: the least-squares projection onto [1, u, ..., u^k, reference], derived from the reference.
    pre.register_buffer("_emsc_projection", torch.zeros(len(pre.channels), order + 2, length), persistent=False)
    pre.register_buffer("_emsc_polynomial", _vandermonde(length, order), persistent=False)


def als(pre: Preprocess, name: str, spectra: torch.Tensor) -> torch.Tensor:
    """``als``: minus the asymmetric-least-squares baseline."""
    return pre.als(spectra)


def setup_als(pre: Preprocess, name: str, options: Mapping) -> None:
    pre.als = AsymmetricLeastSquares(pre.length, _check_positive("als_lambda", options["als_lambda"]),
                                     _check_fraction("als_p", options["als_p"]), ALS_SOLVES)


def _transform_options(given: Mapping) -> dict:
    """The table's defaults, overridden by ``given`` (``None``: unset); an unknown name is refused."""
    known = transform_options("model")
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"Preprocess does not take {unknown}; the transforms' options are {list(known)}.")
    return {name: given[name] if given.get(name) is not None else option.default for name, option in known.items()}


def _msc(spectra: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``(x - a) / b`` with ``a + b r`` the least-squares fit of every spectrum ``x`` on the reference ``r``."""
    centred = reference - reference.mean(dim=-1, keepdim=True)
    slope = (spectra * centred).sum(dim=-1, keepdim=True) / centred.pow(2).sum(dim=-1, keepdim=True)
    intercept = spectra.mean(dim=-1, keepdim=True) - slope * reference.mean(dim=-1, keepdim=True)
    return (spectra - intercept) / slope


def _vandermonde(length: int, order: int) -> torch.Tensor:
    """``[L, order + 1]``: the powers 0..order of the positions mapped to [-1, 1]."""
    u = torch.linspace(-1.0, 1.0, length, dtype=torch.float64)
    return torch.stack([u**k for k in range(order + 1)], dim=-1).float()


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ConfigError(f"The {name!r} parameter of Preprocess must be a positive number. Got {value!r} instead.")
    return float(value)


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"The {name!r} parameter of Preprocess must be in (0, 1). Got {value!r} instead.")
    return float(value)


def _scaling(low: torch.Tensor, high: torch.Tensor, relative: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and factor mapping ``low`` -> -1 and ``high`` -> 1 along the last axis.

    A feature whose span is at most ``relative`` of the typical one (the 90th percentile of the spans) gets factor 0
    (it maps to 0 instead of dividing by zero).
    """
    span = high - low
    if span.numel() == 0:
        return span, span
    typical = torch.quantile(span.double(), _TYPICAL_SPAN, dim=-1, keepdim=True).to(span.dtype)
    varies = span > relative * typical
    factor = torch.where(varies, 2.0 / span.clamp_min(torch.finfo(span.dtype).tiny), torch.zeros_like(span))
    return (high + low) / 2, factor


def _check_finite(name: str, low: torch.Tensor, high: torch.Tensor) -> None:
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ConfigError(
            f"Preprocess.fit got NaN or infinite {name} (after the transforms); drop or fill them before fitting."
        )


def _check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels:
        raise ConfigError(
            f"The 'channels' parameter of Preprocess must be a non-empty sequence of channel names, "
            f"e.g. ['277', '380']. Got {channels!r} instead."
        )
    names = tuple(str(name) for name in channels)
    if len(set(names)) != len(names):
        raise ConfigError(f"The 'channels' parameter of Preprocess has repeated names: {list(names)}.")
    return names


def _inference_transforms(transforms: Sequence[str]) -> tuple[str, ...]:
    if isinstance(transforms, (str, bytes)) or not isinstance(transforms, Sequence):
        raise ConfigError(
            f"The 'transforms' parameter of Preprocess must be a sequence of names, e.g. "
            f"['simulate', 'snv']. Got {transforms!r} instead."
        )
    names = [str(name).lower() for name in transforms]
    kept = in_model(names)
    ignored = [name for name in names if name not in kept]
    if ignored:
        _logger.debug("Preprocess leaves %s to the training data pipeline", ignored)
    return kept


def _simulate_mask(channels: tuple[str, ...], length: int, simulate_points: Mapping[str, int] | None) -> torch.Tensor:
    extra = {str(key): value for key, value in (simulate_points or {}).items()}
    for name, points in extra.items():
        check_int(f"simulate_points[{name!r}]", points, "Preprocess", minimum=0)
    table = {**SIMULATE_POINTS, **extra}
    mask = torch.ones(len(channels), length)
    for index, name in enumerate(channels):
        if name in table:
            mask[index, : table[name]] = 0.0
    if not any(name in table for name in channels):
        _logger.info("simulate changes nothing: no channel of %s is in the table %s", list(channels), table)
    return mask


def _savgol_kernel(window: int, order: int, derivative: int, length: int) -> torch.Tensor:
    from scipy.signal import savgol_coeffs  # reason: scipy is only needed when a derivative is asked for.

    check_int("sg_window", window, "Preprocess")
    check_int("sg_order", order, "Preprocess", minimum=0)
    if window % 2 == 0 or window <= order or window > length:
        raise ConfigError(
            f"The 'sg_window' parameter of Preprocess must be odd, more than sg_order={order} and at "
            f"most length={length}. Got {window!r} instead."
        )
    if order < derivative:
        raise ConfigError(
            f"The 'sg_order' parameter of Preprocess must be at least {derivative} for "
            f"sg{derivative}. Got {order!r} instead."
        )
    # reason: 'dot' coefficients weight the window left to right, which is what conv1d (a correlation) does.
    coeffs = savgol_coeffs(window, order, deriv=derivative, use="dot")
    return torch.as_tensor(coeffs, dtype=torch.float32).reshape(1, 1, window)
