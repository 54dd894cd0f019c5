"""One training run, end to end: data, model, Lightning fit, evaluation and the files a run writes.

Files, all starting with the model name (the stem), in the output directory:
``<stem>_<val_loss:.3E>_<val_f1:.4f>_<val_accuracy:.4f>.ckpt`` (best), ``<stem> last.ckpt`` (to resume),
``<stem>.json`` (configuration, labels, class counts, metrics, files), ``<stem>.csv`` (test predictions, with
``--save-test-preds``) and TensorBoard logs under ``logs/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Sequence

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

from spectratorch._version import __version__
from spectratorch.config import RunConfig
from spectratorch.contract import model_name
from spectratorch.data.datamodule import SpectralDataModule
from spectratorch.data.io import atomic_path, data_fingerprint
from spectratorch.defaults import LARGE_TRAIN, auto_arch, resolve_defaults
from spectratorch.errors import CheckpointError, ConfigError
from spectratorch.export.calibration import calibration_report, negative_log_likelihood, softmax
from spectratorch.metrics import confusion_counts
from spectratorch.models.batched import BATCH_SIZE, predict_logits, run_batched
from spectratorch.models.registry import is_model, list_models
from spectratorch.outputs import remove_earlier_best, warn_if_replacing
from spectratorch.report.sheet import baseline_accuracies, make_result_sheet
from spectratorch.training.baseline import compare_with_baseline, fit_baselines, preprocessed_features
from spectratorch.training.hardware import check_hardware
from spectratorch.training.loggers import (
    check_loggers,
    log_artifacts,
    log_dir,
    log_hparams,
    make_loggers,
    tensorboard_writer,
)
from spectratorch.training.losses import resolve_class_weights
from spectratorch.training.module import METRIC_NAMES, SELECT_METRIC, SpectralModule
from spectratorch.training.restore import checkpoint_differences, load_module, read_checkpoint
from spectratorch.transforms import preprocess_options

__all__ = ["train", "resolve_precision", "checkpoint_differences", "predict_probabilities"]

_logger = logging.getLogger(__name__)



def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` -> ``bf16-mixed`` on a GPU that supports it, ``16-mixed`` on other GPUs, ``32-true`` on CPU."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if not on_gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".spectratorch-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"the output directory {directory} is not writable ({err.strerror}); choose another "
                          "with --output-dir.") from None


def _module_kwargs(config: RunConfig, dm: SpectralDataModule) -> dict:
    return dict(
        arch=config.model.arch,
        channels=list(dm.table.channels),
        axis=[float(x) for x in dm.table.axis],
        tabular_columns=list(dm.table.tabular_columns),
        channel_ranges=dm.table.describe()["channel_ranges"],
        labels=list(dm.labels),
        transforms=list(config.data.transforms),
        arch_kwargs=config.model.arch_kwargs(),
        preprocess_kwargs=preprocess_options(config.data),
        eps=config.train.eps,
        lr=config.train.lr,
        weight_decay=config.train.weight_decay or 0.0,
        target_metric=config.train.target_metric,
        scheduler_patience=config.train.scheduler_patience,
        scheduler_cooldown=config.train.scheduler_cooldown,
        seed=config.data.seed,
        config=config.to_dict(),
        # losses: balanced weights come from the training split's counts
        loss=config.train.loss,
        focal_gamma=config.train.focal_gamma,
        class_weights=resolve_class_weights(config.train.class_weights, dm.class_counts()["train"]),
    )


def _load_module(path: str, expected: dict) -> SpectralModule:
    module = load_module(path)
    differences = checkpoint_differences(dict(module.hparams), expected)
    if differences:
        # reason: other data or labels are what --finetune is for; a user with new labels reads the way here.
        hint = (" (to train it on other labels or data, add --finetune)"
                if any(d.startswith(("labels", "axis")) for d in differences) else "")
        raise CheckpointError(f"--load-this {path} was trained with another configuration: " + "; ".join(differences)
                              + hint)
    # reason: the run's own optimisation settings apply (a fine-tune may use another lr or eps).
    for key in ("eps", "lr", "weight_decay", "target_metric", "scheduler_patience", "scheduler_cooldown", "seed",
                "config", "loss", "focal_gamma", "class_weights"):
        module.hparams[key] = expected[key]
    weights = expected["class_weights"]
    module.class_weights = None if weights is None else torch.tensor(weights, dtype=torch.float32)
    return module


def _callbacks(config: RunConfig, stem: str, out_dir: Path) -> tuple[ModelCheckpoint, list]:
    metric, mode = config.train.target_metric, config.train.metric_mode
    # reason: the target metric with the validation loss as tie-breaker (see SpectralModule), for "max" metrics.
    metric = SELECT_METRIC if mode == "max" else metric
    checkpoint = ModelCheckpoint(
        dirpath=out_dir,
        filename=stem + "_{val_loss:.3E}_{val_f1:.4f}_{val_accuracy:.4f}",
        monitor=metric,
        mode=mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    # reason: Lightning (2.6) writes a `save_last` checkpoint only in an epoch that also saved a best one; a
    # second callback without a monitor rewrites `<stem> last.ckpt` after every epoch, placed after early stopping
    # so that the state it saves includes the epoch's patience count.
    latest = ModelCheckpoint(dirpath=out_dir, filename=f"{stem} last", monitor=None, save_top_k=1, every_n_epochs=1,
                             auto_insert_metric_name=False, enable_version_counter=False)
    stopping = EarlyStopping(monitor=metric, mode=mode, patience=config.train.early_stop_patience)
    return checkpoint, [checkpoint, stopping, latest]


def _trainer(config: RunConfig, out_dir: Path, stem: str, callbacks: list, resuming: bool = False) -> pl.Trainer:
    t = config.train
    logger = make_loggers(config, out_dir, stem, resuming)
    devices = int(t.devices) if str(t.devices).isdigit() else t.devices
    limit = t.limit_batches
    from spectratorch.pipelines.fold_bars import bars_drawn

    # reason: in a log file (CI, nohup) a bar redrawn every batch is megabytes of noise; while cv shares its folds
    # between processes, their bars would draw over each other's line.
    bars = [TQDMProgressBar(refresh_rate=1 if sys.stderr.isatty() else 25)] if bars_drawn() else []
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=resolve_precision(t.precision, t.accelerator),
        max_epochs=t.max_epochs,
        callbacks=[*callbacks, LearningRateMonitor(logging_interval="epoch"), *bars],
        enable_progress_bar=bool(bars),
        logger=logger,
        default_root_dir=str(out_dir),
        use_distributed_sampler=False,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        limit_train_batches=limit,
        limit_val_batches=limit,
        limit_test_batches=limit,
        enable_model_summary=False,
    )


def predict_probabilities(module: SpectralModule, dm: SpectralDataModule, stage: str,
                          batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Class probabilities ``[N, K]`` of ``stage``'s rows (batched, on the module's device)."""
    rows = dm.stage_arrays(stage)
    module.eval()
    outputs = run_batched(lambda s, t: module(s, t).float().softmax(dim=1), (rows.spectra, rows.tabular), batch_size,
                          next(module.parameters()).device)
    return outputs[0].numpy() if outputs else np.zeros((0, dm.n_classes), np.float32)


