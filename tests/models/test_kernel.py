"""KernelRidge: the closed-form kernel ridge equals scikit-learn's, its leave-one-out shortcut the brute force, ONNX."""

import numpy as np
import pytest
import torch

from spectratorch.models import build_classifier, create_model
from spectratorch.models.closed_form import (
    KERNEL_ALPHAS,
    kernel_gammas,
    kernel_ridge_head,
    kernel_ridge_loo,
    squared_distances,
)
from tests.conftest import spectra_like

pytestmark = pytest.mark.usefixtures("one_thread")


def _spectra_like(n=60, n_features=120, n_classes=3, seed=0):
    return spectra_like(n, n_features, n_classes, seed, bump=lambda y: 0.3 * y ** 2)


def _reference(x, y, x_new, n_classes, gamma, alpha):
    """scikit-learn: StandardScaler, rbf_kernel, KernelCenterer, KernelRidge (precomputed), plus the target mean."""
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.metrics.pairwise import rbf_kernel
    from sklearn.preprocessing import KernelCenterer, StandardScaler

    scaler = StandardScaler().fit(x)
    z, z_new = scaler.transform(x), scaler.transform(x_new)
    targets = 2.0 * np.eye(n_classes)[y] - 1.0
    centerer = KernelCenterer().fit(rbf_kernel(z, z, gamma=gamma))
    model = KernelRidge(alpha=alpha, kernel="precomputed").fit(centerer.transform(rbf_kernel(z, z, gamma=gamma)),
                                                               targets - targets.mean(0))
    return model.predict(centerer.transform(rbf_kernel(z_new, z, gamma=gamma))) + targets.mean(0)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("alpha", [1e-3, 0.1, 10.0])
def test_head_is_scikit_learns_kernel_ridge(n_classes, alpha):
    x, y, x_new = _spectra_like(n_classes=n_classes)
    mean, scale = x.mean(0), x.std(0)
    z, z_new = (x - mean) / scale, (x_new - mean) / scale
    gamma = kernel_gammas(squared_distances(z, z))[3]
    (weight, bias), chosen = kernel_ridge_head(np.exp(-gamma * squared_distances(z, z)), y, n_classes, alphas=[alpha])
    assert chosen == alpha
    ours = np.exp(-gamma * squared_distances(z_new, z)) @ weight.T + bias
    np.testing.assert_allclose(ours, _reference(x, y, x_new, n_classes, gamma, alpha), atol=1e-5)


def test_the_network_predicts_like_scikit_learn():
    x, y, x_new = _spectra_like()
    net = create_model("KernelRidge", n_channels=1, length=x.shape[1], n_tabular=0, n_classes=3).double()
    net.fit_data(torch.from_numpy(x)[:, None], None, torch.from_numpy(y))
    assert net.n_support == 60
    z = net.support.numpy()
    _, alpha = kernel_ridge_head(np.exp(-float(net.gamma) * squared_distances(z, z)), y, 3)
    with torch.no_grad():
        ours = net(torch.from_numpy(x_new)[:, None]).numpy()
    np.testing.assert_allclose(ours, _reference(x, y, x_new, 3, float(net.gamma), alpha), atol=1e-5)
    assert (net(torch.from_numpy(x)[:, None]).argmax(1).numpy() == y).mean() > 0.8


def test_leave_one_out_shortcut_is_the_brute_force():
    x, y, _ = _spectra_like(n=30, n_features=40)
    z = (x - x.mean(0)) / x.std(0)
    gamma = kernel_gammas(squared_distances(z, z))[2]
    kernel = np.exp(-gamma * squared_distances(z, z))
    targets = 2.0 * np.eye(3)[y] - 1.0
    alphas = KERNEL_ALPHAS[::3]
    shortcut = kernel_ridge_loo(kernel, targets, alphas)
    for alpha, fast in zip(alphas, shortcut):
        errors = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            (weight, bias), _ = kernel_ridge_head(kernel[np.ix_(keep, keep)], y[keep], 3, alphas=[alpha])
            errors.append(targets[i] - (kernel[i, keep] @ weight.T + bias))
        np.testing.assert_allclose(fast, np.mean(np.square(errors)), rtol=1e-6)
    (_, _), chosen = kernel_ridge_head(kernel, y, 3, alphas=alphas)
    assert chosen == alphas[int(np.argmin(shortcut))]


def test_support_size_travels_in_the_options_and_onnx_matches(tmp_path):
    import onnx
    import onnxruntime

    from spectratorch.export.onnx import _Probabilities, _trace

    x, y, _ = _spectra_like(n=45, n_features=64)
    spectra = torch.from_numpy(np.stack([x, x[:, ::-1].copy()], 1) * 50 + 100).float()
    tabular = torch.rand(45, 1)
    model = build_classifier("KernelRidge", ["a", "b"], length=64, n_tabular=1, n_classes=3, n_support=45)
    model.fit(spectra, tabular, torch.from_numpy(y))
    rebuilt = build_classifier("KernelRidge", ["a", "b"], length=64, n_tabular=1, n_classes=3, n_support=45)
    rebuilt.load_state_dict(model.state_dict())
    model.eval()
    new = spectra[:9] + torch.randn(9, 2, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(new, tabular[:9]), model(new, tabular[:9]))
        expected = torch.softmax(model(new, tabular[:9]), dim=1).numpy()
    assert (model(spectra, tabular).argmax(1).numpy() == y).mean() > 0.9
    proto = _trace(_Probabilities(model, 1.0), model.example_inputs(2), ["data_spectra", "data_tabular"])
    onnx.checker.check_model(proto)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"data_spectra": new.numpy(), "data_tabular": tabular[:9].numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_checkpoint_with_another_support_size_loads():
    x, y, x_new = _spectra_like(n=33, n_features=50)
    fitted = create_model("KernelRidge", n_channels=1, length=50, n_tabular=0, n_classes=3)
    fitted.fit_data(torch.from_numpy(x).float()[:, None], None, torch.from_numpy(y))
    fresh = create_model("KernelRidge", n_channels=1, length=50, n_tabular=0, n_classes=3)
    assert fresh.n_support != 33
    fresh.load_state_dict(fitted.state_dict())
    new = torch.from_numpy(x_new).float()[:, None]
    with torch.no_grad():
        torch.testing.assert_close(fresh(new), fitted(new), rtol=0, atol=0)
