import pytest

from spectratorch.config import DataConfig, ModelConfig, TrainConfig, normalize_transforms
from spectratorch.errors import ConfigError


def test_transforms():
    assert normalize_transforms(["none"]) == ()
    assert normalize_transforms(["DA", "sg1"]) == ("da", "sg1")
    with pytest.raises(ConfigError, match=r"unknown transform\(s\) \['blur'\]"):
        normalize_transforms(["da", "blur"])


@pytest.mark.parametrize("kwargs,match", [
    (dict(current_split=5, n_splits=5), "--current-split must be in 0..4"),
    (dict(targets=("OVA",)), "--targets takes a mode and a code"),
    (dict(sg_window=4), "--sg-window must be odd"),
    (dict(batch_size=0), "--batch-size"),
    (dict(mixup_alpha=0), "--mixup-alpha"),
])
def test_data_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DataConfig(**kwargs)


def test_train_config():
    assert TrainConfig(target_metric="val_acc").target_metric == "val_accuracy"
    assert TrainConfig(target_metric="val_loss").metric_mode == "min"
    with pytest.raises(ConfigError, match="--eps must be in"):
        TrainConfig(eps=1.5)
    with pytest.raises(ConfigError, match="--target-metric"):
        TrainConfig(target_metric="val_speed")
    with pytest.raises(ConfigError, match="--no-fit needs"):
        TrainConfig(fit=False)


def test_block_units():
    assert ModelConfig(block_units="3_4_6_3").block_units == (3, 4, 6, 3)
    with pytest.raises(ConfigError, match="--block-units"):
        ModelConfig(block_units="3_x")
