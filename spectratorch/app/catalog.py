"""The exported models of a folder, and what their file names and metadata say about them.

Every ``.onnx`` file under the folder is listed; one that cannot be used (not ONNX, truncated, no spectratorch
metadata) is listed too, with the reason, so the inspector sees why it is not offered. Only onnxruntime reads the
files (:class:`~spectratorch.inference.Predictor`): no torch, no ``onnx`` package.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from spectratorch.contract import NameParts, parse_model_name
from spectratorch.errors import ConfigError, SpectratorchError
from spectratorch.inference import DEFAULT_CUTOFF_KEY, Predictor

__all__ = ["ModelEntry", "find_models", "open_model", "model_row", "model_details"]

_logger = logging.getLogger(__name__)

_METRICS = ("accuracy", "f1", "balanced_accuracy", "auroc", "loss")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One ``.onnx`` file of the folder.

    Attributes:
        path: the file.
        label: the path relative to the folder, as listed.
        predictor: the loaded model, or ``None`` when it cannot be used.
        error: why it cannot be used (``None`` when it can).
    """

    path: Path
    label: str
    predictor: Predictor | None
    error: str | None


# reason: MLflow keeps a copy of every tracked run's ONNX file in its artifact store; listed, each model showed twice.
_NOT_MODEL_FOLDERS = frozenset({"mlartifacts", "mlruns"})


def find_models(folder: str | os.PathLike) -> list[Path]:
    """The ``.onnx`` files under ``folder`` (recursively), sorted by their path; MLflow's copies of them (under
    ``mlartifacts``, ``mlruns``) and hidden files left out.

    Args:
        folder: the models folder.

    Returns:
        The files; empty when there is none.

    Raises:
        ConfigError: ``folder`` is not a folder.

    Example:
        >>> import tempfile
        >>> find_models(tempfile.mkdtemp())
        []
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--models must be a folder of .onnx models; {str(folder)!r} is not a folder. "
                          "Pass the folder where `spectratorch export` wrote them.")
    return sorted(p for p in folder.rglob("*.onnx") if p.is_file() and not p.name.startswith(".")
                  and not _NOT_MODEL_FOLDERS & set(p.relative_to(folder).parts[:-1]))


def open_model(path: str | os.PathLike, folder: str | os.PathLike | None = None) -> ModelEntry:
    """Load one model for the page; a file that cannot be used gives an entry with the reason instead of raising.

    Args:
        path: the ``.onnx`` file.
        folder: the models folder, to label the file by its relative path.

    Returns:
        The entry.
    """
    path = Path(path)
    label = str(path.relative_to(folder)) if folder is not None and path.is_relative_to(folder) else path.name
    try:
        predictor = Predictor(path)
        # reason: what the page shows of a model is computed once here, so a field of an odd form fails now and
        # lists this model as broken, never later for the whole list.
        model_row(ModelEntry(path, label, predictor, None))
        model_details(ModelEntry(path, label, predictor, None))
        return ModelEntry(path, label, predictor, None)
    except SpectratorchError as err:
        _logger.warning("model %s cannot be used: %s", path, err)
        return ModelEntry(path, label, None, str(err).replace(f"{path}: ", "").replace(str(path), path.name))
    # reason: a file from anywhere may hold metadata no check foresaw; it costs this model only, not the list.
    except Exception as err:  # noqa: BLE001
        _logger.warning("model %s cannot be used", path, exc_info=True)
        return ModelEntry(path, label, None, f"its metadata cannot be read ({type(err).__name__}); export it again.")


def _name_parts(entry: ModelEntry) -> NameParts | None:
    for candidate in ((entry.predictor.metadata.get("name") if entry.predictor else None), entry.path.name):
        if candidate:
            try:
                return parse_model_name(str(candidate))
            except ConfigError:
                continue
    return None


def _metric(metadata: dict, stage: str, key: str) -> float | None:
    metrics = metadata.get("metrics")
    stage_metrics = metrics.get(stage) if isinstance(metrics, dict) else None
    value = stage_metrics.get(key) if isinstance(stage_metrics, dict) else None
    return _number(value)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value) -> str | None:
    # reason: one column of the table holds one type; a field of another form shows as its text.
    return None if value is None else str(value)


def model_row(entry: ModelEntry) -> dict:
    """One row of the models table: what the name and the metadata say, or why the file cannot be used.

    Args:
        entry: from :func:`open_model`.

    Returns:
        ``{column: value}`` with ``model, architecture, targets, classes, channels, points, tabular, transforms,
        split, val accuracy, val F1, val AUROC, temperature, default cutoff, problem``.
    """
    row: dict[str, object] = {"model": entry.label}
    parts = _name_parts(entry)
    meta = entry.predictor.metadata if entry.predictor else {}
    arch = meta.get("arch") or (parts.arch if parts else None)
    targets = meta.get("targets") or (list(parts.targets) if parts else None)
    channels = meta.get("channels") or (list(parts.channels) if parts else None)
    transforms = meta.get("transforms", list(parts.transforms) if parts else None)
    split = meta.get("split", parts.split if parts else None)
    n_splits = meta.get("n_splits", parts.n_splits if parts else None)
    axis = meta.get("axis") or []
    cutoff = (entry.predictor.cutoffs if entry.predictor else {}).get(DEFAULT_CUTOFF_KEY)
    row.update({
        "architecture": _text(arch),
        "targets": " ".join(map(str, targets)) if targets else None,
        "classes": ", ".join(map(str, meta["labels"])) if meta.get("labels") else None,
        "channels": ", ".join(map(str, channels)) if channels else None,
        "points": f"{len(axis)} ({axis[0]:g}..{axis[-1]:g})" if axis else None,
        "tabular": ", ".join(meta.get("tabular_columns") or []) or ("none" if entry.predictor else None),
        "transforms": ", ".join(map(str, transforms)) if transforms else ("none" if transforms is not None else None),
        "split": f"{split} of {n_splits}" if split is not None and n_splits is not None else None,
        "val accuracy": _metric(meta, "val", "accuracy"),
        "val F1": _metric(meta, "val", "f1"),
        "val AUROC": _metric(meta, "val", "auroc"),
        "temperature": _number(meta.get("temperature")),
        "default cutoff": cutoff,
        "problem": entry.error or "",
    })
    return row


def _out_of_fold(meta: dict) -> bool:
    """Whether the model trained on every row but its test rows (the small-set protocol): its calibration and
    ``val`` metrics are out-of-fold predictions of its training rows, not a validation fold's."""
    calibration = meta.get("calibration") or {}
    members = calibration.get("members") or [calibration]
    return all(str((m or {}).get("source", "")).startswith("out-of-fold") for m in members)


