"""Which wavelengths drove one prediction: occlusion sensitivity, computed with onnxruntime (the page has no torch).

A window of ``window`` points slides along each channel by ``stride``; in each copy of the sample one window of one
channel is replaced by the straight line between the points just outside it (its local shape is removed, its level
kept). The sensitivity of a window is how much the predicted class's probability drops without it: positive where
the shape there argued for the class, negative where it argued against. All copies and the sample itself go
through the model in one batched session run.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spectratorch.inference import Predictor
from spectratorch.report.occlusion import default_window, occluded_copies, window_average

__all__ = ["Occlusion", "occluded_copies", "occlusion_sensitivity", "default_window"]


@dataclasses.dataclass(frozen=True)
class Occlusion:
    """The occlusion sensitivity of one sample for one class.

    Attributes:
        class_index: the class whose probability was followed.
        probability: its probability for the untouched sample.
        starts: ``[W]`` first point of each window; ``stops``: ``[W]`` one past its last point.
        drops: ``[C, W]`` probability lost when window ``w`` of channel ``c`` is occluded.
        per_point: ``[C, L]`` the mean drop of the windows covering each point (for plotting along the axis).
    """

    class_index: int
    probability: float
    starts: np.ndarray
    stops: np.ndarray
    drops: np.ndarray
    per_point: np.ndarray

    def top(self, axis: np.ndarray, channels, n: int = 3) -> list[tuple[str, float, float, float]]:
        """The ``n`` windows whose occlusion lowers the class's probability most.

        Returns:
            ``[(channel, first x, last x, drop), ...]``, largest drop first (only drops above zero).
        """
        order = np.argsort(-self.drops, axis=None, kind="stable")[:n]
        rows = []
        for flat in order:
            c, w = np.unravel_index(flat, self.drops.shape)
            if self.drops[c, w] > 0:
                rows.append((str(channels[c]), float(axis[self.starts[w]]), float(axis[self.stops[w] - 1]),
                             float(self.drops[c, w])))
        return rows


def occlusion_sensitivity(predictor: Predictor, spectra: np.ndarray, tabular: np.ndarray | None = None,
                          class_index: int | None = None, window: int | None = None,
                          stride: int | None = None) -> Occlusion:
    """Occlusion sensitivity of one sample, all copies in one onnxruntime run.

    Args:
        predictor: the model.
        spectra: ``[C, L]`` the sample, on the model's channels and axis.
        tabular: ``[T]`` its tabular values (``None`` when the model takes none).
        class_index: the class to follow; ``None`` = the most probable one.
        window, stride: in points; ``None`` = :func:`default_window`.

    Returns:
        The :class:`Occlusion`.
    """
    spectra = np.asarray(spectra, dtype=np.float32)
    n_channels, n_points = spectra.shape
    default = default_window(n_points)
    window = window or default[0]
    stride = stride or (default[1] if window == default[0] else max(1, window // 2))
    copies, starts, stops = occluded_copies(spectra, window, stride)
    batch = np.concatenate([spectra[None], copies.reshape(-1, n_channels, n_points)])
    rows = None
    if predictor.tabular_columns:
        rows = np.repeat(np.asarray(tabular, dtype=np.float32).reshape(1, -1), len(batch), axis=0)
    probabilities = predictor.predict_arrays(batch, rows, batch_size=len(batch))
    if class_index is None:
        class_index = int(np.argmax(probabilities[0]))
    base = float(probabilities[0, class_index])
    drops = (base - probabilities[1:, class_index]).reshape(n_channels, len(starts))
    per_point = window_average(drops, starts, stops, n_points)
    return Occlusion(class_index, base, starts, stops, drops.astype(np.float32), per_point.astype(np.float32))
