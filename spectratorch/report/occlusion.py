"""Occlusion: copies of a spectrum with one window of one channel replaced by a straight line. numpy only.

A window of ``window`` points slides along each channel by ``stride``; in each copy of the sample one window of one
channel is replaced by the straight line between the points just outside it (its local shape is removed, its level
kept). How much a class's probability drops without a window tells how much that window's shape argued for the
class. Shared by the inspectors' page (onnxruntime) and the result sheet (torch, for models without input gradients).
"""

from __future__ import annotations

import numpy as np

__all__ = ["default_window", "occluded_copies", "window_average"]

# reason: about 32 windows along the axis: fine enough to point at a band, few enough to run in well under a second.
_WINDOWS_PER_AXIS = 32


def default_window(n_points: int) -> tuple[int, int]:
    """The window and stride for an axis of ``n_points``: about 32 windows, each overlapping the next by half.

    Example:
        >>> default_window(446)
        (14, 7)
    """
    window = max(2, round(n_points / _WINDOWS_PER_AXIS))
    return window, max(1, window // 2)


def _windows(n_points: int, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, max(1, n_points - window + stride), stride)
    starts = starts[starts < n_points]
    return starts, np.minimum(starts + window, n_points)


def occluded_copies(spectra: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copies of one sample with one window of one channel replaced by a straight line.

    Args:
        spectra: ``[C, L]`` one sample.
        window: points per window.
        stride: points between window starts.

    Returns:
        ``copies [C, W, C, L]`` (copy ``[c, w]`` has window ``w`` of channel ``c`` occluded), ``starts [W]``,
        ``stops [W]``.

    Example:
        >>> copies, starts, stops = occluded_copies(np.array([[0.0, 5.0, 2.0, 3.0]]), window=2, stride=2)
        >>> copies[0, 0, 0].tolist(), copies[0, 1, 0].tolist()
        ([2.0, 2.0, 2.0, 3.0], [0.0, 5.0, 5.0, 5.0])
    """
    spectra = np.asarray(spectra, dtype=np.float32)
    n_channels, n_points = spectra.shape
    starts, stops = _windows(n_points, window, stride)
    index = np.arange(n_points)
    inside = (index >= starts[:, None]) & (index < stops[:, None])  # [W, L]
    left = np.clip(starts - 1, 0, n_points - 1)
    right = np.clip(stops, 0, n_points - 1)
    # reason: a window at an end of the axis has one neighbour: the line is flat at that neighbour's value.
    v_left = np.where(starts > 0, spectra[:, left], spectra[:, right])  # [C, W]
    v_right = np.where(stops < n_points, spectra[:, right], v_left)
    fraction = (index[None, :] - (starts[:, None] - 1)) / (stops - starts + 1)[:, None]  # [W, L]
    line = v_left[:, :, None] + (v_right - v_left)[:, :, None] * fraction[None]  # [C, W, L]
    own_channel = np.eye(n_channels, dtype=bool)[:, None, :, None]  # [C, 1, C, 1]
    replace = own_channel & inside[None, :, None, :]  # [C, W, C, L]
    copies = np.where(replace, line[:, :, None, :].astype(np.float32), spectra[None, None])
    return copies.astype(np.float32), starts, stops


def window_average(drops: np.ndarray, starts: np.ndarray, stops: np.ndarray, n_points: int) -> np.ndarray:
    """Spread window values along the axis: each point gets the mean of the windows covering it.

    Args:
        drops: ``[..., W]`` one value per window.
        starts, stops: ``[W]`` the windows (from :func:`occluded_copies`).
        n_points: ``L``.

    Returns:
        ``[..., L]``.

    Example:
        >>> window_average(np.array([1.0, 3.0]), np.array([0, 1]), np.array([2, 3]), 3).tolist()
        [1.0, 2.0, 3.0]
    """
    index = np.arange(n_points)
    inside = (index >= starts[:, None]) & (index < stops[:, None])  # [W, L]
    return (drops @ inside) / np.maximum(inside.sum(axis=0), 1)