def _write_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (Path,)):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def _stage_metrics(results: list[dict], stage: str) -> dict:
    merged = {k: float(v) for result in results for k, v in result.items()}
    return {name: merged.get(f"{stage}_{name}") for name in METRIC_NAMES}


def _save_test_predictions(path: Path, module: SpectralModule, dm: SpectralDataModule,
                           probabilities: np.ndarray | None = None) -> None:
    rows = dm.stage_arrays("test")
    if probabilities is None:
        probabilities = predict_probabilities(module, dm, "test")
    frame = pd.DataFrame(probabilities, columns=[f"p_{label}" for label in dm.labels])
    frame.insert(0, "truth", np.asarray(dm.labels, dtype=object)[rows.y.numpy()])
    frame.insert(0, "full_truth", rows.full_truth)
    frame.insert(0, "id", rows.ids)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def train(config: RunConfig, callbacks: Sequence = (), arch_selection: dict | None = None,
          result_sheet: bool = True, datamodule: SpectralDataModule | None = None) -> dict:
    """Run one training: load, split, fit, pick the best checkpoint, evaluate, write the outputs.

    With ``--arch auto`` the architecture is chosen first (:func:`_train_auto`): by rule on the lab's large sets, else
    by the small-set protocol (inner cross-validation of the training rows, solved heads, refit on all of them:
    :mod:`spectratorch.pipelines.small`), which also fits an explicit solved head (``Linear``, ``PLSDA``,
    ``MiniRocket``) on fewer than ``LARGE_TRAIN`` training rows.

    Args:
        config: the run's configuration.
        callbacks: more Lightning callbacks for the fit (e.g. a tuning study's pruning callback; not passed to the
            candidates of ``--arch auto``).
        arch_selection: how the architecture was chosen, recorded in the JSON (set by ``--arch auto``).
        result_sheet: draw the result sheet (the candidates of ``--arch auto`` skip it).
        datamodule: the data already loaded for ``config.data`` (``--arch auto`` loads it once for every run).

    Returns:
        The summary written to ``<stem>.json``.

    Raises:
        ConfigError, SchemaError, TargetError, SplitError, CheckpointError: before training starts.
    """
    out_dir = config.train.out_dir
    if config.train.finetune:
        from spectratorch.training.finetune import inherit_from_parent

        config = inherit_from_parent(config)
    if config.model.arch == "auto" and config.train.load_this:
        config = _with_arch(config, _checkpoint_arch(config.train.load_this))
    if config.model.arch != "auto" and not is_model(config.model.arch):
        raise ConfigError(f"unknown --arch {config.model.arch!r}; expected one of {list_models()} or auto.")
    check_hardware(config.train)
    _check_writable(out_dir)
    check_loggers(config.train.loggers, config.train.mlflow_uri)
    if config.model.arch == "auto":
        return _train_auto(config)
    pl.seed_everything(config.data.seed, workers=True, verbose=False)
    dm = datamodule if datamodule is not None else SpectralDataModule(config.data)
    config = dm.with_data_defaults(config)
    _check_name(config)
    if _solved_on_small_set(config, dm):
        from spectratorch.pipelines.small import solved_candidate, train_small

        return train_small(config, dm, [solved_candidate(config.model.arch)], result_sheet=result_sheet)
    config = resolve_defaults(config, len(dm.split.train))
    dm.config = config.data
    stem = model_name(config.name_fields())
    earlier_best = set()
    if config.train.fit and not config.train.resume and not config.train.finetune:
        earlier_best = warn_if_replacing(out_dir, stem)
    expected = _module_kwargs(config, dm)
    finetune = None
    if config.train.finetune:
        from spectratorch.training.finetune import Finetune

        finetune = Finetune(config.train, expected, dm.train_arrays(), stem)
        module = finetune.module
    elif config.train.load_this:
        module = _load_module(config.train.load_this, expected)
    else:
        module = SpectralModule(**expected)
        module.model.fit(*dm.train_arrays(), y=dm.train_labels(), seed=config.data.seed)
    checkpoint, own_callbacks = _callbacks(config, stem, out_dir)
    if finetune is not None:
        own_callbacks.append(finetune.callback)
    last = out_dir / f"{stem} last.ckpt"
    resume_from = None
    if config.train.fit and config.train.resume:
        if last.is_file():
            read_checkpoint(last)  # reason: a hostile file is refused in one line before Lightning reads it
            resume_from = str(last)
            _logger.info("resuming from %s", last)
        else:
            _logger.warning("--resume: %s does not exist; starting from the beginning", last)
    trainer = _trainer(config, out_dir, stem, [*own_callbacks, *callbacks], resuming=resume_from is not None)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    if config.train.fit:
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from)
        best = checkpoint.best_model_path
        if best:
            module = load_module(best)
    summary = {
        "name": stem,
        "version": __version__,
        "config": config.to_dict(),
        "labels": list(dm.labels),
        "description": dm.table.describe(),
        "class_counts": dm.class_counts(),
        "filters_removed": dm.table.report,
        "data_files": data_fingerprint(config.data),
        "arch_selection": arch_selection,
        "metrics": {},
        "files": {},
    }
    if finetune is not None:
        summary["parent"] = finetune.lineage["parent"]
        summary["finetune"] = finetune.record()
    # reason: --test-source none leaves no test rows (the final model of a set cv has estimated): nothing to test.
    tested = config.data.test_source != "none"
    if config.train.evaluate:
        summary["metrics"]["val"] = _stage_metrics(trainer.validate(module, datamodule=dm, verbose=False), "val")
        if tested:
            summary["metrics"]["test"] = _stage_metrics(trainer.test(module, datamodule=dm, verbose=False), "test")
    if not trainer.is_global_zero:
        return summary
    files = summary["files"]
    if config.train.fit and checkpoint.best_model_path:
        files["checkpoint"] = str(Path(checkpoint.best_model_path))
        files["last_checkpoint"] = str(last)
        remove_earlier_best(earlier_best, checkpoint.best_model_path, keep=[config.train.load_this])
    elif config.train.load_this:
        files["checkpoint"] = str(config.train.load_this)
    if log_dir(trainer):
        files["logs"] = log_dir(trainer)
    sheet_wanted = config.train.evaluate and result_sheet and tested
    onnx_wanted = config.train.to_onnx and "checkpoint" in files
    test_preds_wanted = config.train.save_test_preds and tested
    # reason: one temperature per run, fitted once: the result sheet draws the one the ONNX file stores, and the
    # reported losses and the saved test probabilities are those of the calibrated model the ONNX file holds.
    calibration = _calibration(module, dm) if config.train.evaluate or onnx_wanted or test_preds_wanted else None
    test_probabilities = None
    if calibration is not None:
        summary["calibration"] = {key: calibration[key] for key in ("temperature", "nll_before", "nll_after")}
        if "val" in summary["metrics"]:
            summary["metrics"]["val"]["loss"] = calibration["nll_after"]
        if tested and (test_preds_wanted or config.train.evaluate):
            test_probabilities, test_y = _calibrated_test(summary["metrics"], module, dm, calibration)
            summary["confusion"] = {"test": confusion_counts(test_y, test_probabilities.argmax(1), dm.n_classes)}
    if test_preds_wanted:
        files["test_predictions"] = str(out_dir / f"{stem}.csv")
        _save_test_predictions(out_dir / f"{stem}.csv", module, dm, test_probabilities)
    if config.train.evaluate and config.train.baseline:
        _add_baseline(summary, module, dm, config, tested)
    if sheet_wanted:
        sheet = make_result_sheet(module, dm, out_dir / f"{stem} result sheet.png", stem,
                                  tensorboard=tensorboard_writer(trainer),
                                  baseline=baseline_accuracies(summary["metrics"]),
                                  temperature=calibration["temperature"])
        files["result_sheet"] = sheet.pop("result_sheet")
        # reason: the sheet's calibration error is of the test rows; the record's NLL (and the ONNX's ECE) of the
        # validation rows the temperature was fitted on.
        summary["calibration"].update({f"test_{k}" if k.startswith("ece_") else k: v for k, v in sheet.items()})
    if onnx_wanted:
        from spectratorch.export.onnx import export_onnx, read_metadata

        # reason: the sheet's cutoffs (the same rows and temperature as the export's) go in the file, so that the
        # JSON and the ONNX hold the same digits.
        files["onnx"] = str(export_onnx(files["checkpoint"], out_dir / f"{stem}.onnx", dm, metrics=summary["metrics"],
                                        calibration=calibration,
                                        cutoffs=summary.get("calibration", {}).get("cutoffs")))

        exported = read_metadata(files["onnx"])
        # reason: the conformal calibration and the outlier model's limits travel in the ONNX; the JSON repeats them.
        summary["trust"] = {"conformal": exported.get("conformal"), "ood": exported.get("ood")}
    files["json"] = str(out_dir / f"{stem}.json")
    _log_hparams(trainer, config, summary)
    _write_json(out_dir / f"{stem}.json", summary)
    log_artifacts(trainer, files)
    return summary


