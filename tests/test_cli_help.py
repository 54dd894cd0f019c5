"""`--help` states the code's defaults: every verb's argparse defaults against the configuration dataclasses, the
functions each verb calls and the data-adaptive rules of ``defaults.py``."""

import argparse
import inspect
import re

import pytest

from spectratorch import defaults
from spectratorch.cli import _MODEL_LR, _MODEL_WEIGHT_DECAY, build_parser, config_from_args
from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig

_FIELDS = {f.name: (cls, f) for cls in (DataConfig, ModelConfig, TrainConfig) for f in
           __import__("dataclasses").fields(cls)}
_REQUIRED = {"train": [], "cv": [], "tune": ["--space", "s.yaml", "--trials", "1"]}


def _verbs() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def _signature_defaults(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _help(verb: str) -> str:
    text = _verbs()[verb].format_help()
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("verb", sorted(_REQUIRED))
def test_training_verbs_default_to_the_configuration_defaults(verb):
    parser = _verbs()[verb]
    assert config_from_args(parser.parse_args(_REQUIRED[verb])) == RunConfig()
    for dest, action in _options(parser).items():
        if dest in _FIELDS and action.default is not None and dest not in ("tabular",):
            cls, field = _FIELDS[dest]
            default = field.default
            shown = tuple(action.default) if isinstance(action.default, list) else action.default
            assert shown == default, f"{verb} --{dest}: help/parser {action.default!r}, {cls.__name__} {default!r}"


def _verb_functions():
    from spectratorch.app.launch import launch
    from spectratorch.data.demo import write_demo_dataset
    from spectratorch.export.onnx import export_onnx
    from spectratorch.inference import Predictor
    from spectratorch.pipelines.cv import run_cv
    from spectratorch.pipelines.tune import tune

    # verb: (function, {flag dest: parameter name})
    return {
        "predict": (Predictor.predict_file, {"top_k": "top_k", "cutoff": "cutoff", "batch_size": "batch_size"}),
        "export": (export_onnx, {"n_check": "n_check"}),
        "app": (launch, {"port": "port", "address": "address", "max_upload_mb": "max_upload_mb"}),
        "make-dataset": (write_demo_dataset, {"samples": "n_samples", "seed": "seed", "instrument": "instrument"}),
        "cv": (run_cv, {"fold_workers": "workers"}),
        "tune": (tune, {"heartbeat": "heartbeat"}),
    }


@pytest.mark.parametrize("verb", ["predict", "export", "app", "make-dataset", "cv", "tune"])
def test_verb_defaults_equal_the_functions_they_call(verb):
    function, names = _verb_functions()[verb]
    options, signature = _options(_verbs()[verb]), _signature_defaults(function)
    for dest, parameter in names.items():
        assert options[dest].default == signature[parameter], f"{verb} --{dest} vs {function.__qualname__}"
        assert f"(default: {options[dest].default})" in _help(verb), f"{verb} --{dest} help"


def test_lr_and_weight_decay_help_lists_every_model_s_default():
    from spectratorch.models.registry import default_lr, default_weight_decay, list_models

    text = _help("train")
    assert _MODEL_LR not in text and _MODEL_WEIGHT_DECAY not in text
    lr = re.search(r"Adam learning rate \(default: ([^)]*)\)", text).group(1)
    decay = re.search(r"L2 penalty of Adam \(default: ([^)]*)\)", text).group(1)
    for shown, default_of in ((lr, default_lr), (decay, default_weight_decay)):
        stated = {name: float(value) for value, names in re.findall(r"([\d.e+-]+) for ([^;]+)", shown)
                  for name in names.split(", ")}
        assert stated == {name: default_of(name) for name in list_models()}, shown


def test_data_adaptive_rules_are_those_stated():
    text = _help("train")
    low, high = map(int, re.search(r"power of two, within (\d+)\.\.(\d+)", text).groups())
    assert (defaults.auto_batch_size(1), defaults.auto_batch_size(10**9), defaults.auto_batch_size(8 * 64)) == (
        low, high, 64)
    least, steps, most = map(int, re.search(
        r"maximum epochs \(default: at least (\d+) and about (\d+) optimizer steps, at most (\d+)\)", text).groups())
    assert (defaults.auto_max_epochs(10**9, 256), defaults.auto_max_epochs(16, 16)) == (least, most)
    assert defaults.auto_max_epochs(16 * steps // 100, 16) == 100  # about `steps` optimizer steps
    least, steps, most = map(int, re.search(
        r"without improvement \(default: at least (\d+) and about (\d+) optimizer steps, at most (\d+)\)",
        text).groups())
    assert (defaults.auto_patience(10**9, 256), defaults.auto_patience(16, 16)) == (least, most)
    assert defaults.auto_patience(16 * steps // 20, 16) == 20
    width = float(re.search(r"channel multiplier of VGG/ResNetV2 \(default: ([\d.]+)", text).group(1))
    config = RunConfig(DataConfig(channels=("277",)), ModelConfig(arch="VGG11"))
    assert defaults.resolve_defaults(config, 100).model.width == width
    from spectratorch.models.minirocket import MiniRocketNet

    n_features = int(re.search(r"random-kernel features \(default (\d+)\)", text).group(1))
    assert n_features == _signature_defaults(MiniRocketNet.__init__)["n_features"]


def test_convert_thresholds_are_those_stated():
    from spectratorch.data.raw import MIN_INTEGRALS, SATURATION_THRESHOLDS

    text = _help("convert")
    for label, table in (("saturation thresholds per channel", SATURATION_THRESHOLDS),
                         ("minimum spectrum integral per channel", MIN_INTEGRALS)):
        stated = re.search(label + r" \(defaults ([^)]*)\)", text).group(1)
        assert dict(pair.split("=") for pair in stated.split()) == {k: f"{v:g}" for k, v in table.items()}


def test_verbose_after_the_command_too():
    from spectratorch.cli import build_parser

    parser = build_parser()
    assert [parser.parse_args(args).verbose for args in (["train"], ["-v", "train"], ["train", "-v"],
                                                         ["predict", "m.onnx", "d.csv", "-o", "p.csv", "-v"])] == [
        False, True, True, True]
