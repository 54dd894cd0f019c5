"""Synthetic maple-syrup fluorescence datasets that look like the lab's instrument exports.

Each sample has one emission spectrum (295-740 nm) per excitation channel 277, 380 and 425 nm, an LSPR
extinction spectrum (450-700 nm), a transmittance, a defect intensity and type, and the instrument metadata.

The physics, in short (the values live in the tables below):

- a latent syrup grade ``d`` in (0, 1) (light to dark) moves the emission bands along a curved path: band
  positions, widths and amplitude ratios are nonlinear functions of ``d``;
- every (intensity, type) class shifts some band parameters away from that path, scaled by a per-sample defect
  severity and more strongly in light syrups; OK sits in the middle, defects move away in different directions;
- each emission band is a Gaussian in wavenumber (so skewed to the red in wavelength); a Rayleigh scatter peak
  at the excitation (a tail plus a second-order peak at 554 nm for 277), a water Raman peak, a small baseline,
  shot and read noise; below the excitation only noise around zero;
- a wide log-normal concentration factor scales all emission together, so total intensity does not give the
  class; a per-sample wavelength jitter (about 1 nm) moves everything;
- LSPR: a plasmon band at 520-560 nm, stronger for VR; transmittance falls as the plasmon band shifts to red;
- artefacts the lab removes (see :mod:`spectratorch.data.raw`): saturated spectra (plateau at about 62000
  counts at a scatter peak), too-weak 277 spectra, and rows flagged ``integration_oob``. Normal spectra are kept
  inside the cleaning thresholds, so :func:`~spectratorch.data.raw.clean` removes only the artefacts.

This module imports no torch.
"""

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from spectratorch.data.raw import MIN_INTEGRALS, SATURATION_THRESHOLDS, clean
from spectratorch.errors import ConfigError

__all__ = [
    "AXIS_EMISSION",
    "AXIS_LSPR",
    "EXCITATIONS",
    "INTENSITY_SHARES",
    "TYPE_SHARES",
    "BLIND_POINTS",
    "InstrumentSpec",
    "INSTRUMENTS",
    "make_dataset",
    "make_demo_dataset",
]

_logger = logging.getLogger(__name__)

AXIS_EMISSION = np.arange(295, 741)
AXIS_LSPR = np.arange(450, 701)
EXCITATIONS = ("277", "380", "425")

INTENSITY_SHARES = {"OK": 0.65, "VR": 0.18, "CROCHET": 0.12, "NC": 0.05}
"""Share of each defect intensity (``greffon_defaut_severite``) among all generated samples."""

TYPE_SHARES = {
    "OK": {0: 1.0},
    "CROCHET": {0: 1.0},
    "VR": {1: 0.30, 11: 0.07, 12: 0.05, 13: 0.04, 14: 0.03, 2: 0.24, 4: 0.16, 5: 0.11},
    "NC": {1: 0.28, 2: 0.26, 4: 0.20, 5: 0.14, 6: 0.12},
}
"""Share of each defect type code (``greffon_defaut_type``) within an intensity."""

_OK_SPELLINGS = {"OK": 0.60, "OK - Inspecteur": 0.25, "OK - SpectrAcer": 0.15}
_ARTEFACT_SHARES = {"saturated": 0.030, "weak_277": 0.025, "oob": 0.015}
_ARTEFACT_CODES = {"none": 0, "saturated": 1, "weak_277": 2, "oob": 3}
_CHUNK = 8192
_PROGRESS_MIN = 50_000
_START_DATE = np.datetime64("2022-09-01T00:00:00", "s")
_N_DAYS = 730
_RAMAN_SHIFT_CM = 3400.0
_RAMAN_FWHM_CM = 380.0
_FWHM_PER_SIGMA = 2.3548
_VIBRONIC_FRANCK_CONDON = (1.0, 0.75, 0.4, 0.15)