def _with_arch(config: RunConfig, arch: str, **train_changes) -> RunConfig:
    return dataclasses.replace(config, model=dataclasses.replace(config.model, arch=arch),
                               train=dataclasses.replace(config.train, **train_changes))


def _checkpoint_arch(path: str) -> str:
    try:
        return read_checkpoint(path)["hyper_parameters"]["arch"]
    except KeyError:
        raise CheckpointError(f"--load-this {path}: not a spectratorch checkpoint (no architecture).") from None


def _train_auto(config: RunConfig) -> dict:
    """``--arch auto``: VGG11 on the lab's large sets; else the small-set protocol (``pipelines/small.py``)."""
    dm = SpectralDataModule(config.data)
    config = dm.with_data_defaults(config)
    _check_name(config)
    n_train = len(dm.split.train)
    chosen = auto_arch(config.data.channels, n_train)
    if chosen is not None:
        rule = f"the lab's channels and {n_train} >= {LARGE_TRAIN} training rows: {chosen}"
        _logger.info("--arch auto: %s", rule)
        return train(_with_arch(config, chosen), arch_selection={"rule": rule, "chosen": chosen}, datamodule=dm)
    from spectratorch.pipelines.small import train_small

    return train_small(config, dm)


def _check_name(config: RunConfig) -> None:
    """Refuse, before any training, a run whose files' names would be too long (many channels): the name is checked
    with the longest architecture and preprocessing variant ``--arch auto`` may still choose."""
    fields = config.name_fields()
    if config.model.arch == "auto":
        fields = {**fields, "arch": max(list_models(), key=len),
                  "transforms": (*(fields.get("transforms") or ()), "snv")}
    model_name(fields)


