"""The command line: ``spectratorch train|cv|tune|export|predict|report|app|make-dataset|convert ...``.

``python train.py ...`` is the same as ``spectratorch train ...``.

Only this module parses arguments. Flags are hyphenated and map by name to the fields of the configuration
dataclasses (``--n-splits`` -> ``n_splits``); the lab's old spellings come from one alias table. Expected errors
print one line and exit non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from spectratorch._version import __version__
from spectratorch.config import (
    DEMO_DATA,
    RARE_CLASS_POLICIES,
    TARGET_METRICS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from spectratorch.defaults import (
    CPU_WIDTH,
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_PATIENCE,
    MIN_BATCH,
    MIN_EPOCHS,
    MIN_PATIENCE,
    MIN_STEPS,
    PATIENCE_STEPS,
)
from spectratorch.errors import ConfigError, SpectratorchError
from spectratorch.logs import report_to_console
from spectratorch.options import format_value, parse_pairs
from spectratorch.transforms import LAB_CHANNELS, default_transforms, in_model, train_only, transform_options

__all__ = ["main", "build_parser", "config_from_args", "train_command"]

_logger = logging.getLogger("spectratorch")

# reason: one table of the lab's old spellings; each becomes an extra option string of the same argument.
_ALIASES = {
    "--targets": ["--target_codes", "--target-codes"],
    "--data": ["--train_source", "--train-source"],
    "--eps": ["--smooth_eps", "--smooth-eps"],
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag once (the old spellings stay accepted) and no "(default: None)"."""

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        shown = [s for s in action.option_strings if not _is_alias(s)]
        metavar = "" if action.nargs == 0 else " " + self._format_args(action, self._get_default_metavar_for_optional(
            action))
        return ", ".join(s + metavar for s in shown)

    def _get_help_string(self, action):
        if action.default is None or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)

    def _expand_help(self, action):
        text = super()._expand_help(action)
        if any(key in text for key in (_MODEL_NAMES, _MODEL_LR, _MODEL_WEIGHT_DECAY, _MODEL_OPTIONS)):
            # reason: the registry imports torch; only when help is shown, so `predict` starts fast without it.
            from spectratorch.models.registry import default_lr, default_weight_decay, list_models, model_options

            text = text.replace(_MODEL_NAMES, ", ".join(list_models()))
            text = text.replace(_MODEL_OPTIONS, per_model_defaults(lambda name: ", ".join(model_options(name)) or
                                                                   "none", sep=": "))
            text = text.replace(_MODEL_LR, per_model_defaults(default_lr))
            text = text.replace(_MODEL_WEIGHT_DECAY, per_model_defaults(default_weight_decay))
        return text


_MODEL_NAMES = "{registered models}"
_MODEL_LR = "{default lr per model}"
_MODEL_WEIGHT_DECAY = "{default weight decay per model}"
_MODEL_OPTIONS = "{options per model}"


def per_model_defaults(default_of, sep: str | None = None) -> str:
    """``"1e-3 for ResNetV2, VGG11; 1e-4 for Linear"``: the registered models grouped by ``default_of(name)``
    (with ``sep``: ``"ResNetV2, VGG11: value"``)."""
    from spectratorch.models.registry import list_models

    groups: dict[float | str, list[str]] = {}
    for name in list_models():
        groups.setdefault(default_of(name), []).append(name)
    if sep is not None:
        return "; ".join(f"{', '.join(names)}{sep}{value}" for value, names in groups.items())
    return "; ".join(f"{value:g} for {', '.join(names)}" for value, names in groups.items())


def _is_alias(option: str) -> bool:
    return option.startswith("--") and ("_" in option or any(option in a for a in _ALIASES.values()))


def _add(group, *flags: str, **kwargs) -> None:
    strings = list(flags)
    for flag in flags:
        strings += [a for a in _ALIASES.get(flag, []) if a not in strings]
        underscored = "--" + flag[2:].replace("-", "_")
        if flag.startswith("--") and "-" in flag[2:] and underscored not in strings:
            strings.append(underscored)
    group.add_argument(*strings, **kwargs)


