"""Fine-tuning a checkpoint on new data: a real fine-tune through the CLI, the head rules, and the bad inputs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spectratorch import model_name, parse_model_name
from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from spectratorch.errors import ConfigError
from spectratorch.training.finetune import count_trainable, finetune_differences, finetune_module, split_head
from spectratorch.training.module import SpectralModule
from spectratorch.training.restore import load_module

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["--arch", "TinyVGG", "--channels", "277", "380", "--transforms", "da", "simulate", "--batch-size", "64"]


def _cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "spectratorch.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def parent(demo_file, tmp_path_factory):
    """A TinyVGG trained one epoch on instrument A (OVA OK, channels 277 380, da + simulate)."""
    from spectratorch.pipelines.run import train

    out = tmp_path_factory.mktemp("parent")
    summary = train(RunConfig(
        DataConfig(data=str(demo_file), channels=("277", "380"), transforms=("da", "simulate"), batch_size=64),
        ModelConfig(arch="TinyVGG"),
        TrainConfig(max_epochs=1, early_stop_patience=1, output_dir=str(out), accelerator="cpu", devices="1",
                    evaluate=False),
    ))
    return Path(summary["files"]["checkpoint"]), summary["name"]


@pytest.fixture(scope="module")
def b_file(tmp_path_factory):
    from spectratorch.data.demo import write_demo_dataset

    path = tmp_path_factory.mktemp("b") / "b.pkl"
    write_demo_dataset(path, n_samples=600, seed=7, instrument="B")
    return path


def test_finetune_new_head_freeze_then_unfreeze_through_the_cli(parent, b_file, tmp_path):
    checkpoint, parent_stem = parent
    out = tmp_path / "out"
    # the checkpoint given relative to the working directory, as a user types it
    relative = os.path.relpath(checkpoint, ROOT)
    done = _cli("train", "--data", b_file, *COMMON, "--targets", "AVA", "IN", "--load-this", relative, "--finetune",
                "--freeze-backbone-epochs", "1", "--unfreeze-lr-factor", "0.5", "--max-epochs", "3",
                "--early-stop-patience", "5", "--output-dir", out, "--no-evaluate", "--to-onnx")
    assert done.returncode == 0, done.stderr[-3000:]
    stem = "TinyVGG y=['AVA', 'IN'] c=('277', '380') t=('da', 'simulate') 0-5 s=42 eps=0.1"
    summary = json.loads((out / f"{stem}.json").read_text())
    # the name is this run's own plain stem; the parent is recorded beside it
    assert summary["name"] == stem == model_name(parse_model_name(stem).__dict__)
    assert summary["parent"] == parent_stem != stem
    record = summary["finetune"]
    assert record["head"] == "new" and record["parent_labels"] == ["The rest", "OK"]
    assert record["label_mapping"] == {label: None for label in summary["labels"]} and len(summary["labels"]) == 4
    assert record["scaling"] == "refitted"
    assert record["parent_checkpoint"] == str(checkpoint.resolve())  # the full path, whatever the working directory
    head, whole = record["phases"]
    assert (head["epoch"], head["phase"], whole["epoch"], whole["phase"]) == (0, "head", 1, "all")
    model = load_module(summary["files"]["checkpoint"])
    assert whole["trainable_parameters"] == sum(p.numel() for p in model.model.parameters())
    # reason: the head phase trains the head and the backbone's batch norms (Lightning's train_bn=True), nothing else.
    net = model.model.net
    norms = sum(p.numel() for m in net.features.modules() if isinstance(m, torch.nn.BatchNorm1d)
                for p in m.parameters())
    assert head["trainable_parameters"] == sum(p.numel() for p in net.head.parameters()) + norms
    assert head["trainable_parameters"] < whole["trainable_parameters"]
    assert len(whole["lr"]) == 2 and whole["lr"][1] == pytest.approx(0.5 * whole["lr"][0])
    assert model.hparams["parent"] == parent_stem and list(model.labels) == summary["labels"]
    assert model.model.net.head.fc.out_features == 4
    # the backbone joined the optimizer at epoch 1, in its own group at half the head's learning rate
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(summary["files"]["logs"])
    events.Reload()
    assert [s.value for s in events.Scalars("lr-Adam/pg2")] == pytest.approx([5e-4, 5e-4])
    assert len(events.Scalars("lr-Adam")) == 1  # the head-only epoch: one group
    from spectratorch.export.onnx import read_metadata

    meta = read_metadata(summary["files"]["onnx"])
    assert meta["parent"] == parent_stem and meta["name"] == stem and meta["labels"] == summary["labels"]


def test_frozen_backbone_stays_the_parents(parent, b_file, tmp_path, caplog):
    from spectratorch.pipelines.run import train

    checkpoint, _ = parent
    # reason: --arch, --width and --transforms left unset: a fine-tune takes the checkpoint's.
    with caplog.at_level("WARNING", logger="spectratorch"):
        summary = train(RunConfig(
            DataConfig(data=str(b_file), channels=("277", "380"), batch_size=64),
            ModelConfig(),
            TrainConfig(max_epochs=2, early_stop_patience=5, output_dir=str(tmp_path), accelerator="cpu", devices="1",
                        evaluate=False, load_this=str(checkpoint), finetune=True, freeze_backbone_epochs=10,
                        keep_scaling=True),
        ))
    assert [p["phase"] for p in summary["finetune"]["phases"]] == ["head"]
    assert "--freeze-backbone-epochs 10 with --max-epochs 2: the backbone never trains, only the head" in caplog.text
    assert summary["config"]["model"]["arch"] == "TinyVGG"
    assert list(summary["config"]["data"]["transforms"]) == ["da", "simulate"]
    assert summary["name"] == "TinyVGG y=['OVA', 'OK'] c=('277', '380') t=('da', 'simulate') 0-5 s=42 eps=0.1"
    assert summary["finetune"]["head"] == "continued" and summary["finetune"]["scaling"] == "kept"
    old, new = load_module(checkpoint).model, load_module(summary["files"]["checkpoint"]).model
    convs = [name for name, _ in new.named_parameters() if name.startswith("net.features") and name.endswith("weight")
             and new.get_parameter(name).dim() == 3]
    assert convs and all(torch.equal(old.get_parameter(n), new.get_parameter(n)) for n in convs)
    assert not torch.equal(old.net.head.fc.weight, new.net.head.fc.weight)
    assert torch.equal(old.preprocess.spectra_min, new.preprocess.spectra_min)


def _module(labels, seed=0):
    torch.manual_seed(seed)
    module = SpectralModule("TinyVGG", ["277"], list(range(64)), [], labels)
    module.model.preprocess.fit(torch.rand(20, 1, 64))
    return module


def test_same_labels_continue_reordered_labels_follow(tmp_path):
    import lightning.pytorch as pl

    parent = _module(["a", "b", "c"])
    path = tmp_path / "parent.ckpt"
    trainer = pl.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(parent)
    trainer.save_checkpoint(path)
    spectra = torch.rand(5, 1, 64)
    parent.eval()
    expected = parent(spectra, None).softmax(1)
    for labels, order in ((["a", "b", "c"], [0, 1, 2]), (["c", "a", "b"], [2, 0, 1])):
        kwargs = {**dict(_module(labels).hparams), "labels": labels}
        module, lineage = finetune_module(path, kwargs, (spectra, None), keep_scaling=True)
        module.eval()
        assert lineage["head"] == ("continued" if order == [0, 1, 2] else "reordered")
        assert lineage["label_mapping"] == {label: label for label in labels}
        torch.testing.assert_close(module(spectra, None).softmax(1), expected[:, order])
    module, lineage = finetune_module(path, {**kwargs, "labels": ["x", "y"]}, (spectra, None))
    assert lineage["head"] == "new" and module.model.net.head.fc.out_features == 2
    torch.testing.assert_close(module.model.net.features[0].weight, parent.model.net.features[0].weight)


def test_split_head_and_counts():
    module = _module(["a", "b"])
    backbone, head = split_head(module.model.net, 2)
    assert head == [module.model.net.head] and backbone == [module.model.net.features]
    assert count_trainable(module.model) == sum(p.numel() for p in module.model.parameters())


def test_differences_name_each_mismatch_and_its_fix():
    parent = {"arch": "TinyVGG", "channels": ["277", "380"], "axis": [1.0, 2.0], "tabular_columns": [],
              "transforms": ["da", "simulate"], "arch_kwargs": {"width": 0.25}}
    same = {**parent, "transforms": ["simulate"]}
    assert finetune_differences(parent, same) == []
    lines = finetune_differences(parent, {**parent, "arch": "VGG11", "channels": ["277"], "axis": [1.0, 2.0, 3.0],
                                          "transforms": ["da"], "arch_kwargs": {"width": 0.5}})
    assert lines == [
        "arch: checkpoint 'TinyVGG', this run 'VGG11' (pass --arch TinyVGG)",
        "channels: checkpoint ['277', '380'], this run ['277'] (pass --channels 277 380)",
        "transforms: checkpoint ['da', 'simulate'], this run ['da'] (pass --transforms da simulate)",
        "axis: checkpoint 2 points 1..2, this run 3 points 1..3 (resample the data onto the checkpoint's axis)",
        "width: checkpoint 0.25, this run 0.5 (pass --width 0.25)",
    ]


@pytest.mark.parametrize("flags, message", [
    (["--finetune"], "--finetune trains from a checkpoint, but no checkpoint was given; add --load-this CKPT"),
    (["--freeze-backbone-epochs", "2"], "--freeze-backbone-epochs only apply to a fine-tune"),
])
def test_finetune_flags_are_checked(flags, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TrainConfig(**{f.lstrip("-").replace("-", "_"): (int(v) if v.isdigit() else True)
                       for f, v in zip(flags, flags[1:] + ["1"]) if f.startswith("--")})


@pytest.mark.parametrize("case", ["no-checkpoint", "arch-and-channels", "missing-channel", "over-parent"])
def test_bad_input_one_line_exit_2_before_training(case, parent, b_file, tmp_path, capsys):
    checkpoint, parent_stem = parent
    data, args = b_file, list(COMMON)
    out = tmp_path / "out"
    if case == "over-parent":  # the same name in the parent's folder: its files would be replaced
        out.mkdir()
        checkpoint = Path(shutil.copy(checkpoint, out))
    if case == "missing-channel":
        import pandas as pd

        frame = pd.read_pickle(b_file)
        data = tmp_path / "no380.pkl"
        frame.drop(columns=[c for c in frame.columns if c.startswith("380_")]).to_pickle(data)
    expected = {
        "no-checkpoint": ["--finetune trains from a checkpoint, but no checkpoint was given"],
        "arch-and-channels": ["arch: checkpoint 'TinyVGG', this run 'VGG11' (pass --arch TinyVGG)",
                              "channels: checkpoint ['277', '380'], this run ['277', '425'] (pass --channels 277 380)"],
        "missing-channel": ["unknown channel(s) ['380']"],
        "over-parent": [f"--finetune would write the new model over the one it starts from ({parent_stem!r} in "
                        f"{out.resolve()}): pass --output-dir"],
    }[case]
    if case == "arch-and-channels":
        args[1], args[4] = "VGG11", "425"
    load = [] if case == "no-checkpoint" else ["--load-this", checkpoint]
    argv = ["train", "--data", data, *args, *load, "--finetune", "--output-dir", out, "--max-epochs", "1"]
    if case == "no-checkpoint":
        done = _cli(*argv)
        code, stderr = done.returncode, done.stderr
    else:
        # reason: the same CLI entry point in this process; a subprocess would spend seconds importing torch again.
        from spectratorch.cli import main

        code, stderr = main(list(map(str, argv))), capsys.readouterr().err
    assert code == 2, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("spectratorch train: error:")]
    assert len(lines) == 1 and all(part in lines[0] for part in expected), stderr[-2000:]
    assert "Epoch" not in stderr and list(out.glob("**/*.ckpt")) == ([checkpoint] if case == "over-parent" else [])


def test_load_this_without_finetune_on_other_labels_points_to_finetune(parent):
    from spectratorch.errors import CheckpointError
    from spectratorch.pipelines.run import _load_module

    checkpoint, _ = parent
    expected = dict(load_module(checkpoint).hparams)
    _load_module(str(checkpoint), expected)  # the same configuration loads
    with pytest.raises(CheckpointError, match=r"was trained with another configuration: labels: checkpoint .* \(to "
                                              r"train it on other labels or data, add --finetune\)$"):
        _load_module(str(checkpoint), {**expected, "labels": ["a", "b", "c"]})
