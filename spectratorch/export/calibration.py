"""Temperature scaling: one scalar ``T`` that divides the logits before the softmax, fitted on the validation split.

``softmax(logits / T)`` keeps every prediction (the order of the classes does not change) and only makes the
probabilities more (``T < 1``) or less (``T > 1``) confident, so that they can be read as frequencies: of the
samples given 0.9, about 90 % are right. ``T`` minimises the negative log-likelihood (NLL) of the validation
labels; the NLL is convex in ``1 / T``, so a bounded golden-section search over ``log T`` finds the minimum.

numpy only: no torch, no scipy.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from spectratorch.errors import ConfigError

__all__ = [
    "calibration_report",
    "confidence_bins",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "softmax",
]

_logger = logging.getLogger(__name__)

# reason: beyond these bounds a model is either hopelessly over-confident or flat; the fit then hits a bound,
# which is logged rather than followed to absurd values.
_LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))
_LOG_T_BOUNDS_PLATT = (math.log(1e-3), math.log(1e3))
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)``, computed stably in float64.

    Args:
        logits: ``[N, K]`` logits.
        temperature: ``T > 0``.

    Returns:
        ``[N, K]`` probabilities (float64), rows summing to 1.

    Example:
        >>> softmax(np.array([[0.0, np.log(3.0)]])).round(3).tolist()
        [[0.25, 0.75]]
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean ``-log softmax(logits / T)[y]`` over the rows.

    Args:
        logits: ``[N, K]`` logits.
        y: ``[N]`` int class indices.
        temperature: ``T > 0``.

    Returns:
        The mean NLL (nats).

    Example:
        >>> round(negative_log_likelihood(np.array([[0.0, 0.0]]), np.array([1])), 4)
        0.6931
    """
    log_p = _log_softmax(logits, temperature)
    return float(-log_p[np.arange(len(y)), np.asarray(y, dtype=np.int64)].mean())