def _add_filter_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("row filters")
    _add(group, "--drop-oob", action=argparse.BooleanOptionalAction, default=True,
         help="drop rows whose integration_oob is 1")
    _add(group, "--transmittance-min", type=float, default=None, help="keep rows with transmittance >= this")
    _add(group, "--transmittance-max", type=float, default=None, help="keep rows with transmittance <= this")
    _add(group, "--date-from", default=None, help="keep rows measured on or after this date (YYYY-MM-DD)")
    _add(group, "--date-to", default=None, help="keep rows measured on or before this date (YYYY-MM-DD)")


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    d, m, t = DataConfig(), ModelConfig(), TrainConfig()
    data = parser.add_argument_group("data")
    _add(data, "--data", default=None,
         help="dataset file (.csv, .tsv, .txt, .xlsx, .parquet, .pkl): columns <channel>_<x>, or bare numbers (one "
         f"channel, 'spectrum'), and label columns; default: the demo dataset {DEMO_DATA}, generated when missing")
    _add(data, "--targets", nargs="+", default=d.targets, metavar="MODE CODE",
         help="AVA IN|INs|TY|TYs|INTY|INsTYs|<column>, OVA <value>, or OVA <column> <value> (default: OVA OK on the "
         "lab's data, else AVA <the data's one label column>)")
    _add(data, "--channels", nargs="+", default=d.channels,
         help="channel names, in the order wanted (default: 277 380 425 when the data has them, else every channel)")
    _add(data, "--tabular", nargs="*", default="default", metavar="COLUMN",
         help="tabular feature columns; a bare --tabular: none (default: greffon_transmittance where present)")
    _add(data, "--n-splits", type=int, default=d.n_splits, help="number of stratified folds")
    _add(data, "--current-split", type=int, default=d.current_split, help="the validation fold")
    _add(data, "--test-source", default=d.test_source,
         help="like-val (the next fold), is-val (the validation fold), none (no test rows: the final model, "
         "trained on every row on a small set) or the path of a test file")
    _add(data, "--seed", type=int, default=d.seed, help="seed of the split, the weights and the augmentations")
    _add(data, "--rare-classes", choices=RARE_CLASS_POLICIES, default=d.rare_classes,
         help="classes smaller than --n-splits: keep (with at least 3 rows each; some test folds hold none of them), "
         "error, drop, or other (bundled)")
    _add(data, "--min-samples", type=int, default=None,
         help="with --rare-classes other: bundle classes under this many rows (default, and at least: --n-splits)")
    _add(data, "--groups", default=None, metavar="COLUMN",
         help="the column naming each row's sample (replicate scans share a value): a sample's rows stay in one fold, "
         "in the test folds and in the inner cross-validation")
    _add(data, "--batch-size", type=int, default=None,
         help=f"samples per batch (default: n_train/8 rounded down to a power of two, within {MIN_BATCH}..{MAX_BATCH})")
    aug = parser.add_argument_group("transforms")
    model_stage = " ".join(in_model())
    _add(aug, "--transforms", nargs="+", default=None,
         help=f"in order: {' '.join(train_only())} (training only), {model_stage} (in the model), or none "
         f"(default: {' '.join(default_transforms(sorted(LAB_CHANNELS)))} on the lab's "
         f"channels {' '.join(sorted(LAB_CHANNELS))}, none on other data)")
    for option in transform_options().values():
        _add(aug, option.flag, type=option.type, default=getattr(d, option.name, option.default), help=option.help)
    model = parser.add_argument_group("model")
    _add(model, "--arch", default=m.arch,
         help=f"architecture: {_MODEL_NAMES}, or auto (VGG11 on the lab's channels with >= 2000 training rows; "
         "otherwise Linear or LDA (also after snv or sg1), PLSDA, MiniRocket, KernelRidge or a soft vote, chosen by "
         "inner CV of all non-test rows and refit on them: doc/small-data.md)")
    _add(model, "--width", type=float, default=m.width,
         help=f"channel multiplier of VGG/ResNetV2 (default: {CPU_WIDTH}, CPU-sized; 1.0 = full size, for a GPU)")
    _add(model, "--n-features", type=int, default=None, help="MiniRocket: random-kernel features (default 4000)")
    _add(model, "--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="VGG: batch norm")
    _add(model, "--block-units", default=None, help="ResNetV2: blocks per stage, e.g. 3_4_6_3")
    _add(model, "--wf", type=int, default=None, help="ResNetV2: width factor")
    _add(model, "--dropout", type=float, default=None, help="dropout of the dense head")
    _add(model, "--pool-bins", type=int, default=None, help="positions kept by the pooling before the head")
    _add(model, "--arch-opt", dest="arch_opts", action="append", default=None, metavar="KEY=VALUE",
         help="an option the architecture declares, repeatable; the flags above are the same options (--arch-opt "
         f"width=0.5 is --width 0.5). Declared: {_MODEL_OPTIONS}")
    opt = parser.add_argument_group("optimisation")
    _add(opt, "--eps", type=float, default=t.eps, help="label smoothing epsilon of the training loss, in [0, 1]")
    _add(opt, "--lr", type=float, default=None,
         help=f"Adam learning rate (default: {_MODEL_LR}; Linear, PLSDA, LDA, MiniRocket, Hydra and KernelRidge on "
         "small sets are solved, no Adam)")
    _add(opt, "--weight-decay", type=float, default=None,
         help=f"L2 penalty of Adam (default: {_MODEL_WEIGHT_DECAY})")
    _add(opt, "--max-epochs", type=int, default=None,
         help=f"maximum epochs (default: at least {MIN_EPOCHS} and about {MIN_STEPS} optimizer steps, at most "
         f"{MAX_EPOCHS})")
    _add(opt, "--time-budget", type=float, default=None, metavar="SECONDS",
         help="small sets (--arch auto): seconds the network candidate (VGG11) may take; it then joins the inner-CV "
         "choice, its epochs chosen by inner CV (default: it joins from 2000 training rows on a GPU; 0: never)")
    _add(opt, "--early-stop-patience", type=int, default=None,
         help=f"epochs without improvement (default: at least {MIN_PATIENCE} and about {PATIENCE_STEPS} optimizer "
         f"steps, at most {MAX_PATIENCE})")
    _add(opt, "--scheduler-patience", type=int, default=t.scheduler_patience, help="ReduceLROnPlateau patience")
    _add(opt, "--scheduler-cooldown", type=int, default=t.scheduler_cooldown, help="ReduceLROnPlateau cooldown")
    _add(opt, "--target-metric", default=t.target_metric, choices=list(TARGET_METRICS) + ["val_acc", "val_bacc"],
         help="metric for checkpointing, early stopping and the scheduler")
    # losses for imbalanced classes
    _add(opt, "--loss", default=t.loss, help="training loss: ce (cross-entropy) or focal")
    _add(opt, "--focal-gamma", type=float, default=t.focal_gamma, help="focal loss gamma (0 = cross-entropy)")
    _add(opt, "--class-weights", default=t.class_weights, metavar="none|balanced|W1,W2,...",
         help="class weights of the training loss: none, balanced (from the training split's counts) or one "
         "weight per class in label order")
    out = parser.add_argument_group("outputs")
    _add(out, "--project", default=t.project, help="project name; outputs go to checkpoints/<project>")
    _add(out, "--output-dir", default=None, help="output directory (default: checkpoints/<project>)")
    _add(out, "--load-this", default=None, metavar="CKPT", help="start from (or only evaluate) this checkpoint")
    _add(out, "--fit", action=argparse.BooleanOptionalAction, default=True, help="train")
    _add(out, "--evaluate", action=argparse.BooleanOptionalAction, default=True, help="evaluate on val and test")
    _add(out, "--baseline", action=argparse.BooleanOptionalAction, default=True,
         help="also fit logistic regression and PLS-DA on the same inputs and rows, and report them beside the network")
    _add(out, "--to-onnx", action="store_true", help="also export <stem>.onnx")
    _add(out, "--save-test-preds", action="store_true", help="write <stem>.csv with the test probabilities")
    _add(out, "--resume", action="store_true", help="resume from '<stem> last.ckpt' in the output directory")
    # experiment tracking
    _add(out, "--logger", dest="loggers", action="append", choices=["tensorboard", "mlflow", "csv"], default=None,
         help="where metrics go, repeatable (default: tensorboard); mlflow needs `pip install spectratorch[tracking]`")
    _add(out, "--mlflow-uri", default=None, metavar="URI",
         help="MLflow tracking server (default: a local store, sqlite:///<output dir>/mlflow.db)")
    _add_finetune_args(parser)
    hw = parser.add_argument_group("hardware (Lightning Trainer)")
    _add(hw, "--accelerator", default=t.accelerator, help="auto, cpu, gpu, ...")
    _add(hw, "--devices", default=t.devices, help="auto, a count, or a list like 0,1")
    _add(hw, "--precision", default=t.precision, help="auto (bf16/16-mixed on GPU, 32 on CPU), 32-true, ...")
    _add(hw, "--strategy", default=t.strategy, help="auto, ddp, ...")
    _add(hw, "--num-nodes", type=int, default=t.num_nodes, help="machines (torchrun or SLURM launch them)")
    _add(hw, "--limit-batches", type=float, default=None, help=argparse.SUPPRESS)
    _add_filter_args(parser)


def _add_finetune_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "fine-tuning", "With --load-this CKPT --finetune: train from the checkpoint on this data. Architecture,\n"
        "channels, axis, tabular columns and inference-time transforms must be the checkpoint's;\n"
        "the labels may differ (a new final layer).")
    _add(group, "--finetune", action="store_true",
         help="train from --load-this on this data: the same labels continue, other labels get a new head")
    _add(group, "--freeze-backbone-epochs", type=int, default=0, metavar="N",
         help="train the head alone for N epochs, then the whole network")
    _add(group, "--unfreeze-lr-factor", type=float, default=1.0,
         help="the backbone's learning rate, relative to --lr, once unfrozen")
    _add(group, "--keep-scaling", action="store_true",
         help="keep the checkpoint's min-max scaling (default: refit it on this training split)")


