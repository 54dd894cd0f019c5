import dataclasses
import itertools

import pytest

from spectratorch import model_name, parse_model_name
from spectratorch.config import DataConfig, ModelConfig, RunConfig
from spectratorch.errors import ConfigError


def test_lab_example_exact():
    name = "ResNetV2 y=['OVA', 'OK'] c=('277', '380', '425') t=('da',) 0-20 s=42 eps=0.1"
    parts = parse_model_name(name)
    assert parts.arch == "ResNetV2" and parts.targets == ("OVA", "OK") and parts.channels == ("277", "380", "425")
    assert parts.transforms == ("da",) and (parts.split, parts.n_splits, parts.seed, parts.eps) == (0, 20, 42, 0.1)
    fields = dict(arch=parts.arch, targets=parts.targets, channels=parts.channels, transforms=parts.transforms,
                  current_split=parts.split, n_splits=parts.n_splits, seed=parts.seed, eps=parts.eps)
    assert model_name(fields) == name


ARCHS = ["VGG11", "ResNetV2"]
TARGETS = [("OVA", "OK"), ("AVA", "INsTYs"), ("OVA", "label", "b c"), ("AVA", "x]y")]
CHANNELS = [("277",), ("425", "277"), ("lspr", "nir", "a'b", "(c)", "d)e", "é", "1.5")]
TRANSFORMS = [(), ("da",), ("simulate", "snv", "mixup")]
NUMBERS = [(0, 5, 42, 0.1), (19, 20, -1, 0.0), (3, 7, 0, 1.0), ("ens", 5, 1, 0.123456789), (1, 3, 7, 1e-7),
           ("cv", 10, 42, 0.1)]


@pytest.mark.parametrize("arch,targets,channels,transforms,numbers",
                         list(itertools.product(ARCHS, TARGETS, CHANNELS, TRANSFORMS, NUMBERS)))
def test_round_trip(arch, targets, channels, transforms, numbers):
    split, n_splits, seed, eps = numbers
    fields = dict(arch=arch, targets=list(targets), channels=list(channels), transforms=list(transforms),
                  current_split=split, n_splits=n_splits, seed=seed, eps=eps)
    name = model_name(fields)
    parts = parse_model_name(name)
    assert (parts.arch, parts.targets, parts.channels, parts.transforms) == (arch, targets, channels, transforms)
    assert (parts.split, parts.n_splits, parts.seed, parts.eps) == (split, n_splits, seed, eps)
    assert model_name({**fields, **{"current_split": parts.split}}) == name
    # file names written by a run parse too
    assert parse_model_name(f"/some/dir/{name}_1.234E-01_0.9000_0.9100.ckpt") == parts
    assert parse_model_name(f"{name}.onnx") == parts


LAB = RunConfig(DataConfig(targets=("OVA", "OK"), channels=("277", "380", "425")))


def test_none_transforms_and_config():
    from spectratorch.defaults import resolve_defaults

    name = model_name(resolve_defaults(LAB, n_train=5000).name_fields())
    assert name == "VGG11 y=['OVA', 'OK'] c=('277', '380', '425') t=('da',) 0-5 s=42 eps=0.1"
    fields = {**LAB.name_fields(), "transforms": ()}
    assert " t=None " in model_name(fields)


def test_a_model_without_test_rows_is_named_all_not_fold_0():
    # the model to ship (--test-source none) and fold 0 of a cv into the same folder must not share their files
    final = dataclasses.replace(LAB, data=dataclasses.replace(LAB.data, test_source="none"))
    name = model_name(final.name_fields())
    assert " all-5 s=42 " in name and name != model_name(LAB.name_fields())
    assert parse_model_name(name).split == "all" and model_name(dataclasses.asdict(parse_model_name(name))) == name


@pytest.mark.parametrize("bad", ["", "VGG11", "VGG11 y=OVA c=('1',) t=None 0-5 s=1 eps=0.1",
                                 "VGG11 y=['OVA'] c=('1',) t=None x-5 s=1 eps=0.1"])
def test_not_a_name(bad):
    with pytest.raises(ConfigError, match="not a spectratorch model name"):
        parse_model_name(bad)


def test_auto_transforms_in_name():
    from spectratorch.defaults import resolve_defaults

    linear = ModelConfig(arch="Linear")
    generic = resolve_defaults(RunConfig(DataConfig(channels=("nir",), targets=("AVA", "label")), linear), n_train=100)
    assert " t=None " in model_name(generic.name_fields())
    data = DataConfig(channels=("nir",), targets=("AVA", "label"), transforms=("da",))
    chosen = resolve_defaults(RunConfig(data, linear), n_train=100)
    assert " t=('da',) " in model_name(chosen.name_fields())


def test_auto_arch_resolves_by_rule_only_on_the_labs_large_sets():
    from spectratorch.defaults import resolve_defaults

    config = resolve_defaults(LAB, n_train=5000)
    resolved = (config.model.arch, config.model.width, config.train.lr, config.train.weight_decay)
    assert resolved == ("VGG11", 0.25, 1e-3, 0)
    with pytest.raises(ConfigError, match="decided by inner cross-validation of the candidates"):
        resolve_defaults(RunConfig(DataConfig(channels=("nir",))), n_train=5000)
    linear = resolve_defaults(dataclasses.replace(LAB, model=ModelConfig(arch="Linear")), n_train=300)
    assert (linear.model.width, linear.train.lr, linear.train.weight_decay) == (None, 1e-3, 1e-3)