def _check_logits(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if logits.ndim != 2 or y.ndim != 1 or len(y) != len(logits) or len(y) == 0:
        raise ConfigError(
            f"temperature scaling needs logits [N, K] and labels [N] with N > 0; got {logits.shape} and {y.shape}."
        )
    if y.min() < 0 or y.max() >= logits.shape[1]:
        raise ConfigError(f"labels must be in 0..{logits.shape[1] - 1}; got {y.min()}..{y.max()}.")
    if not np.isfinite(logits).all():
        raise ConfigError("temperature scaling got NaN or infinite logits; the model or its input is broken.")
    return logits, y


def _platt_targets(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Platt's targets: a row of a class with ``n`` rows gives its class ``(n + 1) / (n + 2)`` and shares the rest
    among the others, as if one more row of each class could be wrong.

    >>> _platt_targets(np.array([0, 0, 1]), 2).round(3).tolist()
    [[0.75, 0.25], [0.75, 0.25], [0.333, 0.667]]
    """
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    rest = 1.0 / (counts[y] + 2.0)
    targets = np.repeat((rest / max(n_classes - 1, 1))[:, None], n_classes, axis=1)
    targets[np.arange(len(y)), y] = 1.0 - rest
    return targets


def fit_temperature(logits: np.ndarray, y: np.ndarray, tol: float = 1e-5, platt: bool = False) -> float:
    """The temperature ``T`` in [0.05, 20] (with ``platt``, [0.001, 1000]) that minimises the NLL of
    ``softmax(logits / T)``.

    With ``platt``, the NLL is taken against Platt's targets (:func:`_platt_targets`) instead of the labels: on rows
    that are all classified right (out-of-fold scores of an easy small set) the labels alone would push ``T`` to its
    lower bound, probabilities of 1.000 for every new row, wrong ones included; Platt's targets stop it where a
    class's rows leave room for one more error. As they always give a finite optimum, its bounds are wider (logits
    already divided by a temperature of 0.05 may need 20 or more).

    The search never returns a ``T`` whose NLL is not lower than that of ``T = 1``: if it did not improve on the
    uncalibrated model (rounding on an already calibrated one, or logits the same for every class), 1.0 is returned,
    without a warning about the bounds.

    Args:
        logits: ``[N, K]`` validation logits.
        y: ``[N]`` validation class indices.
        tol: stop when the bracket on ``log T`` is narrower than this.
        platt: fit to Platt's targets instead of the labels.

    Returns:
        ``T``.

    Raises:
        ConfigError: on mismatched shapes, labels out of range, or non-finite logits.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 2000)
        >>> x = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1, 2000)   # N(+-1, 1): the true log-odds are 2x
        >>> calibrated = np.stack([np.zeros(2000), 2 * x], axis=1)
        >>> t = fit_temperature(5 * calibrated, y)   # 5 times over-confident
        >>> 3.5 < t < 7.0
        True
    """
    logits, y = _check_logits(logits, y)
    bounds = _LOG_T_BOUNDS_PLATT if platt else _LOG_T_BOUNDS
    low, high = bounds
    targets = _platt_targets(y, logits.shape[1]) if platt else None

    def loss(log_t: float) -> float:
        if targets is None:
            return negative_log_likelihood(logits, y, math.exp(log_t))
        return float(-(targets * _log_softmax(logits, math.exp(log_t))).sum(1).mean())

    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    fa, fb = loss(a), loss(b)
    while high - low > tol:
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - _GOLDEN * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + _GOLDEN * (high - low)
            fb = loss(b)
    log_t = (low + high) / 2.0
    if loss(log_t) >= loss(0.0):
        return 1.0
    if min(abs(log_t - bounds[0]), abs(log_t - bounds[1])) < 1e-3:
        _logger.warning(_at_bound(log_t, logits, y))
    return math.exp(log_t)


def _at_bound(log_t: float, logits: np.ndarray, y: np.ndarray) -> str:
    """Why the temperature sits at a bound of its search, in one line, with the mean top probability it gives."""
    right = int((logits.argmax(1) == y).sum())
    top = float(softmax(logits, math.exp(log_t)).max(1).mean())
    at = (f"the fitted temperature {math.exp(log_t):.3g} is the {{}} bound of its search: {right} of the {len(y)} "
          "rows it is fitted on are ")
    gives = f"; their mean top probability is {top:.3f}"
    if log_t < 0 and right == len(y):
        return (at.format("lower") + "all classified right, so nothing limits how sharp the probabilities get"
                + gives + " (more rows would calibrate them)")
    if log_t < 0:
        return at.format("lower") + "classified right, and the logits are far too flat" + gives
    if right == len(y):
        # reason: with Platt's targets, logits far apart on rows all right are softened until the bound, and the
        # probabilities can stay close to 1 there; the labels alone would not raise the temperature.
        return (at.format("upper") + "all classified right, with logits so far apart that even this temperature "
                "softens them little" + gives)
    return (at.format("upper") + "classified right: the logits say little right about their classes, so the "
            "probabilities are close to uniform" + gives)


def confidence_bins(confidence: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """The bin of each top probability: ``(i / n_bins, (i + 1) / n_bins]`` is bin ``i`` (a confidence of 0 falls in
    bin 0); the bins of :func:`expected_calibration_error` and of the result sheet's reliability curve.

    Example:
        >>> confidence_bins(np.array([0.0, 0.2, 0.21, 1.0]), n_bins=5).tolist()
        [0, 0, 1, 4]
    """
    return np.clip(np.ceil(np.asarray(confidence) * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 prediction, with ``n_bins`` equal-width confidence bins.

    Each row's confidence (its largest probability) falls in the bin ``(i / n_bins, (i + 1) / n_bins]`` (a
    confidence of 0 in the first); ``ECE = sum over bins of |bin| / N * |accuracy(bin) - mean confidence(bin)|``.

    Args:
        probs: ``[N, K]`` probabilities.
        y: ``[N]`` int class indices.
        n_bins: number of bins.

    Returns:
        The ECE, in [0, 1].

    Example:
        >>> probs = np.array([[0.85, 0.15], [0.75, 0.25], [0.35, 0.65], [0.55, 0.45]])
        >>> round(expected_calibration_error(probs, np.array([0, 1, 1, 0]), n_bins=5), 4)
        0.25
    """
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(y) or len(y) == 0:
        raise ConfigError(f"expected_calibration_error needs probs [N, K] and y [N], N > 0; got {probs.shape}, "
                          f"{y.shape}.")
    if n_bins < 1:
        raise ConfigError(f"n_bins must be at least 1; got {n_bins}.")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    bins = confidence_bins(confidence, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    # reason: sum over a bin of (correct - confidence) is |bin| * (accuracy - mean confidence).
    return float(np.abs(gap[count > 0]).sum() / len(y))


def calibration_report(logits: np.ndarray, y: np.ndarray, n_bins: int = 15, temperature: float | None = None,
                       rows: str = "validation") -> dict:
    """Fit the temperature and measure NLL and ECE before and after.

    Args:
        logits: ``[N, K]`` validation logits.
        y: ``[N]`` validation class indices.
        n_bins: ECE bins.
        temperature: the temperature to measure instead of fitting one (``1.0`` for logits whose temperature is
            already applied).
        rows: what the rows are, for the log line (``"validation"``, ``"out-of-fold"``).

    Returns:
        ``{"temperature", "n_samples", "nll_before", "nll_after", "ece_before", "ece_after", "n_bins"}``.

    Example:
        >>> report = calibration_report(np.array([[4.0, -4.0], [4.0, -4.0], [-4.0, 4.0]]), np.array([0, 1, 1]))
        >>> report["temperature"] > 1, report["nll_after"] <= report["nll_before"]
        (True, True)
    """
    logits, y = _check_logits(logits, y)
    if temperature is None:
        temperature = fit_temperature(logits, y)
    report = {
        "temperature": temperature,
        "n_samples": len(y),
        "nll_before": negative_log_likelihood(logits, y),
        "nll_after": negative_log_likelihood(logits, y, temperature),
        "ece_before": expected_calibration_error(softmax(logits), y, n_bins),
        "ece_after": expected_calibration_error(softmax(logits, temperature), y, n_bins),
        "n_bins": n_bins,
    }
    _logger.info("temperature %.4g: %s NLL %.4f -> %.4f, ECE %.4f -> %.4f (%d samples)", temperature, rows,
                 report["nll_before"], report["nll_after"], report["ece_before"], report["ece_after"], len(y))
    return report