class _CommandsFormatter(_Formatter):
    """The top-level help: every command on one line with its one-line help."""

    def __init__(self, prog):
        # reason: the longest command (make-dataset) and the longest one-line help fit in 100 columns unwrapped.
        super().__init__(prog, max_help_position=24, width=100)

    def add_argument(self, action):
        super().add_argument(action)
        if isinstance(getattr(action, "choices", None), dict):
            # reason: argparse measures the commands without the indent it draws them with, so the longest one
            # would get its help on a second line.
            longest = max(len(name) for name in action.choices)
            self._action_max_length = max(self._action_max_length, self._current_indent + 4 + longest)


_TOP_DESCRIPTION = "Train classifiers of spectra (and a few tabular values) and ship each as one ONNX file."
_TOP_EPILOG = ("Your own spectra: a CSV with the wavelengths as column headers and a label column,\n"
               "  spectratorch cv --data my.csv                  (the accuracy to expect)\n"
               "  spectratorch train --data my.csv --test-source none --to-onnx   (the model, MODEL.onnx)\n"
               "  spectratorch predict MODEL.onnx new.csv -o predictions.csv\n"
               "`spectratorch COMMAND --help` lists a command's flags with their defaults.")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse's own print the whole usage first, 46 lines for
    ``train``, and the line that matters comes last)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``spectratorch`` parser with its subcommands."""
    parser = _Parser(prog="spectratorch", description=_TOP_DESCRIPTION, epilog=_TOP_EPILOG,
                     allow_abbrev=False, formatter_class=_CommandsFormatter)
    parser.add_argument("--version", action="version", version=f"spectratorch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model", formatter_class=_Formatter, allow_abbrev=False,
                           description="Train a classifier; writes the checkpoint, <stem>.json and TensorBoard logs. "
                           "The lab's old spellings (--target_codes, --train_source, --smooth_eps, --n_splits, "
                           "--current_split, ... every flag with _ for -) are accepted.")
    _add_train_args(train)

    make = sub.add_parser("make-dataset", help="generate the synthetic demo dataset", formatter_class=_Formatter,
                          allow_abbrev=False, description="Write a realistic maple-syrup-like dataset in the lab's "
                          "schema (cleaned as `convert` would), and optionally its raw instrument exports.")
    from spectratorch.data.demo import DEMO_SAMPLES

    make.add_argument("--samples", type=int, default=DEMO_SAMPLES, help="samples generated (before cleaning)")
    make.add_argument("--seed", type=int, default=0, help="generator seed")
    make.add_argument("-o", "--output", default=str(DEMO_DATA), help="dataset file (.pkl, .parquet, .csv, .tsv, "
                      ".xlsx)")
    make.add_argument("--raw-dir", default=None, help="also write the instrument's text exports of all samples here")
    make.add_argument("--instrument", default="A", choices=["A", "B"], type=str.upper,
                      help="which instrument's response to simulate: A (the lab's fluorimeter) or B (the next one, "
                      "blind where `simulate` zeroes, shifted axis, other detector, more noise)")

    convert = sub.add_parser("convert", help="convert instrument exports into a dataset", formatter_class=_Formatter,
                             allow_abbrev=False, description="Read EX_<channel>_<name>_I.txt and Y_<name>.txt "
                             "exports, join them on sequence, clean them, and write the dataset.")
    convert.add_argument("raw_dir", help="folder of the exports")
    convert.add_argument("-o", "--output", required=True, help="dataset file (.pkl, .parquet, .csv)")
    convert.add_argument("--saturation", nargs="+", default=None, metavar="CH=VALUE",
                         help="saturation thresholds per channel (defaults 277=6500 380=7000 425=10000)")
    convert.add_argument("--min-integral", nargs="+", default=None, metavar="CH=VALUE",
                         help="minimum spectrum integral per channel (defaults 277=150000 380=220000 425=300000)")
    convert.add_argument("--drop-oob", action=argparse.BooleanOptionalAction, default=True,
                         help="drop rows whose integration_oob is 1")
    _add_export_parser(sub)
    _add_predict_parser(sub)
    _add_app_parser(sub)
    _add_experiment_parsers(sub)
    report = sub.add_parser("report", help="draw the result sheet of a checkpoint", formatter_class=_Formatter,
                            allow_abbrev=False, description="Write '<stem> result sheet.png' beside the checkpoint "
                            "(calibration, confusion, ROC/PR, cutoffs, error contributions, what drives each class) "
                            "and put the cutoffs into '<stem>.onnx' when it is there.")
    report.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `spectratorch train`")
    report.add_argument("--data", default=None, help="dataset (default: the checkpoint's training data)")
    report.add_argument("-o", "--output", default=None, help="PNG file (default: '<stem> result sheet.png')")
    for command in sub.choices.values():
        # reason: after the command too (`spectratorch train -v`, `python train.py -v`); SUPPRESS keeps a -v given
        # before the command from being reset by the command's own default.
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return parser


# ---- experiments: cv -------------------------------------------------------------------------------------------
def _add_experiment_parsers(sub) -> None:
    cv = sub.add_parser("cv", help="train every fold of one configuration (cross-validation)",
                        formatter_class=_Formatter, allow_abbrev=False,
                        description="Train folds 0..n_splits-1 with the flags of `train` (each with its usual files), "
                        "then write '<stem with cv-N>.json' (per-fold, mean and std of every val and test metric) and "
                        "'<stem with cv-N> folds.png'. Folds already trained in the output directory are skipped, so "
                        "an interrupted CV resumes. --current-split is ignored.")
    _add_train_args(cv)
    group = cv.add_argument_group("cross-validation")
    _add(group, "--ensemble", action="store_true",
         help="also export '<stem with ens-N>.onnx', the mean of the folds' calibrated probabilities, and compare it "
         "with the mean fold on the test file (--test-source FILE)")
    _add(group, "--fold-workers", default="auto",
         help="folds trained at once: on the CPU this process and N-1 more share them, each on its share of the "
         "cores (on GPUs listed in --devices: one process per GPU); auto: on the CPU, one process per core from the "
         "start for a data file of 2 MB or more, else the first fold alone, then one process per core when its "
         "time says that is faster (a process takes about 8 s to start)")
    _add_tune_parser(sub)


def _add_tune_parser(sub) -> None:
    tune = sub.add_parser("tune", help="search hyperparameters with an Optuna study", formatter_class=_Formatter,
                          allow_abbrev=False,
                          description="Run trials of an Optuna study over the training flags named in --space (each "
                          "trial a normal run; poor ones pruned) until --trials have finished in its storage, then "
                          "write '<study> best.json' (the best trial as a `spectratorch train` command), "
                          "'<study> trials.csv' and the history and importance plots. Several processes on one "
                          "--storage share the study. The other flags are those of `train` and fix what is not "
                          "searched.")
    _add_train_args(tune)
    group = tune.add_argument_group("study")
    _add(group, "--space", required=True, metavar="SPACE.yaml",
         help="the searched flags and their ranges or choices (see examples/search_space.yaml)")
    _add(group, "--trials", type=int, required=True, help="finished trials the study should reach (all processes)")
    _add(group, "--storage", default=None, metavar="URL",
         help="Optuna storage URL, e.g. postgresql://user:pass@host/db (default: sqlite:///<output dir>/optuna.db)")
    _add(group, "--study-name", default=None, help="the study in the storage (default: the --project name)")
    _add(group, "--heartbeat", type=int, default=60,
         help="seconds between a trial's heartbeats; a trial silent for twice that (its process killed) is retried")


def _run_tune(args) -> int:
    from spectratorch.pipelines.space import load_space
    from spectratorch.pipelines.tune import tune

    base = config_from_args(args)
    result = tune(base, load_space(args.space, base), args.trials, storage=args.storage, study_name=args.study_name,
                  heartbeat=args.heartbeat)
    print(f"study {result['study']!r} ({result['storage']}): {result['n_trials']} trials {result['states']}")
    if "best" in result:
        best = result["best"]
        print(f"best trial {best['number']}: {result['target_metric']} {best['value']:.4f} with {best['params']}")
        print(f"command: {best['command']}")
    for kind, path in result["files"].items():
        print(f"{kind}: {path}")
    return 0


def _run_cv(args) -> int:
    from spectratorch.outputs import claim_output_dir
    from spectratorch.pipelines.cv import run_cv

    config = _with_data_defaults(config_from_args(args))
    with claim_output_dir(config.train.out_dir, f"spectratorch {args.command}"):
        result = run_cv(config, ensemble=args.ensemble, workers=args.fold_workers)
    print(_cv_table(result))
    for kind, path in result["files"].items():
        print(f"{kind}: {path}")
    return 0


def _with_data_defaults(config: RunConfig) -> RunConfig:
    """The target and channels that follow the data, resolved before the folds (their file names need them)."""
    if config.data.targets is not None and config.data.channels is not None:
        return config
    from spectratorch.data.datamodule import SpectralDataModule

    return SpectralDataModule(config.data).with_data_defaults(config, for_folds=True)


def _cv_table(result: dict) -> str:
    names = {"accuracy": "acc", "f1": "f1", "balanced_accuracy": "bacc", "auroc": "auroc"}
    columns = [(stage, name) for stage in ("val", "test") for name in names]
    # reason: a small-set fold has no validation fold; its val metrics are the inner CV it chose its model on.
    inner = bool(result["folds"]) and all(fold.get("protocol") == "inner-cv" for fold in result["folds"])
    shown = {"val": "inner" if inner else "val", "test": "test"}
    header = "split " + "".join(f"{shown[stage] + '_' + short:>12}" for stage, short in
                                ((stage, names[name]) for stage, name in columns))
    lines = [f"cv: {result['name']}", header]

    def row(label, metrics):
        values = [metrics.get(stage, {}).get(name) for stage, name in columns]
        return f"{label:>5} " + "".join(f"{'n/a':>12}" if v is None else f"{v:>12.4f}" for v in values)

    lines += [row(str(fold["split"]), fold["metrics"]) for fold in result["folds"]]
    lines += [row(key, result[key]) for key in ("mean", "std")]
    if inner:
        lines.append("inner_*: the out-of-fold scores of each fold's inner CV, on which it chose its model among the "
                     "candidates (optimistic); test_*: its test fold, the estimate")
    if result.get("per_class"):
        width = max(len(str(label)) for label in result["per_class"])
        lines.append("per class, the test folds pooled (every row tested once):")
        lines += [f"  {str(label):<{width}}  rows {s['support']:>5}  recall {s['recall']:.4f}  precision "
                  f"{s['precision']:.4f}  f1 {s['f1']:.4f}" for label, s in result["per_class"].items()]
    lines += _cv_baselines(result, names)
    test = (result.get("ensemble") or {}).get("test")
    if test:
        lines.append(f"ensemble on the test file ({test['n_test']} rows): " + ", ".join(
            f"{name} {test['ensemble'][name]:.4f} ({test['gain'][name]:+.4f} vs mean fold)"
            for name in (*names, "loss") if name in test["gain"]))
    lines.append("the model to ship: spectratorch train with the same flags and --test-source none --to-onnx (no test "
                 "rows; on a small set every row trains it)")
    return "\n".join(lines)


def _cv_baselines(result: dict, names: dict) -> list[str]:
    """One line per linear baseline fitted beside the folds: its mean over the same test rows; how the recipe's mean
    test accuracy and balanced accuracy compare with the best of them; and, with the test folds pooled, what always
    answering the commonest class scores (the level of no skill, which accuracy hides on unequal classes).

    Example:
        >>> _cv_baselines({"mean": {"test": {"accuracy": 0.9583333},
        ...                         "baseline_pls_da_test": {"accuracy": 0.95833334}}}, {"accuracy": "acc"})[-1]
        'mean test accuracy: this recipe 0.9583, best linear baseline 0.9583 (pls_da), +0.0000'
        >>> _cv_baselines({"mean": {}, "per_class": {"ok": {"support": 192}, "defect": {"support": 8}}}, {})[-1]
        "always the commonest class ('ok', 192 of 200 test rows): accuracy 0.9600, balanced accuracy 0.5000"
    """
    prefix, suffix = "baseline_", "_test"
    baselines = {key[len(prefix):-len(suffix)]: metrics for key, metrics in result["mean"].items()
                 if key.startswith(prefix) and key.endswith(suffix) and metrics}
    lines = [f"baseline {model} test (mean, same folds): " + ", ".join(
        f"{short} {metrics[name]:.4f}" for name, short in names.items() if metrics.get(name) is not None)
        for model, metrics in baselines.items()]
    for metric, said in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy")):
        scored = {model: m[metric] for model, m in baselines.items() if m.get(metric) is not None}
        recipe = result["mean"].get("test", {}).get(metric)
        if scored and recipe is not None:
            best = max(scored, key=scored.get)
            lines.append(f"mean test {said}: this recipe {recipe:.4f}, best linear baseline {scored[best]:.4f} "
                         f"({best}), {round(recipe - scored[best], 4) + 0.0:+.4f}")  # reason: + 0.0: no -0.0
    support = {label: s["support"] for label, s in (result.get("per_class") or {}).items()}
    if support and sum(support.values()):
        label = max(support, key=support.get)
        lines.append(f"always the commonest class ({label!r}, {support[label]} of {sum(support.values())} test rows): "
                     f"accuracy {support[label] / sum(support.values()):.4f}, balanced accuracy "
                     f"{1 / len(support):.4f}")
    return lines


def _add_export_parser(sub) -> None:
    export = sub.add_parser("export", help="export a checkpoint as one ONNX file", formatter_class=_Formatter,
                            allow_abbrev=False, description="Write <stem>.onnx: preprocessing, network and "
                            "temperature-calibrated softmax, checked against torch on real data.")
    export.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `spectratorch train`")
    export.add_argument("-o", "--output", default=None, help="ONNX file (default: <stem>.onnx beside the checkpoint)")
    export.add_argument("--data", default=None,
                        help="dataset to calibrate and check on (default: the checkpoint's training data)")
    _add(export, "--n-check", type=int, default=256, help="samples on which onnxruntime must match torch")


def _add_predict_parser(sub) -> None:
    predict = sub.add_parser("predict", help="predict with an exported model (no torch needed)",
                             formatter_class=_Formatter, allow_abbrev=False,
                             description="Predict every sample of a dataset file or a folder of instrument exports "
                             "with an exported model; writes one CSV row per sample.")
    predict.add_argument("model", metavar="MODEL", help="the .onnx file")
    predict.add_argument("data", metavar="DATA",
                         help="dataset file (.csv, .tsv, .txt, .xlsx, .parquet, .pkl) or a folder of exports")
    predict.add_argument("-o", "--output", required=True, help="predictions CSV")
    _add(predict, "--top-k", type=int, default=2, help="ranked classes listed per sample")
    _add(predict, "--cutoff", default="auto",
         help="under this top probability a sample is 'unclassified': auto (the model's cutoff, if any), none, "
              "a probability, or the name of one of the model's cutoffs")
    _add(predict, "--coverage", type=float, default=None,
         help="add each sample's conformal label set (`set`, `set_size`): the classes that hold its true class "
              "with this probability, e.g. 0.9 (levels the model's calibration rows support)")
    _add(predict, "--batch-size", type=int, default=256,
         help="samples per onnxruntime call (fewer: less memory; MiniRocket models hold a call's features)")
    _add(predict, "--threads", type=int, default=None, help="onnxruntime threads (default: the physical cores)")


def _add_app_parser(sub) -> None:
    app = sub.add_parser("app", help="the inspectors' page: choose a model, drop a file, read the predictions",
                         formatter_class=_Formatter, allow_abbrev=False,
                         description="Serve a local web page (Streamlit; needs `pip install \"spectratorch[app]\"`, "
                         "no torch) that lists the .onnx models of a folder, predicts an uploaded dataset file or zip "
                         "of instrument exports, shows the predictions, class counts and one sample's spectra with "
                         "the wavelengths that drove it, and downloads the CSV `spectratorch predict` writes. "
                         "Ctrl-C stops it.")
    app.add_argument("--models", default="checkpoints", metavar="DIR",
                     help="folder searched (with its subfolders) for .onnx models")
    app.add_argument("--port", type=int, default=8501, help="TCP port of the page")
    app.add_argument("--address", default="localhost",
                     help="interface to listen on; localhost = this PC only, 0.0.0.0 = the whole network")
    _add(app, "--max-upload-mb", type=int, default=200, help="largest file the page accepts, in MB")
    app.add_argument("--browser", action=argparse.BooleanOptionalAction, default=False,
                     help="open the page in the default web browser")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Map parsed flags to the configuration dataclasses by field name."""
    values = dict(vars(args))
    if "arch_opts" in values:
        pairs = parse_pairs(values["arch_opts"], "--arch-opt")
        values["arch_opts"] = {}
        if pairs:
            # reason: the declarations live with the builders (torch); read only when --arch-opt is given.
            from spectratorch.models.registry import parse_arch_options

            values["arch_opts"] = parse_arch_options(values.get("arch", "auto"), pairs)

    def _pick(cls):
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    return RunConfig(_pick(DataConfig), _pick(ModelConfig), _pick(TrainConfig))