@dataclass(frozen=True)
class InstrumentSpec:
    """Optical and electronic parameters of one fluorimeter model.

    Attributes:
        name: the instrument model name passed to :func:`make_dataset`.
        unit_ids: the ``instrument_id`` of each unit of that model.
        unit_weights: the share of samples measured on each unit.
        unit_shift_nm: each unit's wavelength calibration offset (nm).
        unit_gain: each unit's detector gain relative to the model.
        channel_gain: counts per unit of band amplitude and concentration, per channel of ``EXCITATIONS``.
        concentration_sigma: log-normal sigma of the per-sample concentration factor.
        lamp_sigma: log-normal sigma of the per-sample, per-channel lamp intensity.
        jitter_nm: standard deviation of the per-sample wavelength jitter (clipped at 2 sigma).
        rayleigh_counts: scatter peak height at turbidity 1, per channel (277: second order at 554 nm).
        rayleigh_fwhm_nm: width of the first-order scatter peak.
        tail_counts: height of the 277 scatter tail at 295 nm at turbidity 1.
        raman_counts: height of the water Raman peak, per channel.
        shot_gain: counts per photo-electron (shot-noise variance = shot_gain * signal).
        read_noise: standard deviation of the read noise in counts.
        saturation_counts: the plateau of a saturated detector.
        max_counts: largest count of a normal spectrum, per channel (the lab's saturation thresholds).
        min_integrals: smallest sum of a normal spectrum, per channel (the lab's integral minimums).
        margin: normal spectra stay this fraction inside ``max_counts`` and ``min_integrals``.
        lspr_noise: standard deviation of the LSPR extinction noise.
        axis_shift_nm: the model's wavelength calibration offset: the point labelled ``x`` nm sees light at
            ``x + axis_shift_nm`` (at the center of the axis).
        axis_stretch: the model's dispersion relative to the labelled axis: the point labelled ``x`` sees
            ``c + (x - c) * axis_stretch + axis_shift_nm``, ``c`` the center of the emission axis.
        response_nm: wavelengths (nm, increasing) of the knots of the detector's relative response; empty: flat.
        response: the relative response at each knot, linearly interpolated in between (held flat outside).
        blind_points: leading points of the axis that the detector cannot see, per channel of ``EXCITATIONS``;
            they read dark noise only (the read noise around zero).
    """

    name: str
    unit_ids: tuple[str, ...]
    unit_weights: tuple[float, ...]
    unit_shift_nm: tuple[float, ...]
    unit_gain: tuple[float, ...]
    channel_gain: tuple[float, float, float]
    concentration_sigma: float
    lamp_sigma: float
    jitter_nm: float
    rayleigh_counts: tuple[float, float, float]
    rayleigh_fwhm_nm: float
    tail_counts: float
    raman_counts: tuple[float, float, float]
    shot_gain: float
    read_noise: float
    saturation_counts: float
    max_counts: tuple[float, float, float]
    min_integrals: tuple[float, float, float]
    margin: float
    lspr_noise: float
    axis_shift_nm: float = 0.0
    axis_stretch: float = 1.0
    response_nm: tuple[float, ...] = ()
    response: tuple[float, ...] = ()
    blind_points: tuple[int, int, int] = (0, 0, 0)


INSTRUMENTS = {
    "A": InstrumentSpec(
        name="A",
        unit_ids=("FLUO-A01", "FLUO-A02", "FLUO-A03"),
        unit_weights=(0.5, 0.3, 0.2),
        unit_shift_nm=(0.0, 0.5, -0.4),
        unit_gain=(1.0, 0.94, 1.05),
        channel_gain=(2300.0, 2600.0, 3300.0),
        concentration_sigma=0.30,
        lamp_sigma=0.05,
        jitter_nm=1.0,
        rayleigh_counts=(900.0, 2200.0, 3200.0),
        rayleigh_fwhm_nm=8.0,
        tail_counts=300.0,
        raman_counts=(90.0, 140.0, 160.0),
        shot_gain=1.5,
        read_noise=6.0,
        saturation_counts=62000.0,
        max_counts=tuple(SATURATION_THRESHOLDS[c] for c in EXCITATIONS),
        min_integrals=tuple(MIN_INTEGRALS[c] for c in EXCITATIONS),
        margin=0.10,
        lspr_noise=0.003,
    ),
    # reason: the lab's next fluorimeter, the one `simulate` imitates: same samples and chemistry, another optical
    # bench. It sees nothing below 340 / 408 / 453 nm (BLIND_POINTS), is calibrated 2 nm off with a 1.2 % wider
    # dispersion, has a detector whose response falls off at both ends, lower resolution and more noise.
    "B": InstrumentSpec(
        name="B",
        unit_ids=("FLUO-B01", "FLUO-B02"),
        unit_weights=(0.6, 0.4),
        unit_shift_nm=(0.0, 0.7),
        unit_gain=(1.0, 0.9),
        channel_gain=(2100.0, 2900.0, 3000.0),
        concentration_sigma=0.30,
        lamp_sigma=0.08,
        jitter_nm=1.5,
        rayleigh_counts=(1300.0, 2600.0, 3600.0),
        rayleigh_fwhm_nm=11.0,
        tail_counts=400.0,
        raman_counts=(110.0, 170.0, 190.0),
        shot_gain=3.0,
        read_noise=15.0,
        saturation_counts=62000.0,
        max_counts=tuple(SATURATION_THRESHOLDS[c] for c in EXCITATIONS),
        min_integrals=tuple(MIN_INTEGRALS[c] for c in EXCITATIONS),
        margin=0.10,
        lspr_noise=0.006,
        axis_shift_nm=2.0,
        axis_stretch=1.012,
        response_nm=(295.0, 380.0, 470.0, 560.0, 650.0, 740.0),
        response=(0.45, 0.80, 1.00, 0.92, 0.70, 0.40),
        blind_points=(45, 113, 158),
    ),
}
"""Known instrument models, by the name :func:`make_dataset` takes."""

BLIND_POINTS = {"277": 45, "380": 113, "425": 158}
"""Leading points of each channel that instrument B cannot see; the same table as ``simulate``'s
(:data:`spectratorch.models.preprocess.SIMULATE_POINTS`; a test keeps them equal, data/ imports no models/)."""

