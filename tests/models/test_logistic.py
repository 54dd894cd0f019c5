"""The closed-form start of the linear heads: scikit-learn's logistic regression as torch weights."""

import numpy as np
import pytest
import torch

from spectratorch.models.linear import LinearClassifier
from spectratorch.models.logistic import fit_logistic, logistic_as_linear
from spectratorch.models.minirocket import MiniRocketNet


def _data(n_classes: int, n: int = 240, features: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, features))
    y = np.arange(n) % n_classes
    # features on very different scales, as raw spectra points and tabular values are
    x = (centres[y] + rng.normal(size=(n, features))) * np.logspace(-2, 2, features) + 50
    return x, y


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_torch_weights_give_the_pipelines_probabilities(n_classes):
    x, y = _data(n_classes)
    pipeline, c = fit_logistic(x, y, seed=0)
    assert c in np.logspace(-3, 3, 7)
    weight, bias = logistic_as_linear(pipeline, n_classes, x)
    logits = torch.from_numpy(x.astype(np.float32)) @ torch.from_numpy(weight).T + torch.from_numpy(bias)
    np.testing.assert_allclose(logits.softmax(1).numpy(), pipeline.predict_proba(x), atol=2e-4)


def test_a_class_absent_from_the_fit_is_never_predicted():
    x, y = _data(3)
    keep = y != 1
    pipeline, _ = fit_logistic(x[keep], y[keep], seed=0)
    weight, bias = logistic_as_linear(pipeline, 3, x[keep])
    assert not weight[1].any()
    logits = x.astype(np.float64) @ weight.T + bias
    assert (logits[:, 1] < logits[:, [0, 2]].max(1) - 20).all()


def test_linear_starts_from_the_logistic_regression_and_without_labels_from_zero():
    x, y = _data(3, features=40)
    spectra = torch.from_numpy(x.astype(np.float32)).view(len(x), 2, 20)
    net = LinearClassifier(2, 20, 0, 3)
    net.fit_data(spectra)  # no labels: the zero start stays
    assert not net.fc.weight.any()
    net.fit_data(spectra, None, torch.from_numpy(y))
    pipeline, _ = fit_logistic(x, y, seed=0)
    predicted = net(spectra).argmax(1).numpy()
    assert (predicted == pipeline.predict(x)).mean() > 0.99 and (predicted == y).mean() > 0.9


def test_minirocket_head_starts_from_the_logistic_regression_of_its_features():
    torch.manual_seed(0)
    n = 90
    y = torch.arange(n) % 3
    grid = torch.linspace(0, 1, 150)
    # three classes told apart by where a peak is
    spectra = torch.exp(-((grid - 0.3 - 0.2 * y[:, None].float()) ** 2) / 0.002)[:, None]
    spectra = spectra + 0.05 * torch.randn(n, 1, 150)
    net = MiniRocketNet(1, 150, 0, 3, n_features=840).fit_data(spectra)
    assert not net.fc.weight.any()
    net = MiniRocketNet(1, 150, 0, 3, n_features=840).fit_data(spectra, None, y)
    assert net.fc.weight.abs().sum() > 0
    assert (net(spectra).argmax(1) == y).float().mean() == 1.0