def _flag_tokens(action: argparse.Action, value) -> list[str]:
    """The tokens that make ``action`` parse to ``value``."""
    flag = next(s for s in action.option_strings if s.startswith("--") and not _is_alias(s))
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag if value else "--no-" + flag[2:]]
    if action.nargs == 0:  # store_true
        return [flag] if value else []
    if isinstance(value, dict):
        return [token for key, item in value.items() for token in (flag, f"{key}={format_value(item)}")]
    if isinstance(action, argparse._AppendAction):
        return [token for item in value for token in (flag, str(item))]
    if action.dest == "block_units":
        return [flag, "_".join(str(v) for v in value)]
    if isinstance(value, (list, tuple)):
        if not value:
            return [flag] if action.nargs == "*" else [flag, "none"]
        return [flag, *map(str, value)]
    return [flag, str(value)]


def train_command(config: RunConfig) -> str:
    """A ``spectratorch train`` command line that reproduces ``config``, built by walking the parser's flags (flags
    at their defaults are left out).

    Example:
        >>> train_command(RunConfig(DataConfig(channels=("277", "380")), ModelConfig(arch="TinyVGG"),
        ...                         TrainConfig(lr=0.003, loggers=("csv",))))
        'spectratorch train --channels 277 380 --arch TinyVGG --lr 0.003 --logger csv'
    """
    import shlex

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_train_args(parser)
    default = config_from_args(parser.parse_args([]))
    groups = (config.data, config.model, config.train)
    tokens = ["spectratorch", "train"]
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        for group, default_group in zip(groups, (default.data, default.model, default.train)):
            if hasattr(group, action.dest):
                value = getattr(group, action.dest)
                if value != getattr(default_group, action.dest):
                    tokens += _flag_tokens(action, value)
                break
    return " ".join(shlex.quote(t) for t in tokens)