# --------------------------------------------------------------------------------------------------------------
# Chemistry: band parameters along the grade path, natural spread, and class effects
# --------------------------------------------------------------------------------------------------------------
# reason: one row per band parameter, so a class effect is a sparse dict of shifts on these names. Positions are
# in nm, `*_lw` are log FWHM (nm), `*_la` log amplitudes, `v_a` and `n_a` linear amplitudes (absent when 0).
_PARAMS = (
    "p_pos", "p_lw", "p_la",     # 277: protein-like band near 340 nm
    "h_pos", "h_lw", "h_la",     # 277: phenolic, humic-like band near 425 nm
    "v_pos", "v_lw", "v_sp", "v_a",  # 277: vibronic progression of a PAH-like contaminant, 0-0 line near 380 nm
    "m_pos", "m_lw", "m_la",     # 380: Maillard-like band near 455 nm
    "m2_pos", "m2_lw", "m2_la",  # 380: secondary band near 515 nm
    "f_pos", "f_lw", "f_la",     # 425: main band near 495 nm
    "f2_pos", "f2_lw", "f2_la",  # 425: secondary band near 560 nm
    "n_a",                       # 380 and 425: narrow porphyrin-like band at 640 nm
    "l_pos", "l_lw", "l_la",     # LSPR plasmon band
)  # fmt: skip
_INDEX = {name: i for i, name in enumerate(_PARAMS)}

_NATURAL_SD = {
    "p_pos": 1.0, "p_lw": 0.03, "p_la": 0.12,
    "h_pos": 2.0, "h_lw": 0.04, "h_la": 0.14,
    "v_pos": 10.0, "v_lw": 0.05, "v_sp": 0.5, "v_a": 0.01,
    "m_pos": 1.2, "m_lw": 0.03, "m_la": 0.12,
    "m2_pos": 2.5, "m2_lw": 0.05, "m2_la": 0.14,
    "f_pos": 1.5, "f_lw": 0.04, "f_la": 0.12,
    "f2_pos": 2.5, "f2_lw": 0.05, "f2_la": 0.14,
    "n_a": 0.01,
    "l_pos": 3.0, "l_lw": 0.05, "l_la": 0.15,
}  # fmt: skip

_INTENSITY_EFFECTS = {
    "OK": {},
    "CROCHET": {"p_pos": 2.0, "h_lw": 0.06, "m_pos": -2.5, "m_lw": -0.05, "m2_la": -0.15},
    "VR": {"p_lw": -0.05, "h_pos": -4.0, "m_pos": 3.5, "m_lw": 0.06, "m2_la": 0.20, "l_la": 0.35},
    "NC": {"p_la": -0.30, "h_pos": 6.0, "h_la": 0.30, "m_pos": 5.0, "m_lw": 0.10, "l_la": 0.20},
}
_TYPE_EFFECTS = {
    0: {},
    1: {"p_pos": -1.5, "v_a": 0.08},
    11: {"p_pos": -1.5, "v_a": 0.08, "v_sp": -3.0},
    12: {"p_pos": -1.5, "v_a": 0.08, "v_sp": 3.0},
    13: {"p_pos": -1.5, "v_a": 0.08, "v_lw": -0.25},
    14: {"p_pos": -1.5, "v_a": 0.08, "v_lw": 0.25},
    2: {"h_lw": 0.08, "m_pos": -3.0, "m2_la": -0.50},
    4: {"p_pos": -3.5, "p_lw": 0.08},
    5: {"p_pos": 2.0, "m_lw": -0.10, "f_pos": -3.0, "f2_la": 0.40},
    6: {"m_pos": -4.0, "n_a": 0.25},
}
_TYPE_STRENGTH = {"OK": 0.0, "CROCHET": 0.0, "VR": 1.0, "NC": 1.6}
_SEVERITY_RANGE = {"OK": (0.0, 0.0), "CROCHET": (0.3, 1.7), "VR": (0.4, 1.6), "NC": (0.6, 1.4)}


def _grade_means(d: np.ndarray) -> np.ndarray:
    """Band parameters of an OK syrup of grade ``d``.

    Args:
        d: grades, shape ``[n]``, in (0, 1).

    Returns:
        Parameters in the order of ``_PARAMS``, shape ``[n, P]``.
    """
    columns = {
        "p_pos": 340.0 + 2.0 * d,
        "p_lw": np.log(55.0) + 0.05 * d,
        "p_la": np.log(1.0 - 0.5 * d),
        "h_pos": 418.0 + 12.0 * d**2,
        "h_lw": np.log(105.0) + 0.10 * d,
        "h_la": np.log(0.35 + 1.0 * d**2),
        "v_pos": np.full_like(d, 380.0),
        "v_lw": np.full_like(d, np.log(10.0)),
        "v_sp": np.full_like(d, 21.0),
        "v_a": np.zeros_like(d),
        "m_pos": 452.0 + 14.0 * d,
        "m_lw": np.log(85.0) + 0.20 * d,
        "m_la": np.log(0.7 + 0.8 * d),
        "m2_pos": 515.0 + 4.0 * d,
        "m2_lw": np.full_like(d, np.log(75.0)),
        "m2_la": np.log(0.15 + 1.2 * d * (1.0 - d)),
        "f_pos": 492.0 + 10.0 * d,
        "f_lw": np.log(90.0) + 0.15 * d,
        "f_la": np.log(0.8 + 0.6 * d),
        "f2_pos": np.full_like(d, 560.0),
        "f2_lw": np.full_like(d, np.log(85.0)),
        "f2_la": np.log(0.25 + 0.2 * d),
        "n_a": np.zeros_like(d),
        "l_pos": 521.0 + 30.0 * d,
        "l_lw": np.full_like(d, np.log(70.0)),
        "l_la": np.full_like(d, np.log(0.35)),
    }
    return np.stack([columns[name] for name in _PARAMS], axis=1)


