"""Occlusion sensitivity: the copies, one batched run, and that it points at the wavelengths a model reads."""

from __future__ import annotations

import numpy as np
import pytest

from spectratorch.app.occlusion import occluded_copies, occlusion_sensitivity
from spectratorch.data.schema import load_table
from spectratorch.inference import Predictor

from .conftest import EXAMPLE, linear_model


def test_copies_replace_one_window_of_one_channel_by_a_line():
    rng = np.random.default_rng(0)
    spectra = rng.random((3, 40)).astype(np.float32)
    copies, starts, stops = occluded_copies(spectra, window=6, stride=3)
    assert copies.shape == (3, len(starts), 3, 40)
    assert starts[0] == 0 and stops[-1] == 40 and (np.diff(starts) == 3).all()
    for c in range(3):
        for w, (start, stop) in enumerate(zip(starts, stops)):
            changed = copies[c, w] != spectra
            assert not changed[np.arange(3) != c].any()  # the other channels are untouched
            assert not changed[c, :start].any() and not changed[c, stop:].any()
            left = spectra[c, start - 1] if start > 0 else spectra[c, stop]
            right = spectra[c, stop] if stop < 40 else left
            xs = np.arange(start - 1, stop + 1)
            expected = np.interp(np.arange(start, stop), [xs[0], xs[-1]], [left, right])
            np.testing.assert_allclose(copies[c, w, c, start:stop], expected, rtol=1e-6)


def test_it_points_at_the_only_points_the_model_reads(tmp_path):
    predictor = Predictor(linear_model(tmp_path / "linear.onnx", n_points=64, hot=slice(20, 30), weight=0.1))
    points = np.arange(64)
    x = (1 + 2 * np.exp(-((points - 25) ** 2) / (2 * 1.5**2)))[None].astype(np.float32)  # a peak where it reads
    result = occlusion_sensitivity(predictor, x, window=8, stride=4)
    assert predictor.labels[result.class_index] == "bump" and 0.6 < result.probability < 0.99
    touches = (result.starts < 30) & (result.stops > 20)
    np.testing.assert_allclose(result.drops[0, ~touches], 0, atol=1e-6)  # off the read points: no effect
    peak = np.flatnonzero((result.starts <= 25) & (result.stops > 25))
    assert (result.drops[0, peak] > 0.02).all()  # flattening the peak removes the evidence
    channel, lo, hi, drop = result.top(predictor.axis, predictor.channels, n=1)[0]
    assert channel == "nir" and lo <= 1025 <= hi and drop == pytest.approx(float(result.drops.max()))
    np.testing.assert_allclose(result.per_point[0, :12], 0, atol=1e-6)


def test_one_session_run_gives_the_copies_one_by_one_answer(demo_file):
    predictor = Predictor(EXAMPLE)
    table = load_table(demo_file, channels=predictor.channels, tabular=predictor.tabular_columns)
    calls = []
    run = predictor.session.run

    def _counting(*args, **kwargs):
        calls.append(args[1]["data_spectra"].shape[0])
        return run(*args, **kwargs)

    predictor.session.run = _counting
    result = occlusion_sensitivity(predictor, table.spectra[0], table.tabular[0])
    n_windows = len(result.starts)
    assert calls == [1 + 2 * n_windows]  # the sample and every occluded copy in one batched run
    predictor.session.run = run
    copies, _, _ = occluded_copies(table.spectra[0], result.stops[0] - result.starts[0], result.starts[1])
    one_by_one = np.array([predictor.predict_arrays(copy[None], table.tabular[:1])[0, result.class_index]
                           for copy in copies.reshape(-1, *table.spectra.shape[1:])])
    base = predictor.predict_arrays(table.spectra[:1], table.tabular[:1])[0, result.class_index]
    np.testing.assert_allclose(result.drops.ravel(), base - one_by_one, atol=2e-6)
    assert result.probability == pytest.approx(float(base), abs=1e-6)
