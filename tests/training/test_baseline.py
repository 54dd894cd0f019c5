"""The linear baselines every run reports: fitted on the network's inputs, scored on the same rows."""

import numpy as np
import pytest
import torch

from spectratorch.models.preprocess import Preprocess
from spectratorch.training.baseline import _PLSDA, compare_with_baseline, fit_baselines, preprocessed_features


def _bands(n, seed=0, n_classes=3, length=60):
    """Classes told apart by the position of one band, under noise: linear models do well."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = np.arange(length)
    centre = 20 + 6 * y + rng.normal(0, 1, n)
    spectra = np.exp(-0.5 * ((x - centre[:, None]) / 4) ** 2) + rng.normal(0, 0.05, (n, length))
    return spectra.astype(np.float32), y


def test_baselines_learn_a_linear_problem_and_name_every_metric():
    x, y = _bands(600)
    out = fit_baselines((x[:400], y[:400]), {"val": (x[400:500], y[400:500]), "test": (x[500:], y[500:])}, 3)
    for name in ("logistic_regression", "pls_da"):
        assert set(out[name]["test"]) == {"accuracy", "f1", "balanced_accuracy", "auroc"}
        assert out[name]["test"]["accuracy"] > 0.85, out[name]
        assert out[name]["n_train"] == 400
    assert out["logistic_regression"]["test"]["auroc"] > 0.9
    assert out["pls_da"]["test"]["auroc"] is None
    assert 1 <= out["pls_da"]["n_components"] <= 20


def test_baseline_subsamples_large_training_sets_stratified():
    x, y = _bands(900)
    out = fit_baselines((x, y), {"test": (x[:50], y[:50])}, 3, max_train=300)
    assert out["logistic_regression"]["n_train"] == 300 == out["pls_da"]["n_train"]


def test_pls_counts_from_one_fit_equal_separate_fits():
    x, y = _bands(300, seed=1)
    plsda = _PLSDA(3, seed=0)
    full = plsda._fit_pls(x, y, 8)
    each = plsda._predict_each_count(full, x[:40])
    for k in (1, 3, 8):
        np.testing.assert_allclose(each[k - 1], plsda._fit_pls(x, y, k).predict(x[:40]), atol=1e-4)


def test_a_class_missing_from_training_still_scores():
    x, y = _bands(300)
    train = y != 2
    out = fit_baselines((x[train], y[train]), {"test": (x, y)}, 3)
    assert out["logistic_regression"]["test"]["accuracy"] < 0.8  # class 2 is never predicted
    assert out["logistic_regression"]["test"]["auroc"] is not None


def test_features_are_the_networks_inputs():
    spectra, tabular = torch.rand(50, 2, 30) * 100, torch.rand(50, 3)
    pre = Preprocess(["a", "b"], 30, 3, transforms=("snv",)).fit(spectra, tabular)
    features = preprocessed_features(pre, spectra, tabular, batch_size=16)
    s, t = pre(spectra, tabular)
    assert features.shape == (50, 63)
    np.testing.assert_allclose(features, torch.cat([s.flatten(1), t], 1).numpy(), rtol=1e-6)


@pytest.mark.parametrize("network, worse", [(0.9, False), (0.8, True)])
def test_compare_says_plainly_when_the_network_is_worse(network, worse):
    baseline = {"logistic_regression": {"val": {"accuracy": 0.85}}, "pls_da": {"val": {"accuracy": 0.82}}}
    check = compare_with_baseline({"accuracy": network}, baseline, "accuracy")
    assert check["network_is_worse"] is worse and check["best_baseline"] == "logistic_regression"
    assert ("WORSE than" in check["message"]) is worse
    assert compare_with_baseline({"accuracy": None}, baseline, "accuracy") is None
