"""MiniRocket's fixed features: biases from quantiles of training convolutions, proportions of positive values."""

import torch

from spectratorch.models.minirocket import MiniRocketNet, minirocket_dilations


def _spectra(n=64, channels=2, length=150, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, length, generator=generator).cumsum(-1) / 5


def test_features_are_proportions_spread_by_the_quantile_biases():
    x = _spectra()
    net = MiniRocketNet(2, 150, 0, 3, n_features=840).fit_data(x)
    features = net.transform(x)
    assert features.shape == (64, net.num_features) == (64, 84 * sum(net.features_per_kernel))
    assert features.min() >= 0 and features.max() <= 1
    # reason: biases are quantiles of training convolutions, so on the training data the proportions above them
    # average near one half, and no feature is constant for a random-walk input.
    assert 0.35 < float(features.mean()) < 0.65
    assert float((features.std(0) > 0).float().mean()) > 0.9
    standardised = net.forward_features(x)
    torch.testing.assert_close(standardised.mean(0), torch.zeros(net.num_features), atol=1e-4, rtol=0)


def test_forward_keeps_no_graph_of_the_responses_and_passes_rows_in_chunks():
    # reason: the proportions are step functions; with autograd a vote holding MiniRocket kept every response of a
    # saliency batch (gigabytes); in passes of a few rows, a large batch gives the same features as one pass.
    x = _spectra(n=40).requires_grad_(True)
    net = MiniRocketNet(2, 150, 0, 3, n_features=840).fit_data(x.detach())
    features = net.forward_features(x)
    assert not features.requires_grad and features.grad_fn is None
    logits = net(x)
    assert logits.requires_grad  # the head still trains
    (gradient,) = torch.autograd.grad(logits.sum(), x, allow_unused=True)
    assert gradient is None  # so the result sheet draws occlusion for it, not a zero gradient
    one_pass = (net._ppv(x.detach()) - net.feature_mean) / net.feature_scale
    torch.testing.assert_close(net._ppv_in_passes(x.detach(), batch_size=3), net._ppv(x.detach()), rtol=0, atol=0)
    torch.testing.assert_close(features, one_pass, rtol=0, atol=0)


def test_kernels_and_biases_follow_the_seed():
    x = _spectra()
    a, b = (MiniRocketNet(2, 150, 0, 3, n_features=840, seed=s).fit_data(x) for s in (0, 0))
    c = MiniRocketNet(2, 150, 0, 3, n_features=840, seed=1).fit_data(x)
    torch.testing.assert_close(a.transform(x), b.transform(x))
    assert not torch.equal(a.bias_0, c.bias_0)


def test_dilations_reach_the_axis_and_sum_to_the_features():
    dilations, counts = minirocket_dilations(150, 840)
    assert dilations[0] == 1 and max(dilations) * 8 <= 149 and sum(counts) == 10


class _Features(torch.nn.Module):
    """The PPV transform alone, so an export shows the features themselves (the head starts at zero)."""

    def __init__(self, net: MiniRocketNet):
        super().__init__()
        self.net = net

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        return self.net._ppv(spectra)


def test_onnx_transform_and_logits_equal_torch(tmp_path):
    import warnings

    import numpy as np
    import onnxruntime

    x = _spectra(n=40, channels=3, length=180)
    net = MiniRocketNet(3, 180, 0, 3, n_features=840).fit_data(x).eval()
    torch.nn.init.normal_(net.fc.weight, std=0.1)
    inputs = _spectra(n=7, channels=3, length=180, seed=3)
    for module, name in ((_Features(net), "features"), (net, "logits")):
        path = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reason: the TorchScript exporter says it is deprecated on every call
            torch.onnx.export(module, (x[:2],), str(path), dynamo=False, opset_version=17, input_names=["spectra"],
                              output_names=[name], dynamic_axes={"spectra": {0: "batch"}, name: {0: "batch"}})
        (got,) = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"spectra": inputs.numpy()})
        with torch.no_grad():
            expected = module(inputs).numpy()
        if name == "features":
            # reason: the same sums in another order may put a response within rounding of its bias on the other
            # side: at most a few features of the 7 x 840, by one position.
            assert got.shape == (7, net.num_features)
            for reference in (expected, net.transform(inputs, batch_size=3).numpy()):
                assert (np.abs(got - reference) > 1e-6).mean() <= 1e-3
                assert np.abs(got - reference).max() <= 1 / (180 - 8 * max(net.dilations)) + 1e-6
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