def _thresholds(pairs: list[str] | None, defaults: dict[str, float], option: str) -> dict[str, float]:
    result = dict(defaults)
    for pair in pairs or ():
        channel, sep, value = pair.partition("=")
        try:
            result[channel] = float(value)
        except ValueError:
            raise ConfigError(f"{option} expects CHANNEL=VALUE like 277=6500; got {pair!r}.") from None
        if not sep:
            raise ConfigError(f"{option} expects CHANNEL=VALUE like 277=6500; got {pair!r}.")
        if channel not in defaults:
            raise ConfigError(f"{option} {pair}: no channel {channel!r}; the thresholds are per excitation channel, "
                              f"{', '.join(defaults)}.")
    return result


def _run_train(args) -> int:
    config = config_from_args(args)  # reason: flag errors come before the seconds torch and lightning take to import.
    from spectratorch.outputs import claim_output_dir
    from spectratorch.pipelines.run import train

    with claim_output_dir(config.train.out_dir, f"spectratorch {args.command}"):
        summary = train(config)
    _print_summary(summary)
    return 0


def _shown(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None)


def _print_summary(summary: dict) -> None:
    lines = [f"model: {summary['name']}", f"labels: {summary['labels']}"]
    # reason: the small-set protocol has no validation fold; its val metrics are the inner CV it chose the model on.
    inner = (summary.get("arch_selection") or {}).get("protocol") == "inner-cv"
    for stage, metrics in summary["metrics"].items():
        if stage == "baseline":
            continue
        label = "val (inner CV, out of fold: what the model was chosen on, optimistic)" if inner and stage == "val" \
            else stage
        lines.append(f"{label}: {_shown(metrics)}")
    for name, result in summary["metrics"].get("baseline", {}).items():
        for stage in ("val", "test"):
            if stage in result:
                lines.append(f"baseline {name} {stage}: {_shown(result[stage])}")
    if summary.get("baseline_check"):
        lines.append(summary["baseline_check"]["message"])
    lines += [f"{kind}: {path}" for kind, path in summary["files"].items()]
    if "onnx" not in summary["files"] and "checkpoint" in summary["files"]:
        # reason: predict takes the ONNX file; without --to-onnx the run leaves the checkpoint only.
        lines.append("no ONNX file (predict and the page take one): add --to-onnx, or spectratorch export CKPT")
    print("\n".join(lines))