def small_protocol(config: RunConfig, dm: SpectralDataModule) -> bool:
    """Whether :func:`train` of ``config`` (defaults resolved from ``dm``) runs the small-set protocol, which trains on
    the validation fold too: ``--arch auto`` outside the lab's large-set rule, or an explicit solved head on a small
    set."""
    if config.model.arch == "auto":
        return not config.train.load_this and auto_arch(config.data.channels, len(dm.split.train)) is None
    return _solved_on_small_set(config, dm)


def _solved_on_small_set(config: RunConfig, dm: SpectralDataModule) -> bool:
    """An explicit solved head (Linear, PLSDA, LDA, MiniRocket, KernelRidge, Hydra) trained from scratch on fewer than
    ``LARGE_TRAIN`` training rows: solved in closed form by the small-set protocol, no Adam epochs."""
    from spectratorch.pipelines.small import SOLVED_ARCHS

    t = config.train
    small = len(dm.split.train) + len(dm.split.val) < LARGE_TRAIN
    return config.model.arch in SOLVED_ARCHS and small and t.fit and not t.load_this and not t.finetune


def _stage_features(module: SpectralModule, dm: SpectralDataModule, stage: str) -> tuple[np.ndarray, np.ndarray]:
    rows = dm.stage_arrays(stage)
    return preprocessed_features(module.model.preprocess, rows.spectra, rows.tabular), rows.y.numpy()


