"""Architecture options declared with the builder: true to the networks, read by --arch-opt, carried by checkpoints."""

import inspect
import json

import pytest
import torch
from torch import nn

from spectratorch.cli import main
from spectratorch.models import registry
from spectratorch.models.ensemble import EnsembleNet
from spectratorch.models.hydra import HydraNet
from spectratorch.models.kernel import KernelRidgeNet
from spectratorch.models.lda import LDAClassifier
from spectratorch.models.linear import LinearClassifier
from spectratorch.models.minirocket import MiniRocketNet
from spectratorch.models.plsda import PLSDAClassifier
from spectratorch.models.resnetv2 import PreActResNet
from spectratorch.models.vgg import VGG
from spectratorch.options import Option

NETWORKS = {"VGG11": VGG, "VGG16": VGG, "TinyVGG": VGG, "ResNetV2": PreActResNet, "Linear": LinearClassifier,
            "MiniRocket": MiniRocketNet, "Hydra": HydraNet, "KernelRidge": KernelRidgeNet, "PLSDA": PLSDAClassifier,
            "LDA": LDAClassifier, "Ensemble": EnsembleNet}
_LAYOUT = ("cfg", "n_channels", "length", "n_tabular", "n_classes")


@pytest.mark.parametrize("arch", sorted(NETWORKS))
def test_declared_options_are_the_network_s_parameters_and_defaults(arch):
    declared = registry.model_option_specs(arch)
    parameters = {name: p.default for name, p in inspect.signature(NETWORKS[arch]).parameters.items()
                  if name not in _LAYOUT}
    assert list(declared) == list(parameters)
    for name, option in declared.items():
        default = list(parameters[name]) if isinstance(parameters[name], tuple) and option.type is list else \
            parameters[name]
        assert option.default == default, (arch, name)
        if option.default is not None:
            assert option.parse(option.format(option.default)) == option.default, (arch, name)


def test_every_registered_architecture_is_covered():
    assert set(registry.list_models()) == set(NETWORKS)


class DepthNet(nn.Module):
    """A stack of ``depth`` dense layers: an architecture with an option no other one has."""

    def __init__(self, n_channels: int, length: int, n_tabular: int, n_classes: int, depth: int = 1):
        super().__init__()
        width = n_channels * length + n_tabular
        self.body = nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth - 1)])
        self.head = nn.Linear(width, n_classes)

    def forward_features(self, spectra):
        return spectra.flatten(1)

    def forward_head(self, features, tabular=None):
        inputs = features if tabular is None or tabular.shape[1] == 0 else torch.cat([features, tabular], 1)
        return self.head(self.body(inputs))

    def forward(self, spectra, tabular=None):
        return self.forward_head(self.forward_features(spectra), tabular)


@pytest.fixture
def depth_net():
    registry.register_model(options=(Option("depth", int, 1, "dense layers", low=1, high=8),))(DepthNet)
    yield "DepthNet"
    registry._model_entrypoints.pop("DepthNet")


@pytest.mark.slow
def test_a_new_architecture_with_a_new_option_trains_and_its_checkpoint_keeps_it(depth_net, demo_file, tmp_path,
                                                                                  one_thread):
    from spectratorch.training.restore import load_module

    code = main(["train", "--data", str(demo_file), "--arch", depth_net, "--arch-opt", "depth=3", "--channels", "277",
                 "--max-epochs", "1", "--batch-size", "64", "--no-baseline", "--logger", "csv", "--accelerator",
                 "cpu", "--output-dir", str(tmp_path)])
    assert code == 0
    summary = json.loads(next(tmp_path.glob("DepthNet*.json")).read_text())
    assert summary["config"]["model"]["arch_opts"] == {"depth": 3}
    checkpoint = next(p for p in tmp_path.glob("DepthNet*.ckpt") if "last" not in p.name)
    module = load_module(checkpoint)
    assert module.hparams["arch_kwargs"]["depth"] == 3
    assert len(module.model.net.body) == 2


def test_bad_arch_opt_is_one_line_naming_the_options(depth_net, capsys):
    assert main(["train", "--arch", depth_net, "--arch-opt", "depht=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("spectratorch train: error: --arch-opt depht=3: DepthNet takes no option 'depht'; its options "
                   "are depth.")
    assert main(["train", "--arch", depth_net, "--arch-opt", "depth=9"]) == 2
    assert "DepthNet's depth must be an integer in [1, 8]" in capsys.readouterr().err


def test_create_model_refuses_an_undeclared_option():
    with pytest.raises(ValueError, match=r"Linear does not take \['width'\]; its options are \['dropout'\]"):
        registry.create_model("Linear", n_channels=1, length=10, n_tabular=0, n_classes=2, width=0.5)
