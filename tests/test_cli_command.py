"""The ``spectratorch train`` command that a study or a CV prints is built from the parser and parses back."""

import argparse
import shlex

import pytest

from spectratorch.cli import _add_train_args, build_parser, config_from_args, train_command

# reason: values for flags whose type alone does not give a valid non-default value.
SAMPLES = {
    "data": ["x.csv"], "targets": ["AVA", "IN"], "channels": ["277", "380"], "tabular": [],
    "test_source": ["is-val"], "transforms": ["da", "mixup"], "block_units": ["2_2"], "arch": ["TinyVGG"],
    "loss": ["focal"], "class_weights": ["balanced"], "project": ["p"], "output_dir": ["out dir"],
    "load_this": ["a b.ckpt"], "mlflow_uri": ["http://localhost:5000"], "accelerator": ["cpu"], "devices": ["2"],
    "precision": ["32-true"], "strategy": ["ddp"], "date_from": ["2024-01-01"], "date_to": ["2024-12-31"],
    "loggers": ["csv"], "n_splits": ["4"], "current_split": ["2"], "sg_window": ["7"], "focal_gamma": ["1.5"],
    "eps": ["0.05"], "unfreeze_lr_factor": ["0.5"], "arch_opts": ["batch_norm=false"], "groups": ["sample name"],
}

# reason: flags that the configuration accepts only together with others.
COMPANIONS = {"fit": ["--load-this", "a.ckpt"], "finetune": ["--load-this", "a.ckpt"],
              "freeze_backbone_epochs": ["--load-this", "a.ckpt", "--finetune"],
              "unfreeze_lr_factor": ["--load-this", "a.ckpt", "--finetune"],
              "keep_scaling": ["--load-this", "a.ckpt", "--finetune"]}


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_train_args(parser)
    return parser


def _flags():
    return [a for a in _train_parser()._actions if a.option_strings and a.help != argparse.SUPPRESS]


def _argv(action: argparse.Action) -> list[str]:
    """Tokens setting ``action`` to a value other than its default."""
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return ["--no-" + flag[2:]] if action.default is not False else [flag]
    if action.nargs == 0:
        return [flag]
    if action.dest == "loggers":
        return [token for value in ("csv", "mlflow") for token in (flag, value)]
    if action.dest in SAMPLES:
        return [flag, *SAMPLES[action.dest]]
    if action.choices:
        return [flag, next(str(c) for c in action.choices if c != action.default)]
    if action.type is int:
        return [flag, str((action.default or 0) + 3)]
    if action.type is float:
        return [flag, str((action.default or 0) + 0.25)]
    raise AssertionError(f"no sample value for {flag}: add one to SAMPLES")


@pytest.mark.parametrize("action", _flags(), ids=lambda a: a.option_strings[0])
def test_every_flag_round_trips(action):
    parser = build_parser()
    companions = COMPANIONS.get(action.dest, [])
    config = config_from_args(parser.parse_args(["train", *companions, *_argv(action)]))
    assert config != config_from_args(parser.parse_args(["train", *companions])), "the sample must change it"
    tokens = shlex.split(train_command(config))
    assert tokens[:2] == ["spectratorch", "train"]
    assert config_from_args(parser.parse_args(tokens[1:])) == config


def test_all_flags_together_round_trip():
    parser = build_parser()
    # reason: --no-fit and --finetune exclude each other; --no-fit is covered alone above.
    argv = [token for action in _flags() if action.dest != "fit" for token in _argv(action)]
    config = config_from_args(parser.parse_args(["train", *argv]))
    assert config_from_args(parser.parse_args(shlex.split(train_command(config))[1:])) == config


def test_logger_choice_is_written_as_the_flag_the_parser_takes():
    config = config_from_args(build_parser().parse_args(["train", "--logger", "csv"]))
    command = train_command(config)
    assert "--logger csv" in command and "--loggers" not in command


@pytest.mark.parametrize("argv", [
    ["--arch", "Hydra", "--arch-opt", "n_kernels=4", "--arch-opt", "seed=3"],
    ["--arch", "Ensemble", "--arch-opt", "members=[{'arch': 'Linear'}]"],
    ["--arch-opt", "n_groups=16"],
])
def test_declared_architecture_options_round_trip(argv):
    parser = build_parser()
    config = config_from_args(parser.parse_args(["train", *argv]))
    assert config.model.arch_opts and config.model.arch_kwargs().items() >= config.model.arch_opts.items()
    command = train_command(config)
    assert "--arch-opt" in command
    assert config_from_args(parser.parse_args(shlex.split(command)[1:])) == config


def test_arch_opt_of_a_named_option_is_its_flag():
    parser = build_parser()
    by_opt = config_from_args(parser.parse_args(["train", "--arch", "ResNetV2", "--arch-opt", "block_units=2_2",
                                                 "--arch-opt", "width=0.5"]))
    by_flag = config_from_args(parser.parse_args(["train", "--arch", "ResNetV2", "--block-units", "2_2", "--width",
                                                  "0.5"]))
    assert by_opt == by_flag and by_opt.model.arch_opts == {}
