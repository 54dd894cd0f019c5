"""Losses for imbalanced classes: focal loss, class weights, their composition with eps and mixup."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spectratorch.cli import build_parser, config_from_args
from spectratorch.config import TrainConfig, parse_class_weights
from spectratorch.errors import ConfigError
from spectratorch.training.losses import resolve_class_weights, soft_target_loss
from spectratorch.training.module import smoothed_nll

ROOT = Path(__file__).resolve().parents[2]


def _batch(n=64, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 3
    y = torch.randint(0, k, (n,), generator=g)
    # mixup-like soft targets: each row mixes its class with another row's
    lam = torch.rand(n, 1, generator=g)
    one_hot = F.one_hot(y, k).float()
    soft = lam * one_hot + (1 - lam) * one_hot[torch.randperm(n, generator=g)]
    return logits, y, soft


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_focal_gamma_zero_is_cross_entropy(eps, weighted):
    logits, y, soft = _batch()
    weight = torch.tensor([0.5, 1.0, 2.0, 4.0]) if weighted else None
    log_probs = logits.log_softmax(1)
    for target in (y, soft):
        smoothed = (1 - eps) * (F.one_hot(target, 4).float() if target.dim() == 1 else target) + eps / 4
        reference = F.cross_entropy(logits, smoothed, weight=weight)
        assert torch.allclose(soft_target_loss(log_probs, target, eps, 0.0, weight), reference, atol=1e-6)
    # without weights the house's smoothed NLL and torch's label smoothing agree too
    if not weighted:
        assert torch.allclose(soft_target_loss(log_probs, y, eps), smoothed_nll(log_probs, y, eps), atol=1e-6)
        assert torch.allclose(soft_target_loss(log_probs, y, eps), F.cross_entropy(logits, y, label_smoothing=eps),
                              atol=1e-6)


def test_focal_matches_its_formula_and_spares_easy_samples():
    logits, y, soft = _batch(k=3, seed=1)
    log_probs = logits.log_softmax(1)
    p = log_probs.exp()
    q = 0.9 * soft + 0.1 / 3
    weight = torch.tensor([1.0, 2.0, 3.0])
    reference = -(weight * q * (1 - p) ** 2 * log_probs).sum(1).mean()
    assert torch.allclose(soft_target_loss(log_probs, soft, 0.1, 2.0, weight), reference, atol=1e-6)
    # an easy sample (p of its class near 1) costs far less under focal than under CE
    easy = torch.tensor([[6.0, 0.0, 0.0]]).log_softmax(1)
    target = torch.tensor([0])
    assert soft_target_loss(easy, target, 0, 2.0) < 1e-3 * soft_target_loss(easy, target, 0, 0.0)
    # finite gradient even where p rounds to 1, for gamma < 1
    sure = torch.tensor([[60.0, 0.0, 0.0]], requires_grad=True)
    soft_target_loss(sure.log_softmax(1), target, 0, 0.5).backward()
    assert torch.isfinite(sure.grad).all()


def test_class_weights_parsing_and_balanced_counts():
    assert resolve_class_weights("balanced", {"a": 60, "b": 20, "c": 20}) == pytest.approx([100 / 180, 100 / 60,
                                                                                             100 / 60])
    counts = np.array([60, 20, 20])
    weights = np.array(resolve_class_weights("balanced", dict(zip("abc", counts))))
    assert (weights * counts).sum() / counts.sum() == pytest.approx(1.0)  # scale kept
    assert resolve_class_weights("none", {"a": 1}) is None
    assert resolve_class_weights("1,3", {"a": 5, "b": 6}) == [1.0, 3.0]
    with pytest.raises(ConfigError, match="gives 3 weights but the target has 2 classes"):
        resolve_class_weights("1,2,3", {"a": 5, "b": 6})
    for bad in ("heavy", "1,-2", "0", "1,nan", ""):
        with pytest.raises(ConfigError, match="--class-weights must be none, balanced or positive numbers"):
            parse_class_weights(bad)
    assert TrainConfig(class_weights="1, 2.5").class_weights == "1.0,2.5"
    with pytest.raises(ConfigError, match="--loss must be one of"):
        TrainConfig(loss="hinge")
    with pytest.raises(ConfigError, match="--focal-gamma must be in"):
        TrainConfig(focal_gamma=-1)


def test_cli_flags_map_to_the_config():
    args = build_parser().parse_args(["train", "--loss", "Focal", "--focal-gamma", "1.5", "--class_weights",
                                      "balanced"])
    train = config_from_args(args).train
    assert (train.loss, train.focal_gamma, train.class_weights) == ("focal", 1.5, "balanced")


def _rare_class_recall(data, out, class_weights, loss="ce"):
    from spectratorch.config import DataConfig, ModelConfig, RunConfig
    from spectratorch.pipelines.run import predict_probabilities, train
    from spectratorch.training.restore import load_module

    config = RunConfig(
        DataConfig(data=str(data), targets=("OVA", "NC"), channels=("277", "380"), batch_size=64, transforms=()),
        ModelConfig(arch="TinyVGG"),
        TrainConfig(max_epochs=30, early_stop_patience=30, lr=3e-3, eps=0.0, output_dir=str(out), accelerator="cpu",
                    devices="1", class_weights=class_weights, loss=loss, evaluate=False),
    )
    summary = train(config)
    module = load_module(summary["files"]["checkpoint"])
    assert module.hparams.class_weights is None or len(module.hparams.class_weights) == 2
    from spectratorch.training.restore import datamodule_from_hparams

    dm = datamodule_from_hparams(dict(module.hparams))
    hits = []
    for stage in ("val", "test"):
        predicted = predict_probabilities(module, dm, stage).argmax(1)
        truth = dm.stage_arrays(stage).y.numpy()
        hits.append(predicted[truth == 1] == 1)
    return float(np.concatenate(hits).mean()), module


@pytest.mark.slow
def test_balanced_weights_raise_the_recall_of_a_rare_class(demo_file, tmp_path):
    # OVA NC on the generated demo data: NC is about 5 % of the rows
    plain, _ = _rare_class_recall(demo_file, tmp_path / "plain", "none")
    balanced, module = _rare_class_recall(demo_file, tmp_path / "balanced", "balanced")
    weights = module.hparams.class_weights
    assert weights[1] > 5 * weights[0]  # recorded with the checkpoint, from the training counts
    # reason: the figure the README quotes for this data and setting: the recall of NC from 0.00 to 0.88.
    assert plain <= 0.005 and balanced >= 0.88, (plain, balanced)


def test_bad_class_weights_one_line(demo_file, tmp_path, capsys):
    # reason: in this process (the command's own `main`); tests/training/test_train_cli.py runs a real train process.
    from spectratorch.cli import main

    assert main(["train", "--data", str(demo_file), "--arch", "TinyVGG", "--channels", "277", "--class-weights",
                 "1,2,3", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--class-weights gives 3 weights but the target has 2 classes" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.ckpt"))