# --------------------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------------------
def _classes() -> list[tuple[str, int, float]]:
    """Every (intensity, type, share of all samples)."""
    return [
        (intensity, code, share * type_share)
        for intensity, share in INTENSITY_SHARES.items()
        for code, type_share in TYPE_SHARES[intensity].items()
    ]


def _allocate(n: int, shares) -> np.ndarray:
    """Split ``n`` into counts proportional to ``shares`` (largest remainders), so small classes are exact."""
    shares = np.asarray(shares, dtype=np.float64)
    raw = n * shares / shares.sum()
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def _shuffled_codes(rng: np.random.Generator, n: int, shares) -> np.ndarray:
    """Codes ``0..K-1`` in exact proportions ``shares``, shuffled; shape ``[n]``."""
    return rng.permutation(np.repeat(np.arange(len(shares)), _allocate(n, shares)))


def _class_deltas() -> np.ndarray:
    """Shift of the band parameters of each class at severity 1, shape ``[n_classes, P]``."""
    deltas = np.zeros((len(_classes()), len(_PARAMS)))
    for k, (intensity, code, _) in enumerate(_classes()):
        for name, value in _INTENSITY_EFFECTS[intensity].items():
            deltas[k, _INDEX[name]] += value
        for name, value in _TYPE_EFFECTS[code].items():
            deltas[k, _INDEX[name]] += _TYPE_STRENGTH[intensity] * value
    return deltas


# --------------------------------------------------------------------------------------------------------------
# Spectral shapes (all in place on float32 [n, L] arrays)
# --------------------------------------------------------------------------------------------------------------
def _add_bands(out: np.ndarray, wavenumber: np.ndarray, center_nm, fwhm_nm, amplitude) -> None:
    """Add one Gaussian band per row, Gaussian in wavenumber (skewed to the red in wavelength).

    Args:
        out: spectra ``[n, L]``, modified in place.
        wavenumber: the axis in cm^-1, ``[L]``.
        center_nm, fwhm_nm, amplitude: per-row band parameters, ``[n]``; FWHM is taken at the band center.
    """
    center_k = 1e7 / center_nm
    sigma_k = 1e7 * fwhm_nm / center_nm**2 / _FWHM_PER_SIGMA
    scale = (1.0 / (np.sqrt(2.0) * sigma_k)).astype(np.float32)[:, None]
    # reason: exp(log A - z^2) folds the amplitude into the exponent, saving a pass over [n, L].
    z = wavenumber[None, :] * scale
    z -= (center_k[:, None] * scale).astype(np.float32)
    np.square(z, out=z)
    np.subtract(np.log(np.maximum(amplitude, 1e-30)).astype(np.float32)[:, None], z, out=z)
    np.exp(z, out=z)
    out += z


def _add_peak(out: np.ndarray, axis: np.ndarray, window: tuple[float, float], center_nm, fwhm_nm, amplitude) -> None:
    """Add one narrow Gaussian peak per row, evaluated only inside ``window`` (nm) of ``axis`` ``[L]``."""
    lo, hi = np.searchsorted(axis, window[0]), np.searchsorted(axis, window[1], side="right")
    if lo >= hi:
        return
    sigma = np.asarray(fwhm_nm, dtype=np.float64) / _FWHM_PER_SIGMA
    scale = np.broadcast_to(1.0 / (np.sqrt(2.0) * sigma), np.shape(center_nm)).astype(np.float32)[:, None]
    z = axis[lo:hi].astype(np.float32)[None, :] * scale
    z -= (np.asarray(center_nm)[:, None] * scale).astype(np.float32)
    np.square(z, out=z)
    np.subtract(np.log(np.maximum(amplitude, 1e-30)).astype(np.float32)[:, None], z, out=z)
    np.exp(z, out=z)
    out[:, lo:hi] += z


def _raman_nm(excitation: float) -> tuple[float, float]:
    """Center and FWHM (nm) of the water Raman band for an excitation wavelength."""
    k = 1e7 / excitation - _RAMAN_SHIFT_CM
    return 1e7 / k, _RAMAN_FWHM_CM * (1e7 / k) ** 2 / 1e7


# --------------------------------------------------------------------------------------------------------------
# One chunk of samples
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Chunk:
    """Per-sample inputs of one chunk, all ``[n]``."""

    classes: np.ndarray
    units: np.ndarray
    artefacts: np.ndarray


