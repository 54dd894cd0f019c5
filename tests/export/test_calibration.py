"""Temperature scaling and the expected calibration error, against hand-computed values."""

import numpy as np
import pytest

from spectratorch.errors import ConfigError
from spectratorch.export.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)


def _calibrated_logits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # reason: x ~ N(+-1, 1) given the class, so the true log-odds are exactly 2x; these logits are calibrated.
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1, n)
    return np.stack([np.zeros(n), 2 * x], axis=1), y


def test_ece_matches_a_hand_computed_example():
    probs = np.array([[0.85, 0.15], [0.75, 0.25], [0.35, 0.65], [0.55, 0.45], [0.05, 0.95]])
    y = np.array([0, 1, 1, 0, 0])
    # 5 bins of width 0.2; confidences 0.85 (right), 0.75 (wrong), 0.65 (right), 0.55 (right), 0.95 (wrong).
    # bin (0.8, 1]: 0.85 right, 0.95 wrong -> |1/2 - 0.9| * 2/5 = 0.16
    # bin (0.6, 0.8]: 0.75 wrong, 0.65 right -> |1/2 - 0.7| * 2/5 = 0.08
    # bin (0.4, 0.6]: 0.55 right -> |1 - 0.55| * 1/5 = 0.09
    assert expected_calibration_error(probs, y, n_bins=5) == pytest.approx(0.16 + 0.08 + 0.09)
    # one bin: |accuracy 3/5 - mean confidence 0.75|
    assert expected_calibration_error(probs, y, n_bins=1) == pytest.approx(abs(0.6 - 0.75))


def test_ece_is_zero_when_confident_and_right():
    probs = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error(probs, np.array([0, 1, 2, 1])) == 0.0


def test_temperature_undoes_over_confidence_and_lowers_nll():
    logits, y = _calibrated_logits(4000, seed=1)
    over = 4.0 * logits
    report = calibration_report(over, y)
    assert 3.0 < report["temperature"] < 5.3
    assert report["nll_after"] < report["nll_before"] - 0.1
    assert report["ece_after"] < report["ece_before"]
    assert negative_log_likelihood(over, y, report["temperature"]) == pytest.approx(report["nll_after"])


def test_temperature_sharpens_under_confident_logits():
    logits, y = _calibrated_logits(4000, seed=2)
    assert fit_temperature(logits / 3.0, y) < 0.5


@pytest.mark.parametrize("seed", range(5))
def test_temperature_never_raises_nll(seed):
    logits, y = _calibrated_logits(300, seed)
    rng = np.random.default_rng(seed)
    logits = logits * rng.uniform(0.2, 6.0)
    t = fit_temperature(logits, y)
    assert negative_log_likelihood(logits, y, t) <= negative_log_likelihood(logits, y) + 1e-12


def test_softmax_with_temperature_keeps_the_ranking():
    logits = np.array([[1.0, 3.0, 2.0]])
    for t in (0.1, 1.0, 10.0):
        assert softmax(logits, t).argmax() == 1
        assert softmax(logits, t).sum() == pytest.approx(1.0)


def test_bad_shapes_raise():
    with pytest.raises(ConfigError, match="logits"):
        fit_temperature(np.zeros((3, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ConfigError, match="labels must be in"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ConfigError, match="probs"):
        expected_calibration_error(np.zeros(3), np.zeros(3, dtype=int))


def test_a_temperature_at_a_bound_says_why(caplog):
    y = np.array([0, 1, 0, 1, 0, 1])
    separated = np.stack([1.0 - y, y.astype(float)], axis=1)
    with caplog.at_level("WARNING", logger="spectratorch.export.calibration"):
        assert fit_temperature(separated, y) == pytest.approx(0.05, rel=1e-2)
    assert "lower bound of its search: 6 of the 6 rows it is fitted on are all classified right" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="spectratorch.export.calibration"):
        assert fit_temperature(-separated, y) == pytest.approx(20, rel=1e-2)
    assert "upper bound of its search: 0 of the 6 rows" in caplog.text and "close to uniform" in caplog.text
    assert "mean top probability is 0.51" in caplog.text  # reason: 1 / (1 + e^(-1/20)): close to uniform indeed
    caplog.clear()
    # rows all right with logits far apart: Platt's targets soften them to the bound, and they stay sharp there
    with caplog.at_level("WARNING", logger="spectratorch.export.calibration"):
        assert fit_temperature(1e5 * separated, y, platt=True) == pytest.approx(1e3, rel=1e-2)
    assert "upper bound of its search: 6 of the 6 rows it is fitted on are all classified right" in caplog.text
    assert "close to uniform" not in caplog.text and "mean top probability is 1.000" in caplog.text


def test_logits_that_no_temperature_changes_keep_one_without_a_warning(caplog):
    # every class the same logit: any T gives the same NLL, so the search ends at a bound that is no better than 1
    with caplog.at_level("WARNING", logger="spectratorch.export.calibration"):
        assert fit_temperature(np.full((6, 3), 2.0), np.array([0, 1, 2, 0, 1, 2])) == 1.0
    assert caplog.text == ""


def test_platt_targets_stop_the_temperature_where_rows_all_right_would_drive_it_to_its_bound():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [10, 20, 30])
    # every row right, with margins of 2 to 20: the labels alone want probabilities of 1
    logits = np.eye(3)[y] * rng.uniform(2, 20, (60, 1))
    assert fit_temperature(logits, y) < 0.06
    t = fit_temperature(logits, y, platt=True)
    p = softmax(logits, t)[np.arange(60), y]
    # the rows' probability of their class stays below what the targets give it (the large margins saturate, the
    # small ones stay low: 0.89 on average here), not at 1
    target = 1 - 1 / (np.bincount(y)[y] + 2)
    assert 1.0 < t < 1e3 and p.max() < 1 - 1e-3 and 0.8 < p.mean() < target.mean()