def _run_make_dataset(args) -> int:
    from spectratorch.config import MAX_SEED
    from spectratorch.data.demo import write_demo_dataset

    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be an integer in 0..{MAX_SEED}; got {args.seed}.")
    if args.samples < 1:
        raise ConfigError(f"--samples must be at least 1; got {args.samples}.")
    report = write_demo_dataset(args.output, args.samples, args.seed, args.instrument, args.raw_dir)
    _logger.info("cleaning removed %s", report["removed"])
    print(json.dumps({k: v for k, v in report.items() if k != "raw_files"}))
    return 0


def _run_convert(args) -> int:
    from spectratorch.data.raw import MIN_INTEGRALS, SATURATION_THRESHOLDS, convert

    report = convert(
        args.raw_dir,
        args.output,
        saturation=_thresholds(args.saturation, SATURATION_THRESHOLDS, "--saturation"),
        min_integral=_thresholds(args.min_integral, MIN_INTEGRALS, "--min-integral"),
        drop_oob=args.drop_oob,
    )
    for rule, count in report.items():
        print(f"{rule}: {count} rows removed")
    print(f"wrote {args.output}")
    return 0


def _run_export(args) -> int:
    from spectratorch.export.onnx import export_onnx
    from spectratorch.outputs import check_output_file

    if args.n_check < 1:
        raise ConfigError(f"--n-check must be at least 1; got {args.n_check}.")
    if args.output is not None:
        inputs = {"the checkpoint": args.checkpoint, **({"the data": args.data} if args.data else {})}
        check_output_file(args.output, inputs, example=f"{Path(args.checkpoint).stem}.onnx")
    path = export_onnx(args.checkpoint, args.output, args.data, n_check=args.n_check)
    print(f"wrote {path}")
    return 0


