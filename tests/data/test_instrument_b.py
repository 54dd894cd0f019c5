"""Instrument B: the same samples seen by the lab's next fluorimeter (blind regions, shifted axis, more noise)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectratorch.data import synthetic
from spectratorch.data.synthetic import AXIS_EMISSION, BLIND_POINTS, EXCITATIONS, make_dataset, make_demo_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pair():
    return make_dataset(600, seed=4, instrument="A"), make_dataset(600, seed=4, instrument="B")


def _channel(df: pd.DataFrame, channel: str) -> np.ndarray:
    return df[[f"{channel}_{x}" for x in AXIS_EMISSION]].to_numpy(np.float64)


def test_blind_points_are_simulates():
    from spectratorch.models.preprocess import SIMULATE_POINTS

    assert BLIND_POINTS == SIMULATE_POINTS
    assert synthetic.INSTRUMENTS["B"].blind_points == tuple(BLIND_POINTS[c] for c in EXCITATIONS)
    assert synthetic.INSTRUMENTS["A"].blind_points == (0, 0, 0)


def test_same_samples_other_instrument(pair):
    a, b = pair
    for column in ("greffon_defaut_severite", "greffon_defaut_type", "mesure_date", "sequence"):
        assert (a[column].to_numpy() == b[column].to_numpy()).all(), column
    assert set(b["instrument_id"]) == {"FLUO-B01", "FLUO-B02"}
    assert list(a.columns) == list(b.columns)


def test_blind_regions_read_dark_noise(pair):
    a, b = pair
    spec = synthetic.INSTRUMENTS["B"]
    normal = (a["integration_oob"] == 0).to_numpy()
    for channel, points in BLIND_POINTS.items():
        blind = _channel(b, channel)[normal, :points]
        assert abs(blind.mean()) < 2.0, channel
        assert blind.std() == pytest.approx(spec.read_noise, rel=0.15), channel
    # reason: instrument A sees the protein band there; B must not.
    assert _channel(a, "277")[normal, :45].mean() > 50 * abs(_channel(b, "277")[normal, :45].mean())


def test_axis_is_shifted_and_stretched():
    seen = synthetic._seen_axis(synthetic.INSTRUMENTS["B"])
    assert synthetic._seen_axis(synthetic.INSTRUMENTS["A"]) is AXIS_EMISSION
    center = (AXIS_EMISSION[0] + AXIS_EMISSION[-1]) / 2
    assert np.interp(center, AXIS_EMISSION, seen) == pytest.approx(center + 2.0)
    assert seen[-1] - seen[0] == pytest.approx(1.012 * (AXIS_EMISSION[-1] - AXIS_EMISSION[0]))


def test_band_moves_to_the_left(pair):
    a, b = pair
    # reason: B's point x sees x + 1.7 nm near 495 nm, and its response falls to the red, so the 425 band shows
    # 2 to 3 points earlier (a shift of a left by `lag` points matches b).
    lo, hi = 480 - 295, 520 - 295
    window = slice(lo - 30, hi + 30)
    mean_a, mean_b = _channel(a, "425")[:, window].mean(0), _channel(b, "425")[:, window].mean(0)
    mean_a, mean_b = mean_a / mean_a.max(), mean_b / mean_b.max()
    lags = range(-6, 7)
    errors = [np.square(np.roll(mean_a, -lag)[10:-10] - mean_b[10:-10]).sum() for lag in lags]
    assert list(lags)[int(np.argmin(errors))] in (1, 2, 3)


def test_more_noise_than_a(pair):
    a, b = pair
    # reason: the read noise shows below the excitation, where neither instrument has signal (380: 295-330 nm in A).
    assert _channel(b, "380")[:, :35].std() > 2 * _channel(a, "380")[:, :35].std()


def test_clean_removes_exactly_the_artefacts():
    cleaned, removed = make_demo_dataset(1000, seed=0, instrument="B")
    assert removed == {"oob": 15, "saturation": 30, "integral": 25}
    assert len(cleaned) == 930


def test_make_dataset_cli_instrument_b(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "b.parquet"
    done = subprocess.run([sys.executable, "-m", "spectratorch.cli", "make-dataset", "--instrument", "B",
                           "--samples", "300", "-o", str(out)], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["rows"] == len(pd.read_parquet(out))
    assert pd.read_parquet(out)["instrument_id"].str.startswith("FLUO-B").all()
    bad = subprocess.run([sys.executable, "-m", "spectratorch.cli", "make-dataset", "--instrument", "C",
                          "-o", str(tmp_path / "c.pkl")], capture_output=True, text=True, env=env, timeout=300,
                         check=False)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "invalid choice: 'C' (choose from 'A', 'B')" in bad.stderr
