"""The table of transforms: adding one is one entry and its function; everything else reads the table."""

import pytest
import torch

from spectratorch.cli import build_parser, config_from_args
from spectratorch.config import DataConfig
from spectratorch.contract import differences, inference_transforms
from spectratorch.errors import ConfigError
from spectratorch.transforms import (
    TRANSFORM_TABLE,
    Transform,
    default_transforms,
    in_model,
    option_readers,
    preprocess_options,
    train_only,
    transform_options,
)


def _negate(pre, name, spectra):
    return -spectra


def _double(config, spectra, tabular, target):
    return 2 * spectra, tabular, target


@pytest.fixture
def negate(monkeypatch):
    """A model transform added as one entry (its function above)."""
    monkeypatch.setitem(TRANSFORM_TABLE, "negate", Transform("negate", "model", _negate, "minus the spectrum"))


@pytest.fixture
def double(monkeypatch):
    """A train-only transform added as one entry (its function above)."""
    monkeypatch.setitem(TRANSFORM_TABLE, "double", Transform("double", "data", _double, "twice the spectrum"))


def test_the_table_holds_every_transform_once():
    assert list(TRANSFORM_TABLE) == ["da", "mixup", "simulate", "snv", "sg1", "sg2", "msc", "emsc", "als"]
    assert train_only() == ("da", "mixup")
    assert in_model() == ("simulate", "snv", "sg1", "sg2", "msc", "emsc", "als")
    assert option_readers() == {"sg_window": ("sg1", "sg2"), "sg_order": ("sg1", "sg2"), "emsc_order": ("emsc",),
                                "als_lambda": ("als",), "als_p": ("als",)}
    assert default_transforms(("277", "380", "425")) == ("da",) and default_transforms(("nir",)) == ()


def test_every_option_is_a_flag_and_a_field_with_the_table_s_default():
    config = config_from_args(build_parser().parse_args(["train"]))
    for name, option in transform_options().items():
        assert getattr(config.data, name) == getattr(DataConfig(), name) == option.default, name
        changed = option.default * 2 + (1 if option.type is int else 0.5)
        if name == "als_p":
            changed = 0.25
        parsed = config_from_args(build_parser().parse_args(["train", option.flag, str(changed)]))
        assert getattr(parsed.data, name) == changed
    assert preprocess_options(DataConfig(sg_window=7)) == {"sg_window": 7, "sg_order": 2, "emsc_order": 2,
                                                           "als_lambda": 1e6, "als_p": 0.01}


@pytest.mark.parametrize("values,flag", [({"mixup_alpha": 0}, "--mixup-alpha"), ({"als_p": 0.7}, "--als-p"),
                                         ({"emsc_order": 11}, "--emsc-order"), ({"da_xshift_scale": -1},
                                                                                 "--da-xshift-scale")])
def test_the_table_s_checks_refuse_bad_values(values, flag):
    with pytest.raises(ConfigError, match=flag):
        DataConfig(**values)


def test_a_model_transform_added_as_one_entry_runs_in_the_model(negate):
    from spectratorch.models.preprocess import Preprocess

    assert DataConfig(transforms=["snv", "negate"]).transforms == ("snv", "negate")
    spectra = torch.rand(5, 2, 30)
    pre = Preprocess(["a", "b"], 30, 0, transforms=["da", "snv", "negate"])
    plain = Preprocess(["a", "b"], 30, 0, transforms=["snv"])
    assert pre.transforms == ("snv", "negate")
    assert torch.equal(pre.apply_transforms(spectra), -plain.apply_transforms(spectra))
    assert inference_transforms(["da", "negate"]) == ["negate"]
    assert differences({"transforms": ["negate"]}, {"transforms": ["da"]}, keys=("transforms",)) == [
        "transforms: checkpoint ['negate'], this data ['da']"]


def test_a_train_only_transform_added_as_one_entry_runs_on_training_batches(double):
    from spectratorch.data.datamodule import SpectralDataModule
    from tests.conftest import make_frame

    dm = SpectralDataModule(data=make_frame(60), targets=("AVA", "IN"), channels=("277", "380"),
                            transforms=("double",))
    dm.prepare()
    batch = {"spectra": torch.ones(4, 2, 20), "tabular": torch.ones(4, 1), "y": torch.zeros(4, dtype=torch.long)}
    out = dm.train_transform(batch)
    assert torch.equal(out["spectra"], 2 * batch["spectra"]) and torch.equal(out["tabular"], batch["tabular"])
    assert inference_transforms(["double", "snv"]) == ["snv"]


def test_an_unknown_transform_names_the_table():
    with pytest.raises(ConfigError, match=r"unknown transform\(s\) \['blur'\]; expected some of \['da', 'mixup'"):
        DataConfig(transforms=["blur"])
