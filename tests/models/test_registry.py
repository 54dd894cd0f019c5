import ast
from pathlib import Path

import pytest
import torch

from spectratorch.errors import ConfigError
from spectratorch.models import create_model, is_model, list_models, register_model, registry
from spectratorch.options import Option


def test_list_models_has_the_shipped_architectures():
    names = list_models()
    assert {"VGG11", "VGG16", "ResNetV2", "TinyVGG"} <= set(names)
    assert names == sorted(names)
    assert all(is_model(name) for name in names)
    assert not is_model("vgg11")


def test_unknown_name_lists_registered_names():
    with pytest.raises(ValueError, match="Unknown model 'VGG12'") as info:
        create_model("VGG12", n_channels=1, length=32, n_tabular=0, n_classes=2)
    assert isinstance(info.value, ConfigError)
    for name in list_models():
        assert name in str(info.value)


def test_duplicate_registration_raises_and_keeps_the_first():
    first = registry._model_entrypoints["TinyVGG"]

    def TinyVGG(n_channels, length, n_tabular, n_classes):
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="'TinyVGG' is already registered"):
        register_model(TinyVGG)
    assert registry._model_entrypoints["TinyVGG"] is first


def test_create_model_drops_none_kwargs(monkeypatch):
    seen = {}

    def CaptureNet(**kwargs):
        seen.update(kwargs)
        return torch.nn.Identity()

    options = {name: Option(name, float, 0.0, "") for name in ("width", "dropout", "batch_norm")}
    monkeypatch.setitem(registry._model_entrypoints, "CaptureNet", registry._Entry(CaptureNet, options, 1e-3, 0.0))
    create_model("CaptureNet", n_channels=2, length=32, width=None, dropout=0.1, batch_norm=False)
    assert seen == {"n_channels": 2, "length": 32, "dropout": 0.1, "batch_norm": False}


def test_none_kwargs_keep_architecture_defaults():
    torch.manual_seed(0)
    default = create_model("TinyVGG", n_channels=2, length=40, n_tabular=1, n_classes=3)
    torch.manual_seed(0)
    unset = create_model(
        "TinyVGG",
        n_channels=2,
        length=40,
        n_tabular=1,
        n_classes=3,
        width=None,
        dropout=None,
        batch_norm=None,
        pool_bins=None,
    )
    assert str(default) == str(unset)
    for (key, a), (_, b) in zip(default.state_dict().items(), unset.state_dict().items(), strict=True):
        assert torch.equal(a, b), key


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("VGG11", {"width": 0}, "'width' parameter of VGG"),
        ("VGG11", {"pool_bins": 0}, "'pool_bins' parameter of VGG"),
        ("VGG11", {"dropout": 1.0}, "'dropout' parameter"),
        ("ResNetV2", {"block_units": ()}, "'block_units' parameter of ResNetV2"),
        ("ResNetV2", {"wf": 1.5}, "'wf' parameter of ResNetV2"),
        ("TinyVGG", {"length": 0}, "'length' parameter of VGG"),
    ],
)
def test_bad_arch_arguments_raise_config_error(name, kwargs, match):
    arguments = {"n_channels": 1, "length": 32, "n_tabular": 0, "n_classes": 2, **kwargs}
    with pytest.raises(ConfigError, match=match):
        create_model(name, **arguments)


@pytest.mark.parametrize(("name", "option"), [("VGG11", "block_units"), ("ResNetV2", "batch_norm")])
def test_option_of_another_architecture_raises_config_error(name, option):
    with pytest.raises(ConfigError, match=rf"{name} does not take \['{option}'\]; its options are \["):
        create_model(name, n_channels=1, length=32, n_tabular=0, n_classes=2, **{option: 1})


def test_models_package_imports_neither_data_nor_training():
    package = Path(registry.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert not module.startswith(("spectratorch.data", "spectratorch.training")), (path.name, module)
