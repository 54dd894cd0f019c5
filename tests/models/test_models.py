import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spectratorch.errors import ConfigError
from spectratorch.models import SpectralClassifier, build_classifier, create_model, list_models
from spectratorch.models._layers import BinPool1d

# reason: the defaults are full-size networks; these widths keep the suite to seconds on a CPU.
SMALL = {
    "VGG11": {"width": 0.125},
    "VGG16": {"width": 0.125},
    "ResNetV2": {"block_units": (1, 1), "width": 0.125},
    "MiniRocket": {"n_features": 336},
}
LAYOUTS = [(1, 100, 0), (3, 446, 2), (2, 16, 1)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _make_inputs(n, n_channels, length, n_tabular, seed=0):
    generator = torch.Generator().manual_seed(seed)
    spectra = torch.rand(n, n_channels, length, generator=generator) * 100.0
    tabular = torch.randn(n, n_tabular, generator=generator)
    return spectra, tabular


def _small_net(name, n_channels, length, n_tabular, n_classes=3):
    torch.manual_seed(0)
    return create_model(
        name, n_channels=n_channels, length=length, n_tabular=n_tabular, n_classes=n_classes, **SMALL.get(name, {})
    )


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize(("n_channels", "length", "n_tabular"), LAYOUTS)
def test_forward_backward(name, n_channels, length, n_tabular):
    net = _small_net(name, n_channels, length, n_tabular).train()
    spectra, tabular = _make_inputs(4, n_channels, length, n_tabular)
    logits = net(spectra, tabular if n_tabular else None)
    assert logits.shape == (4, 3)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    for key, parameter in net.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), key


@pytest.mark.parametrize("name", list_models())
def test_forward_is_head_of_features(name):
    net = _small_net(name, 3, 120, 2).eval()
    spectra, tabular = _make_inputs(5, 3, 120, 2)
    features = net.forward_features(spectra)
    assert features.dim() in (2, 3) and features.shape[0] == 5
    torch.testing.assert_close(net.forward_head(features, tabular), net(spectra, tabular))


@pytest.mark.parametrize("name", list_models())
def test_no_tabular_accepts_none_or_empty(name):
    net = _small_net(name, 2, 64, 0).eval()
    spectra, _ = _make_inputs(3, 2, 64, 0)
    torch.testing.assert_close(net(spectra, torch.zeros(3, 0)), net(spectra, None))


def test_tabular_features_change_the_logits():
    net = _small_net("TinyVGG", 2, 64, 2).eval()
    spectra, tabular = _make_inputs(3, 2, 64, 2)
    assert not torch.allclose(net(spectra, tabular), net(spectra, tabular + 1.0))


def test_missing_tabular_raises():
    net = _small_net("TinyVGG", 2, 64, 2)
    with pytest.raises(ConfigError, match="takes 2 tabular features"):
        net(torch.zeros(2, 2, 64), None)


@pytest.mark.parametrize(("length", "bins"), [(14, 4), (7, 3), (100, 1), (3, 5), (446, 7)])
def test_bin_pool_equals_adaptive_average_pool(length, bins):
    x = torch.randn(2, 3, length)
    torch.testing.assert_close(BinPool1d(length, bins)(x), F.adaptive_avg_pool1d(x, bins))


def test_vgg_without_batch_norm_and_global_pooling():
    net = create_model(
        "VGG11", n_channels=2, length=100, n_tabular=0, n_classes=2, width=0.125, batch_norm=False, pool_bins=1
    )
    assert not any(isinstance(module, torch.nn.BatchNorm1d) for module in net.modules())
    assert net(torch.rand(3, 2, 100)).shape == (3, 2)