def _split_text(meta: dict) -> str:
    """Which rows the model held out, in words."""
    n_splits = meta.get("n_splits")
    if meta.get("split") == "all":
        return f"none held out (every row trained it; the {n_splits}-fold cv estimates it)"
    if meta.get("split") == "ens":
        return f"an ensemble of {n_splits} folds"
    if _out_of_fold(meta):
        return (f"fold {meta.get('split')} of {n_splits}, trained on too (the small-set protocol holds out the test "
                "rows only)")
    return f"fold {meta.get('split')} of {n_splits}"


def model_details(entry: ModelEntry) -> dict[str, str]:
    """Everything the metadata says about a usable model, as ``{what: text}`` for the page's details panel.

    Args:
        entry: a usable entry (``entry.predictor`` is set).

    Returns:
        Ordered ``{field: text}``.
    """
    predictor = entry.predictor
    meta = predictor.metadata
    parts = _name_parts(entry)
    details = {
        "name": str(meta.get("name") or entry.path.stem),
        "architecture": str(meta.get("arch") or (parts.arch if parts else "?")),
        "target": " ".join(map(str, meta.get("targets") or (parts.targets if parts else ["?"]))),
        "classes": ", ".join(predictor.labels),
        "channels": ", ".join(predictor.channels),
        "axis": f"{len(predictor.axis)} points, {predictor.axis[0]:g} to {predictor.axis[-1]:g}",
        "tabular columns": ", ".join(predictor.tabular_columns) or "none",
        "transforms in the model": ", ".join(map(str, meta.get("transforms") or [])) or "none",
        "split, seed, label smoothing": f"{_split_text(meta)}, seed {meta.get('seed')}, eps {meta.get('eps')}",
    }
    if meta.get("parent"):
        # reason: a model fine-tuned to another instrument may bear its parent's name (the name is its
        # configuration); only this line and its folder tell them apart.
        details["fine-tuned from"] = f"{meta['parent']} (the model it started from, trained on other data)"
    out_of_fold = _out_of_fold(meta)
    for stage in ("val", "test"):
        values = {key: _metric(meta, stage, key) for key in _METRICS}
        metrics = [f"{key} {value:.3f}" for key, value in values.items() if value is not None]
        if metrics:
            what = "test metrics" if stage == "test" else (
                "inner-CV metrics (out of fold; the model was chosen on them, so optimistic)" if out_of_fold
                else "validation metrics")
            details[what] = ", ".join(metrics)
    calibration = meta.get("calibration") or {}
    if meta.get("temperature") is not None:
        text = f"temperature {float(meta['temperature']):.3f}"
        if {"ece_before", "ece_after"} <= set(calibration):
            text += f", expected calibration error {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}"
        if "n_samples" in calibration:
            rows = "out-of-fold predictions of the training rows" if out_of_fold else "validation samples"
            text += f" on {calibration['n_samples']} {rows}"
        details["calibration"] = text
    if predictor.cutoffs:
        details["cutoffs"] = ", ".join(f"{name} {float(value):.3f}" for name, value in predictor.cutoffs.items())
    details["spectratorch version"] = str(meta.get("version", "?"))
    return details