def _latent(rng: np.random.Generator, chunk: _Chunk, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw grade ``[n]`` and band parameters ``[n, P]`` for a chunk."""
    n = len(chunk.classes)
    grade = rng.beta(2.0, 2.0, size=n)
    intensities = np.array([intensity for intensity, _, _ in _classes()])[chunk.classes]
    lo = np.array([_SEVERITY_RANGE[i][0] for i in intensities])
    hi = np.array([_SEVERITY_RANGE[i][1] for i in intensities])
    severity = lo + (hi - lo) * rng.random(n)
    # reason: defects show more in light syrups, so the class effect interacts with the grade.
    weight = severity * (1.3 - 0.6 * grade)
    sd = np.array([_NATURAL_SD[name] for name in _PARAMS])
    theta = _grade_means(grade) + deltas[chunk.classes] * weight[:, None] + rng.standard_normal((n, len(_PARAMS))) * sd
    for name in ("v_a", "n_a"):
        theta[:, _INDEX[name]] = np.abs(theta[:, _INDEX[name]])
    return grade, theta


def _emission(channels: list[np.ndarray], theta: np.ndarray, shift: np.ndarray, axis: np.ndarray) -> None:
    """Add the fluorescence of unit concentration and gain to ``channels`` (one ``[n, L]`` per excitation).

    ``axis`` ``[L]`` is the wavelength (nm) each point of the labelled axis sees (:func:`_seen_axis`).
    """
    n = len(theta)
    wavenumber = (1e7 / axis).astype(np.float32)

    def col(name):
        return theta[:, _INDEX[name]]

    def band(out, prefix, amplitude=None):
        amp = np.exp(col(f"{prefix}_la")) if amplitude is None else amplitude
        _add_bands(out, wavenumber, col(f"{prefix}_pos") - shift, np.exp(col(f"{prefix}_lw")), amp)

    band(channels[0], "p")
    band(channels[0], "h")
    band(channels[1], "m")
    band(channels[1], "m2")
    band(channels[2], "f")
    band(channels[2], "f2")
    # reason: a rigid aromatic contaminant emits a progression of narrow lines; its origin moves with the matrix,
    # so the lines fall anywhere in 350-480 nm: a local pattern a convolution finds and a fixed weighting does not.
    for j, franck_condon in enumerate(_VIBRONIC_FRANCK_CONDON):
        center = col("v_pos") + j * col("v_sp") - shift
        _add_peak(channels[0], axis, (320.0, 520.0), center, np.exp(col("v_lw")), franck_condon * col("v_a"))
    porphyrin = np.full(n, 640.0) - shift
    _add_peak(channels[1], axis, (580.0, 700.0), porphyrin, 22.0, 0.5 * col("n_a"))
    _add_peak(channels[2], axis, (580.0, 700.0), porphyrin, 22.0, col("n_a"))
    for k, excitation in enumerate(EXCITATIONS[1:], start=1):
        # reason: no emission below the excitation (no anti-Stokes light); a smooth edge just above it.
        edge = 1.0 / (1.0 + np.exp(-(axis - float(excitation) - 10.0) / 4.0))
        channels[k] *= edge.astype(np.float32)[None, :]


def _scatter(spec: InstrumentSpec, turbidity: np.ndarray, shift: np.ndarray, unit_gain: np.ndarray,
             seen: np.ndarray) -> list:  # fmt: skip
    """Rayleigh scatter and water Raman, not scaled by concentration, one ``[n, L]`` array per channel."""
    n = len(turbidity)
    axis = seen.astype(np.float32)
    channels = [np.zeros((n, len(AXIS_EMISSION)), dtype=np.float32) for _ in EXCITATIONS]
    # reason: channel 277's first-order peak is below the axis; only its tail and the second order (554) show.
    tail_window = slice(0, 80)
    decay = np.exp(-(axis[None, tail_window] - 295.0 + shift[:, None].astype(np.float32)) / 8.0)
    channels[0][:, tail_window] += (spec.tail_counts * turbidity * unit_gain)[:, None].astype(np.float32) * decay
    second = 2.0 * float(EXCITATIONS[0])
    _add_peak(channels[0], seen, (second - 30, second + 30), second - shift, 2.0 * spec.rayleigh_fwhm_nm,
              spec.rayleigh_counts[0] * turbidity * unit_gain)  # fmt: skip
    for k, excitation in enumerate(EXCITATIONS):
        ex = float(excitation)
        if k > 0:
            _add_peak(channels[k], seen, (ex - 30, ex + 30), ex - shift, spec.rayleigh_fwhm_nm,
                      spec.rayleigh_counts[k] * turbidity * unit_gain)  # fmt: skip
        center, fwhm = _raman_nm(ex)
        _add_peak(channels[k], seen, (center - 4 * fwhm, center + 4 * fwhm), center - shift, fwhm,
                  spec.raman_counts[k] * unit_gain)  # fmt: skip
    return channels


def _concentration_bounds(spec: InstrumentSpec, emission: list, scatter: list) -> tuple[np.ndarray, np.ndarray]:
    """Range of concentration factors ``[n]`` that keeps every channel inside the cleaning thresholds."""
    n = len(emission[0])
    lo, hi = np.zeros(n), np.full(n, np.inf)
    # reason: max(cE + R) <= c max(E) + max(R) on each short segment; emission and scatter peak in different
    # segments, so the bound is tight yet safe.
    starts = np.arange(0, len(AXIS_EMISSION), 16)
    for k in range(len(EXCITATIONS)):
        e, r = emission[k], scatter[k]
        floor = (1.0 + spec.margin) * spec.min_integrals[k]
        lo = np.maximum(lo, (floor - r.sum(axis=1, dtype=np.float64)) / e.sum(axis=1, dtype=np.float64))
        ceiling = (1.0 - spec.margin) * spec.max_counts[k]
        e_max = np.maximum(np.maximum.reduceat(e, starts, axis=1), 1e-9)
        r_max = np.maximum.reduceat(r, starts, axis=1)
        hi = np.minimum(hi, ((ceiling - r_max) / e_max).min(axis=1))
    return lo, hi


def _add_baseline(rng: np.random.Generator, spectra: np.ndarray) -> None:
    """Add a dark-subtracted baseline (offset and slope of a few counts) in place on ``[n, L]``."""
    n = len(spectra)
    t = ((AXIS_EMISSION - AXIS_EMISSION[0]) / (AXIS_EMISSION[-1] - AXIS_EMISSION[0])).astype(np.float32)
    spectra += rng.normal(0.0, 3.0, size=(n, 1)).astype(np.float32)
    spectra += rng.normal(0.0, 5.0, size=(n, 1)).astype(np.float32) * t[None, :]


def _add_noise(rng: np.random.Generator, spec: InstrumentSpec, signal: np.ndarray) -> None:
    """Shot noise (variance proportional to the signal) plus read noise, in place on ``[n, L]``."""
    sd = np.maximum(signal, 0.0)
    sd *= spec.shot_gain
    sd += spec.read_noise**2
    np.sqrt(sd, out=sd)
    sd *= rng.standard_normal(signal.shape, dtype=np.float32)
    signal += sd


def _saturate(rng: np.random.Generator, spec: InstrumentSpec, spectra: list, rows: np.ndarray, shift,
              seen: np.ndarray) -> None:  # fmt: skip
    """Turn ``rows`` of one random channel each into a saturated spectrum (plateau at the scatter peak)."""
    channel = rng.integers(0, len(EXCITATIONS), size=len(rows))
    # reason: a detector cannot saturate where it is blind; such rows saturate at 277's second order instead.
    visible = np.array([AXIS_EMISSION[spec.blind_points[k]] < (float(ex) if k else 2 * float(ex))
                        for k, ex in enumerate(EXCITATIONS)])  # fmt: skip
    channel = np.where(visible[channel], channel, 0)
    for k, excitation in enumerate(EXCITATIONS):
        picked = rows[channel == k]
        if len(picked) == 0:
            continue
        peak = float(excitation) if k > 0 else 2.0 * float(excitation)
        block = spectra[k][picked]
        height = spec.saturation_counts * rng.uniform(1.5, 4.0, size=len(picked))
        _add_peak(block, seen, (peak - 40, peak + 40), peak - shift[picked], 2 * spec.rayleigh_fwhm_nm, height)
        plateau = spec.saturation_counts + rng.uniform(-200.0, 200.0, size=(len(picked), 1))
        spectra[k][picked] = np.minimum(block, plateau.astype(np.float32))


def _lspr(rng: np.random.Generator, spec: InstrumentSpec, theta: np.ndarray, out: np.ndarray) -> None:
    """Write LSPR extinction spectra into ``out`` ``[n, L_lspr]``: plasmon band on a small sloped baseline."""
    n = len(theta)
    t = ((AXIS_LSPR - AXIS_LSPR[0]) / (AXIS_LSPR[-1] - AXIS_LSPR[0])).astype(np.float32)
    out[:] = rng.standard_normal(out.shape, dtype=np.float32)
    out *= spec.lspr_noise
    out += rng.normal(0.05, 0.01, size=(n, 1)).astype(np.float32)
    out -= rng.normal(0.02, 0.005, size=(n, 1)).astype(np.float32) * t[None, :]
    center = theta[:, _INDEX["l_pos"]] + rng.normal(0.0, 0.3, size=n)
    _add_peak(out, AXIS_LSPR, (450.0, 700.0), center, np.exp(theta[:, _INDEX["l_lw"]]),
              np.exp(theta[:, _INDEX["l_la"]]))


def _transmittance(rng: np.random.Generator, theta: np.ndarray) -> np.ndarray:
    """Transmittance in percent ``[n]``: falls as the plasmon band shifts to the red (darker syrup)."""
    shift = theta[:, _INDEX["l_pos"]] - 520.0
    return np.clip(97.0 - 1.3 * shift + rng.normal(0.0, 2.0, size=len(theta)), 0.0, 100.0)


def _seen_axis(spec: InstrumentSpec) -> np.ndarray:
    """The wavelength (nm) each point of the labelled emission axis sees, ``[L]``; the axis itself when calibrated."""
    if spec.axis_shift_nm == 0.0 and spec.axis_stretch == 1.0:
        # reason: the very array, so instrument A's output stays bit-identical to what the figures were made with.
        return AXIS_EMISSION
    center = (AXIS_EMISSION[0] + AXIS_EMISSION[-1]) / 2.0
    return center + (AXIS_EMISSION - center) * spec.axis_stretch + spec.axis_shift_nm


def _apply_response(spec: InstrumentSpec, seen: np.ndarray, spectra: list) -> None:
    """Multiply each ``[n, L]`` optical signal by the detector's relative response at the wavelength it sees."""
    if not spec.response:
        return
    curve = np.interp(seen, spec.response_nm, spec.response).astype(np.float32)
    for s in spectra:
        s *= curve[None, :]


def _blind(spec: InstrumentSpec, spectra: list) -> None:
    """Zero the points each channel's detector cannot see (before the noise, so they read dark noise)."""
    for k, s in enumerate(spectra):
        s[:, : spec.blind_points[k % len(EXCITATIONS)]] = 0.0


def _simulate_chunk(rng: np.random.Generator, spec: InstrumentSpec, chunk: _Chunk, deltas: np.ndarray,
                    out: np.ndarray) -> np.ndarray:  # fmt: skip
    """Write the spectra of one chunk into ``out`` ``[n, 3 * L + L_lspr]`` and return the transmittance ``[n]``."""
    n, width = len(chunk.classes), len(AXIS_EMISSION)
    grade, theta = _latent(rng, chunk, deltas)
    shift = np.clip(rng.normal(0.0, spec.jitter_nm, size=n), -2.0 * spec.jitter_nm, 2.0 * spec.jitter_nm)
    shift += np.asarray(spec.unit_shift_nm)[chunk.units]
    unit_gain = np.asarray(spec.unit_gain)[chunk.units]
    spectra = [out[:, k * width : (k + 1) * width] for k in range(len(EXCITATIONS))]
    for s in spectra:
        s.fill(0.0)
    seen = _seen_axis(spec)
    _emission(spectra, theta, shift, seen)
    for k, s in enumerate(spectra):
        lamp = np.exp(rng.normal(0.0, spec.lamp_sigma, size=n))
        s *= (spec.channel_gain[k] * unit_gain * lamp).astype(np.float32)[:, None]
    turbidity = np.clip(np.exp(rng.normal(0.0, 0.35, size=n)) * (0.7 + 0.6 * grade), 0.3, 2.2)
    scatter = _scatter(spec, turbidity, shift, unit_gain, seen)
    _apply_response(spec, seen, spectra + scatter)
    for r in scatter:
        _add_baseline(rng, r)
    _blind(spec, spectra + scatter)
    lo, hi = _concentration_bounds(spec, spectra, scatter)
    if (lo > hi).any():
        _logger.debug("%d samples cannot fit the cleaning thresholds; cleaning will drop them", (lo > hi).sum())
    # reason: centred in each sample's admissible range, so neither total intensity nor a pile-up at a threshold
    # tells the class; the log-normal spread is the random part.
    center = np.sqrt(lo * np.maximum(hi, lo))
    concentration = np.clip(center * np.exp(rng.normal(0.0, spec.concentration_sigma, size=n)), lo, hi)
    for s, r in zip(spectra, scatter):
        s *= concentration.astype(np.float32)[:, None]
        s += r
    _inject_before_noise(rng, spec, spectra, chunk.artefacts)
    for s in spectra:
        _add_noise(rng, spec, s)
    _saturate(rng, spec, spectra, np.flatnonzero(chunk.artefacts == _ARTEFACT_CODES["saturated"]), shift, seen)
    _lspr(rng, spec, theta, out[:, len(EXCITATIONS) * width :])
    return _transmittance(rng, theta)


def _inject_before_noise(rng: np.random.Generator, spec: InstrumentSpec, spectra: list, artefacts) -> None:
    """Weak 277 spectra (integral below the minimum) and integration-time errors (all channels scaled)."""
    weak = np.flatnonzero(artefacts == _ARTEFACT_CODES["weak_277"])
    if len(weak):
        target = spec.min_integrals[0] * rng.uniform(0.35, 0.85, size=len(weak))
        factor = target / spectra[0][weak].sum(axis=1, dtype=np.float64)
        spectra[0][weak] *= factor.astype(np.float32)[:, None]
    oob = np.flatnonzero(artefacts == _ARTEFACT_CODES["oob"])
    if len(oob):
        factor = rng.uniform(0.6, 1.4, size=(len(oob), 1)).astype(np.float32)
        for s in spectra:
            s[oob] *= factor


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------
def _instrument(name: str) -> InstrumentSpec:
    if name not in INSTRUMENTS:
        raise ConfigError(
            f"The 'instrument' parameter of make_dataset must be one of {sorted(INSTRUMENTS)}; got {name!r}. "
            f"Pass instrument={sorted(INSTRUMENTS)[0]!r}."
        )
    return INSTRUMENTS[name]


def _spectral_columns() -> list[str]:
    columns = [f"{ch}_{x}" for ch in EXCITATIONS for x in AXIS_EMISSION]
    return columns + [f"lspr_{x}" for x in AXIS_LSPR]


def _labels(rng: np.random.Generator, n: int) -> tuple[np.ndarray, pd.Series, np.ndarray]:
    """Class index ``[n]``, the intensity as written by the lab ``[n]`` and the type code ``[n]``."""
    classes = _shuffled_codes(rng, n, [share for _, _, share in _classes()])
    intensity = np.array([i for i, _, _ in _classes()], dtype=object)[classes]
    codes = np.array([c for _, c, _ in _classes()], dtype=np.int64)[classes]
    ok = np.flatnonzero(intensity == "OK")
    spelling = _shuffled_codes(rng, len(ok), list(_OK_SPELLINGS.values()))
    intensity[ok] = np.array(list(_OK_SPELLINGS), dtype=object)[spelling]
    return classes, intensity, codes


def _dates(rng: np.random.Generator, n: int) -> np.ndarray:
    """Measurement times over two years, in working hours, ``[n]`` datetime64[s]."""
    days = rng.integers(0, _N_DAYS, size=n)
    seconds = rng.integers(8 * 3600, 18 * 3600, size=n)
    return _START_DATE + (days * 86400 + seconds).astype("timedelta64[s]")


def _generate(n_samples: int, seed: int, instrument: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The dataset and the artefact code of each row (``_ARTEFACT_CODES``)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ConfigError(f"The 'n_samples' parameter of make_dataset must be an int >= 1; got {n_samples!r}.")
    spec = _instrument(instrument)
    n = int(n_samples)
    sequence_seed, *chunk_seeds = np.random.SeedSequence(seed).spawn(1 + -(-n // _CHUNK))
    rng = np.random.default_rng(sequence_seed)
    classes, intensity, codes = _labels(rng, n)
    artefact_shares = [1.0 - sum(_ARTEFACT_SHARES.values()), *_ARTEFACT_SHARES.values()]
    artefacts = _shuffled_codes(rng, n, artefact_shares)
    units = rng.choice(len(spec.unit_ids), size=n, p=np.asarray(spec.unit_weights) / sum(spec.unit_weights))
    dates = _dates(rng, n)
    sequence = np.empty(n, dtype=np.int64)
    sequence[np.argsort(dates, kind="stable")] = 100_000 + np.arange(n)

    deltas = _class_deltas()
    columns = _spectral_columns()
    values = np.empty((n, len(columns)), dtype=np.float32)
    transmittance = np.empty(n, dtype=np.float32)
    with tqdm(total=n, desc="make_dataset", unit="sample", disable=n < _PROGRESS_MIN) as bar:
        for i, chunk_seed in enumerate(chunk_seeds):
            rows = slice(i * _CHUNK, min(n, (i + 1) * _CHUNK))
            chunk = _Chunk(classes[rows], units[rows], artefacts[rows])
            chunk_rng = np.random.default_rng(chunk_seed)
            transmittance[rows] = _simulate_chunk(chunk_rng, spec, chunk, deltas, values[rows])
            bar.update(rows.stop - rows.start)

    index = pd.Index([f"S{i:07d}" for i in range(1, n + 1)], name="id")
    labels = pd.DataFrame(
        {
            "greffon_defaut_severite": pd.array(intensity, dtype="str"),
            "greffon_defaut_type": codes,
            "greffon_transmittance": transmittance,
            "integration_oob": (artefacts == _ARTEFACT_CODES["oob"]).astype(np.int8),
            "mesure_date": dates.astype("datetime64[us]"),
            "instrument_id": pd.array(np.asarray(spec.unit_ids, dtype=object)[units], dtype="str"),
            "sequence": sequence,
        },
        index=index,
    )
    df = pd.concat([labels, pd.DataFrame(values, index=index, columns=columns, copy=False)], axis=1)
    return df, artefacts


def make_dataset(n_samples: int, seed: int = 0, *, instrument: str = "A") -> pd.DataFrame:
    """Generate a synthetic dataset in the lab's schema, artefacts included (as the instrument exports it).

    Args:
        n_samples: number of samples (rows).
        seed: random seed; the same seed and arguments give an identical DataFrame.
        instrument: the instrument model, a key of :data:`INSTRUMENTS`.

    Returns:
        One row per sample, index ``id`` (``"S0000001"`` ...): ``greffon_defaut_severite`` (str),
        ``greffon_defaut_type`` (int64), ``greffon_transmittance`` (float32, %), ``integration_oob`` (int8),
        ``mesure_date`` (datetime64), ``instrument_id`` (str), ``sequence`` (int64, unique), then the spectra
        ``277_295`` ... ``425_740`` and ``lspr_450`` ... ``lspr_700`` (float32, counts and extinction).

    Raises:
        ConfigError: ``n_samples`` below 1 or an unknown ``instrument``.

    Example:
        >>> df = make_dataset(100, seed=0)
        >>> df.shape, df.index.name, df["277_295"].dtype
        ((100, 1596), 'id', dtype('float32'))
    """
    df, _ = _generate(n_samples, seed, instrument)
    _logger.info("Generated %d synthetic samples (seed %d, instrument %s)", len(df), seed, instrument)
    return df


def make_demo_dataset(n_samples: int, seed: int = 0, *, instrument: str = "A") -> tuple[pd.DataFrame, dict]:
    """Generate a dataset and clean it, exactly as :func:`~spectratorch.data.raw.convert` does the raw exports.

    Args:
        n_samples: number of samples before cleaning.
        seed: random seed.
        instrument: the instrument model, a key of :data:`INSTRUMENTS`.

    Returns:
        ``(cleaned, removed)``: the rows kept by :func:`~spectratorch.data.raw.clean` with its default thresholds,
        and how many rows each rule removed.

    Example:
        >>> df, removed = make_demo_dataset(1000, seed=0)
        >>> removed
        {'oob': 15, 'saturation': 30, 'integral': 25}
    """
    return clean(make_dataset(n_samples, seed, instrument=instrument))