def _run_predict(args) -> int:
    # reason: only torch-free modules on this path, so predict runs where torch is not installed.
    from spectratorch.contract import OOD_CONFIDENCE
    from spectratorch.inference import Predictor, describe_outliers, describe_scores, write_predictions
    from spectratorch.outputs import check_output_file

    check_output_file(args.output, {"the model": args.model, "the data": args.data})
    predictor = Predictor(args.model, threads=args.threads)
    frame = predictor.predict_file(args.data, top_k=args.top_k, cutoff=args.cutoff, batch_size=args.batch_size,
                                   coverage=args.coverage)
    write_predictions(frame, args.output)
    # reason: after the work, so that a refusal stays the one line it is.
    for note in predictor.trust_notes():
        print(note, file=sys.stderr)
    skipped = {rule: n for rule, n in frame.attrs.get("skipped", {}).items() if n}
    in_place = len(frame.attrs.get("skipped_rows") or [])
    print(f"wrote {args.output}: {len(frame)} samples" + (f", skipped {skipped}" if skipped else "")
          + (f"; the data's {in_place} skipped rows are in the file in their places, with no prediction and the "
             "reason in column 'skipped'" if in_place else ""))
    if frame.attrs.get("against_labels"):
        print(describe_scores(frame.attrs["against_labels"], frame.attrs["cutoff"]))
    ood = predictor.metadata.get("ood") or {}
    outliers = describe_outliers(frame, ood.get("confidence", OOD_CONFIDENCE), ood.get("n_held_out"))
    if outliers:
        print(f"warning: {outliers}", file=sys.stderr)
    return 0


def _run_app(args) -> int:
    # reason: the page and its launcher import no torch, so the app runs on an inference-only install.
    from spectratorch.app.launch import launch

    return launch(args.models, args.port, args.address, args.max_upload_mb, headless=not args.browser)