def test_widths_scale_parameter_counts():
    def count(name, **kwargs):
        net = create_model(name, n_channels=2, length=446, n_tabular=0, n_classes=2, **kwargs)
        return sum(parameter.numel() for parameter in net.parameters())

    assert count("VGG11", width=0.125) < count("VGG11", width=0.25) < count("VGG16", width=0.25)
    assert count("ResNetV2", block_units=(1, 1, 1, 1), width=0.25) < count(
        "ResNetV2", block_units=(1, 1, 1, 1), width=0.25, wf=2
    )


def _fitted_classifier(name, n_tabular, transforms):
    torch.manual_seed(0)
    model = build_classifier(
        name,
        ["277", "380", "999"],
        length=446,
        n_tabular=n_tabular,
        n_classes=3,
        transforms=transforms,
        **SMALL.get(name, {}),
    )
    spectra, tabular = _make_inputs(16, 3, 446, n_tabular, seed=1)
    model.fit(spectra, tabular if n_tabular else None)
    return model.eval()


def _export(model: SpectralClassifier, path, dynamo=False):
    names = list(model.input_names)
    with warnings.catch_warnings():
        # reason: the TorchScript exporter is deprecated in torch >= 2.9 and says so on every call.
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                model,
                model.example_inputs(2),
                str(path),
                dynamo=True,
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=tuple({0: batch} for _ in names),
            )
        else:
            torch.onnx.export(
                model,
                model.example_inputs(2),
                str(path),
                dynamo=False,
                opset_version=17,
                input_names=names,
                output_names=["logits"],
                dynamic_axes={key: {0: "batch"} for key in [*names, "logits"]},
            )


def _check_onnx_parity(model, path, n_tabular):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_inputs()] == list(model.input_names)
    spectra, tabular = _make_inputs(5, 3, 446, n_tabular, seed=2)
    spectra = spectra * 1.1  # reason: partly outside the training range, which is not clipped
    feeds = {"spectra": spectra.numpy()}
    if n_tabular:
        feeds["tabular"] = tabular.numpy()
    (got,) = session.run(["logits"], feeds)
    with torch.no_grad():
        expected = model(spectra, tabular if n_tabular else None).numpy()
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize(("n_tabular", "transforms"), [(0, ("simulate", "sg1")), (2, ("snv", "sg2", "da"))])
def test_onnx_export_dynamic_batch_matches_torch(name, n_tabular, transforms, tmp_path):
    model = _fitted_classifier(name, n_tabular, transforms)
    path = tmp_path / f"{name}.onnx"
    _export(model, path)
    _check_onnx_parity(model, path, n_tabular)
    assert model.input_names == (("spectra", "tabular") if n_tabular else ("spectra",))


def test_onnx_dynamo_export_matches_torch(tmp_path):
    model = _fitted_classifier("TinyVGG", 2, ("simulate", "snv", "sg1"))
    path = tmp_path / "tiny.onnx"
    _export(model, path, dynamo=True)
    _check_onnx_parity(model, path, 2)


def test_build_classifier_passes_options_and_drops_none():
    model = build_classifier(
        "VGG11",
        ["277"],
        length=100,
        n_tabular=1,
        n_classes=4,
        transforms=["sg1", "mixup"],
        preprocess_kwargs={"sg_window": 5, "sg_order": None},
        width=0.125,
        dropout=None,
    )
    assert model.preprocess.transforms == ("sg1",)
    assert model.preprocess.sg1_weight.shape == (1, 1, 5)
    assert model.net.head.mlp[2].p == 0.3
    with pytest.raises(ConfigError, match="Registered models: "):
        build_classifier("VGG9", ["277"], length=100, n_tabular=0, n_classes=2)


def test_classifier_state_dict_round_trip(tmp_path):
    model = _fitted_classifier("TinyVGG", 2, ("snv",))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    other = build_classifier(
        "TinyVGG", ["277", "380", "999"], length=446, n_tabular=2, n_classes=3, transforms=("snv",)
    ).eval()
    other.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    spectra, tabular = _make_inputs(4, 3, 446, 2, seed=3)
    assert torch.equal(other(spectra, tabular), model(spectra, tabular))