def _calibration(module: SpectralModule, dm: SpectralDataModule) -> dict:
    """The run's calibration report, fitted once on the validation rows' logits (float32, as the export runs the
    model): the result sheet's temperature and the one the ONNX file stores."""
    val = dm.stage_arrays("val")
    return calibration_report(predict_logits(module.model.float(), val.spectra, val.tabular), val.y.numpy())


def _calibrated_test(metrics: dict, module: SpectralModule, dm: SpectralDataModule,
                     calibration: dict) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated probabilities ``[N, K]`` of the test rows, as the ONNX file gives them, and their classes; the
    test ``loss`` in ``metrics`` becomes their log-loss (Lightning's is before the temperature)."""
    rows = dm.stage_arrays("test")
    logits = predict_logits(module.model.float(), rows.spectra, rows.tabular)
    temperature = calibration["temperature"]
    if "test" in metrics:
        metrics["test"]["loss"] = negative_log_likelihood(logits, rows.y.numpy(), temperature)
    return softmax(logits, temperature).astype(np.float32), rows.y.numpy()


def _add_baseline(summary: dict, module: SpectralModule, dm: SpectralDataModule, config: RunConfig,
                  tested: bool = True) -> None:
    """Fit the linear baselines on the network's own inputs and rows, scored on the validation fold and (``tested``)
    the test rows; say plainly when the network is worse."""
    stages = {stage: _stage_features(module, dm, stage) for stage in (("val", "test") if tested else ("val",))}
    baseline = fit_baselines(_stage_features(module, dm, "train"), stages, dm.n_classes, seed=config.data.seed)
    summary["metrics"]["baseline"] = baseline
    metric = config.train.target_metric.removeprefix("val_")
    check = compare_with_baseline(summary["metrics"].get("val", {}), baseline,
                                  metric if metric in ("accuracy", "f1", "balanced_accuracy", "auroc") else "accuracy")
    summary["baseline_check"] = check
    if check and check["network_is_worse"]:
        _logger.warning("%s", check["message"])


def _log_hparams(trainer: pl.Trainer, config: RunConfig, summary: dict) -> None:
    flat = {f"{group}/{key}": (value if isinstance(value, (int, float, str, bool)) else str(value))
            for group, values in config.to_dict().items() for key, value in values.items()}
    metrics = {f"hp/{stage}_{name}": value for stage, values in summary["metrics"].items() if stage != "baseline"
               for name, value in values.items() if value is not None}
    log_hparams(trainer, flat, metrics)