def _run_report(args) -> int:
    from spectratorch.export.onnx import checkpoint_stem, stored_metrics, stored_out_of_fold, update_metadata
    from spectratorch.outputs import check_output_file
    from spectratorch.report.sheet import baseline_accuracies, make_result_sheet
    from spectratorch.training.restore import datamodule_from_hparams, load_module

    checkpoint = Path(args.checkpoint)
    if args.output is not None:
        inputs = {"the checkpoint": checkpoint, **({"the data": args.data} if args.data else {})}
        check_output_file(args.output, inputs, example="result sheet.png")
    module = load_module(checkpoint)
    stem = checkpoint_stem(checkpoint, dict(module.hparams))
    dm = datamodule_from_hparams(dict(module.hparams), args.data)
    dm.prepare()
    # reason: the run's baselines were scored on its own test rows, so they are titled only on a sheet of those rows.
    baseline = baseline_accuracies(stored_metrics(checkpoint, stem)) if args.data is None else None
    sheet = make_result_sheet(module, dm, args.output or checkpoint.with_name(f"{stem} result sheet.png"), stem,
                              baseline=baseline, out_of_fold=stored_out_of_fold(checkpoint))
    onnx_path = checkpoint.with_name(f"{stem}.onnx")
    # reason: the model's cutoffs are chosen on its own rows at its own temperature; a sheet of other data refits the
    # temperature on that data, and its cutoffs would not be the ones the model's probabilities need.
    if onnx_path.is_file() and args.data is None:
        update_metadata(onnx_path, cutoffs={k: v for k, v in sheet["cutoffs"].items() if v is not None})
    print(json.dumps({**{k: v for k, v in sheet.items() if k != "cutoff_table"}, "baselines": baseline or {}}))
    return 0


_COMMANDS = {"train": _run_train, "make-dataset": _run_make_dataset, "convert": _run_convert,
             "export": _run_export, "predict": _run_predict, "report": _run_report, "app": _run_app,
             "cv": _run_cv, "tune": _run_tune}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spectratorch`` command."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except ModuleNotFoundError as err:
        return _without_training_part(err, argv)
    except KeyboardInterrupt:
        print("spectratorch: interrupted", file=sys.stderr)
        return 130
    report_to_console(logging.DEBUG if args.verbose else logging.INFO)
    # reason: SIGTERM (`timeout`, `docker stop`, a queue's time limit) would end the process where it stands, leaving
    # the temporary file of a write in progress; as an exception, the writes clean up and the run says so.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return _COMMANDS[args.command](args)
    except ModuleNotFoundError as err:
        return _without_training_part(err, [args.command])
    except _Terminated:
        print(f"spectratorch {args.command}: {_stopped('stopped by SIGTERM', args.command)}", file=sys.stderr)
        return 143
    except SpectratorchError as err:
        print(f"spectratorch {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spectratorch {args.command}: {_stopped('interrupted', args.command)}", file=sys.stderr)
        return 130
    except SystemExit as stop:
        # reason: inside a command only Lightning exits: sys.exit(1) after Ctrl-C, and an exception without a code
        # (exit status 0, as if the run had finished) after SIGTERM (`timeout`, `docker stop`, a batch queue's limit).
        terminated = type(stop).__name__ == "SIGTERMException" or stop.code is None
        how = "stopped by SIGTERM" if terminated else "interrupted"
        print(f"spectratorch {args.command}: {_stopped(how, args.command)}", file=sys.stderr)
        return 143 if terminated else 130
    except (MemoryError, OSError) as err:
        if args.verbose:
            raise
        if isinstance(err, MemoryError) or err.errno == errno.ENOMEM:
            print(f"spectratorch {args.command}: error: {_OUT_OF_MEMORY.get(args.command, _OUT_OF_MEMORY[None])}",
                  file=sys.stderr)
            return 1
        # reason: a full disk, a read-only folder or a name too long for the file system, met while writing.
        where = f"{err.filename}: " if err.filename else ""
        print(f"spectratorch {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


# reason: predict reads its data file whole (about 30 KB per row of a 2,000-point CSV at its peak; doc/INFERENCE.md)
_OUT_OF_MEMORY = {
    "predict": "not enough memory: predict reads the whole data file at once; split it into smaller files (a tenth "
               "of its rows each, say) and predict each",
    None: "not enough memory for this run: close other programs, or use a smaller data file or --batch-size",
}


# reason: what the inference-only install (requirements-inference.txt) leaves out; `predict` and the page need none.
_TRAINING_PACKAGES = ("torch", "lightning", "torchmetrics", "sklearn", "scipy", "onnx", "matplotlib", "tensorboard")


def _without_training_part(err: ModuleNotFoundError, argv: list[str] | None) -> int:
    """One line for a command that needs the training install where only the inference one is; else re-raised."""
    missing = (err.name or "").split(".")[0]
    if missing not in _TRAINING_PACKAGES:
        raise err
    words = sys.argv[1:] if argv is None else argv
    command = next((word for word in words if word in _COMMANDS), "")
    print(f"spectratorch{' ' + command if command else ''}: error: this needs the full install ({missing} is missing "
          "here; the install of requirements-inference.txt runs predict, convert, make-dataset and the page): pip "
          "install . with its requirements (torch included), as the README says", file=sys.stderr)
    return 2


class _Terminated(BaseException):
    """SIGTERM, raised where the process stands (a BaseException, as KeyboardInterrupt is: no `except Exception`
    swallows it)."""


def _terminate(signum, frame):
    raise _Terminated


# reason: how to go on after an interrupted run, per command.
_AGAIN = {"train": "; the same command with --resume continues a network's training from '<stem> last.ckpt'",
          "cv": "; the same command again continues: the finished folds are kept",
          "tune": "; the same command again continues the study when it has --storage"}


def _stopped(how: str, command: str) -> str:
    """The one line of a command stopped before its end.

    Example:
        >>> _stopped("interrupted", "cv")
        'interrupted before the end (a file it had not finished is not written); the same command again continues: \
the finished folds are kept'
    """
    return f"{how} before the end (a file it had not finished is not written){_AGAIN.get(command, '')}"


if __name__ == "__main__":
    sys.exit(main())
